import { BlockList, isIP } from "node:net";

/**
 * Parses an allowlist entry: an IPv4/IPv6 address or a CIDR range. Returns the canonical
 * text, or an error message for the field.
 */
export function parseAllowEntry(entry: string): { ok: true; value: string } | { ok: false; message: string } {
  const text = entry.trim();
  const [addr = "", bits, extra] = text.split("/");
  const version = isIP(addr);
  if (!version || extra !== undefined) return { ok: false, message: `"${text.slice(0, 60)}" is not an IP address or CIDR range` };
  if (bits === undefined) return { ok: true, value: addr.toLowerCase() };
  const max = version === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return { ok: false, message: `"${text.slice(0, 60)}" has a prefix length outside 0-${max}` };
  return { ok: true, value: `${addr.toLowerCase()}/${Number(bits)}` };
}

/** An allowlist compiled once (when the key enters the cache) into node's BlockList. */
export function compileAllowlist(entries: readonly string[]): BlockList | null {
  if (entries.length === 0) return null;
  const list = new BlockList();
  for (const e of entries) {
    const [addr = "", bits] = e.split("/");
    const type = isIP(addr) === 6 ? "ipv6" : "ipv4";
    if (bits === undefined) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(bits), type);
  }
  return list;
}

export function ipAllowed(list: BlockList | null, ip: string): boolean {
  if (!list) return true;
  const v = isIP(ip);
  if (v === 0) return false;
  if (list.check(ip, v === 6 ? "ipv6" : "ipv4")) return true;
  // An IPv4 client seen through an IPv6 socket arrives as ::ffff:a.b.c.d.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  return mapped ? list.check(mapped[1]!, "ipv4") : false;
}
