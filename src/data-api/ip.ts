import { readFileSync } from "node:fs";
import { BlockList } from "node:net";
// Bun's file loader turns each import into a path: node_modules/… from source, and inside the
// binary `bun build --compile` copies the file in and the path points into its embedded file
// system (/$bunfs/…), so the table loads offline with no build step of ours. TypeScript has no
// module type for .csv, hence the two directives.
import ipv4CsvPath from "@ip-location-db/asn-country/asn-country-ipv4-num.csv" with { type: "file" };
import ipv6CsvPath from "@ip-location-db/asn-country/asn-country-ipv6.csv" with { type: "file" };
import type { IpAnalysis } from "./model.ts";

/**
 * Country of an address = the country the five Regional Internet Registries record for the
 * AS announcing its range (@ip-location-db/asn-country; data CC BY 4.0, NRO). Its rows are
 * sorted and disjoint, which the loader checks, so a lookup is one binary search.
 */
interface CountryTable {
  /** IPv4 range bounds, inclusive, as uint32. */
  v4Start: Uint32Array;
  v4End: Uint32Array;
  v4Country: Uint16Array;
  /** IPv6 range bounds, inclusive, four big-endian 32-bit words per address. */
  v6Start: Uint32Array;
  v6End: Uint32Array;
  v6Country: Uint16Array;
  codes: string[];
}

let table: CountryTable | undefined;

/**
 * Reads the range table into memory (idempotent). The first `analyzeIp` does it otherwise;
 * the server calls it at start so no request pays the load. Throws if the data files are
 * missing or not sorted and disjoint — an install fault, not a request fault.
 */
export function loadIpCountries(): void {
  table ??= readCountryTable(readFileSync(ipv4CsvPath as string, "latin1"), readFileSync(ipv6CsvPath as string, "latin1"));
}

/** Rows in the IPv4 and IPv6 tables. */
export function ipTableSize(): { v4: number; v6: number } {
  loadIpCountries();
  return { v4: table!.v4Start.length, v6: table!.v6Country.length };
}

/** One BlockList per family: Node's (and Bun's) BlockList also matches an IPv4 address against IPv6 rules through ::ffff:0:0/96, so ::/3 would swallow every IPv4 address. */
type RangeList = Record<"ipv4" | "ipv6", BlockList>;

function rangeList(cidrs: string[]): RangeList {
  const lists: RangeList = { ipv4: new BlockList(), ipv6: new BlockList() };
  for (const cidr of cidrs) {
    const [net, bits] = cidr.split("/") as [string, string];
    const family = net.includes(":") ? "ipv6" : "ipv4";
    lists[family].addSubnet(net, Number(bits), family);
  }
  return lists;
}

// RFC 1918 and RFC 4193 (unique local).
const PRIVATE = rangeList(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]);
// RFC 1122 §3.2.1.3 and RFC 4291 §2.5.3.
const LOOPBACK = rangeList(["127.0.0.0/8", "::1/128"]);

/**
 * Not globally reachable: the IANA IPv4 and IPv6 special-purpose registries (RFC 6890 and
 * successors), multicast, and for IPv6 everything outside 2000::/3, the only space IANA
 * allocates for global unicast (the registry calls the rest "Reserved by IETF").
 * 192.0.0.0/24 is taken whole although two /32s in it are global (PCP and TURN anycast).
 */
const NON_GLOBAL = rangeList([
  "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
  "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
  "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
  // Outside 2000::/3: ::/128, ::1, 64:ff9b::/96 (NAT64), 100::/64 (discard), fc00::/7, fe80::/10, ff00::/8 …
  "::/3", "4000::/2", "8000::/1",
  // Inside 2000::/3: Teredo, benchmarking, ORCHID v1/v2, documentation (2001:db8::/32, 3fff::/20), 6to4.
  "2001::/32", "2001:2::/48", "2001:10::/28", "2001:20::/28", "2001:db8::/32", "3fff::/20", "2002::/16",
]);

/**
 * Version, canonical form, range flags and country of one address; null when `input` (less
 * surrounding white space) is not an IPv4 dotted quad or an IPv6 address; zone ids such as
 * `%eth0` are refused.
 * An IPv4-mapped address (::ffff:a.b.c.d, what dual-stack sockets report) keeps version 6 but
 * takes its flags and country from the IPv4 address inside it.
 *
 * @example
 * analyzeIp("8.8.8.8")   // { ip: "8.8.8.8", version: 4, private: false, loopback: false, reserved: false, country: "US" }
 * analyzeIp("2001:DB8:0:0::1") // { ip: "2001:db8::1", version: 6, reserved: true, country: null, … }
 * analyzeIp("localhost") // null
 */
export function analyzeIp(input: string): IpAnalysis | null {
  const text = input.trim();
  const v4 = parseIpv4(text);
  if (v4 !== null) return describe(formatIpv4(v4), 4, { family: "ipv4", value: v4 });
  const v6 = parseIpv6(text);
  if (v6 === null) return null;
  const mapped = v6[0] === 0 && v6[1] === 0 && v6[2] === 0xffff;
  return describe(formatIpv6(v6), 6, mapped ? { family: "ipv4", value: v6[3]! } : { family: "ipv6", words: v6 });
}

/** The address the flags and the country are read from. */
type Address = { family: "ipv4"; value: number } | { family: "ipv6"; words: Uint32Array };

function describe(ip: string, version: 4 | 6, address: Address): IpAnalysis {
  const text = address.family === "ipv4" ? formatIpv4(address.value) : ip;
  const { family } = address;
  const reserved = NON_GLOBAL[family].check(text, family);
  let country: string | null = null;
  if (!reserved) {
    loadIpCountries();
    country = address.family === "ipv4" ? lookupV4(table!, address.value) : lookupV6(table!, address.words);
  }
  return {
    ip,
    version,
    private: PRIVATE[family].check(text, family),
    loopback: LOOPBACK[family].check(text, family),
    reserved,
    country,
  };
}

function lookupV4(t: CountryTable, ip: number): string | null {
  let lo = 0;
  let hi = t.v4Start.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (t.v4Start[mid]! > ip) hi = mid - 1;
    else if (t.v4End[mid]! < ip) lo = mid + 1;
    else return t.codes[t.v4Country[mid]!]!;
  }
  return null;
}

/** Sign of a − b for the 128-bit values at word offsets `ai` of `a` and `bi` of `b`. */
function compare128(a: Uint32Array, ai: number, b: Uint32Array, bi: number): number {
  for (let k = 0; k < 4; k++) {
    const d = a[ai + k]! - b[bi + k]!;
    if (d !== 0) return d;
  }
  return 0;
}

function lookupV6(t: CountryTable, ip: Uint32Array): string | null {
  let lo = 0;
  let hi = t.v6Country.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    if (compare128(t.v6Start, mid * 4, ip, 0) > 0) hi = mid - 1;
    else if (compare128(t.v6End, mid * 4, ip, 0) < 0) lo = mid + 1;
    else return t.codes[t.v6Country[mid]!]!;
  }
  return null;
}

const COLON = 58;
const DOT = 46;

/**
 * Strict dotted quad from `from` to the end: four decimal octets, no leading zeros (so 010.0.0.1
 * is not octal-ambiguous), no surrounding text. Scans characters: it runs per request and
 * 2 × 68k times while the IPv6 table loads.
 */
function parseIpv4(text: string, from = 0): number | null {
  let value = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = from; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits === 1 && octet === 0) return null;
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) return null;
    } else if (c === DOT && digits > 0 && dots < 3) {
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else {
      return null;
    }
  }
  return dots === 3 && digits > 0 ? value * 256 + octet : null;
}

function formatIpv4(value: number): string {
  return `${value >>> 24}.${(value >>> 16) & 255}.${(value >>> 8) & 255}.${value & 255}`;
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** parseIpv6's groups before `::` is expanded; one buffer, as JS runs one parse at a time. */
const parsedGroups = new Uint16Array(8);

/**
 * RFC 4291 §2.2 text forms: eight groups of 1-4 hex digits, at most one `::` standing for one
 * or more zero groups, optionally a dotted quad as the last 32 bits. Writes four big-endian
 * words to `out` at `at` (the loader parses straight into its table) and returns `out`.
 */
function parseIpv6(text: string, out = new Uint32Array(4), at = 0): Uint32Array | null {
  const n = text.length;
  if (n < 2 || n > 45) return null;
  let count = 0;
  let gap = -1;
  let value = 0;
  let digits = 0;
  let i = 0;
  if (text.charCodeAt(0) === COLON) {
    if (text.charCodeAt(1) !== COLON) return null;
    gap = 0;
    i = 2;
  }
  for (; i < n; i++) {
    const c = text.charCodeAt(i);
    const h = hexDigit(c);
    if (h >= 0) {
      if (++digits > 4) return null;
      value = value * 16 + h;
    } else if (c === COLON) {
      if (digits === 0 || count === 7) return null;
      parsedGroups[count++] = value;
      value = 0;
      digits = 0;
      if (text.charCodeAt(i + 1) === COLON) {
        if (gap >= 0) return null;
        gap = count;
        i++;
      } else if (i + 1 === n) {
        return null;
      }
    } else if (c === DOT) {
      const v4 = count <= 6 ? parseIpv4(text, i - digits) : null;
      if (v4 === null) return null;
      parsedGroups[count++] = v4 >>> 16;
      parsedGroups[count++] = v4 & 0xffff;
      digits = 0;
      break;
    } else {
      return null;
    }
  }
  if (digits > 0) parsedGroups[count++] = value;
  if (gap < 0 ? count !== 8 : count > 7) return null;
  const zeros = 8 - count;
  for (let g = 0; g < 8; g++) {
    const v = gap < 0 || g < gap ? parsedGroups[g]! : g < gap + zeros ? 0 : parsedGroups[g - zeros]!;
    out[at + (g >> 1)] = g % 2 === 0 ? v * 0x10000 : out[at + (g >> 1)]! + v;
  }
  return out;
}

/** RFC 5952 §4: lower case, no leading zeros, the longest run (≥ 2) of zero groups as `::`; §5 for ::ffff:a.b.c.d. */
function formatIpv6(words: Uint32Array): string {
  if (words[0] === 0 && words[1] === 0 && words[2] === 0xffff) return `::ffff:${formatIpv4(words[3]!)}`;
  const groups = Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? words[i >> 1]! >>> 16 : words[i >> 1]! & 0xffff));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}

/** Calls `row` with the three fields and the index of every `start,end,country` line. */
function eachRow(csv: string, row: (start: string, end: string, code: string, i: number) => void): void {
  let pos = 0;
  let i = 0;
  while (pos < csv.length) {
    const nl = csv.indexOf("\n", pos);
    const end = nl < 0 ? csv.length : nl;
    const c1 = csv.indexOf(",", pos);
    const c2 = c1 < 0 ? -1 : csv.indexOf(",", c1 + 1);
    if (c2 < 0 || c2 >= end) throw new Error(`IP country data: line ${i + 1} is not start,end,country`);
    row(csv.slice(pos, c1), csv.slice(c1 + 1, c2), csv.slice(c2 + 1, end), i++);
    pos = end + 1;
  }
}

function countRows(csv: string): number {
  let rows = 0;
  for (let pos = csv.indexOf("\n"); pos >= 0; pos = csv.indexOf("\n", pos + 1)) rows++;
  return csv.endsWith("\n") ? rows : rows + 1;
}

function readCountryTable(ipv4Csv: string, ipv6Csv: string): CountryTable {
  const codes: string[] = [];
  const codeIndex = new Map<string, number>();
  const indexOf = (code: string) => {
    let i = codeIndex.get(code);
    if (i === undefined) {
      if (!/^[A-Z]{2}$/.test(code)) throw new Error(`IP country data: bad country code ${JSON.stringify(code)}`);
      i = codes.push(code) - 1;
      codeIndex.set(code, i);
    }
    return i;
  };

  const v4Rows = countRows(ipv4Csv);
  const v4Start = new Uint32Array(v4Rows);
  const v4End = new Uint32Array(v4Rows);
  const v4Country = new Uint16Array(v4Rows);
  eachRow(ipv4Csv, (start, end, code, i) => {
    const s = Number(start);
    const e = Number(end);
    // The round trip refuses empty fields, signs, exponents and leading zeros.
    const decimal = String(s) === start && String(e) === end;
    if (!decimal || s > e || e >= 2 ** 32 || (i > 0 && s <= v4End[i - 1]!)) {
      throw new Error(`IP country data: IPv4 line ${i + 1} is malformed, unsorted or overlapping: ${start},${end}`);
    }
    v4Start[i] = s;
    v4End[i] = e;
    v4Country[i] = indexOf(code);
  });

  const v6Rows = countRows(ipv6Csv);
  const v6Start = new Uint32Array(v6Rows * 4);
  const v6End = new Uint32Array(v6Rows * 4);
  const v6Country = new Uint16Array(v6Rows);
  eachRow(ipv6Csv, (start, end, code, i) => {
    const at = i * 4;
    const ok = parseIpv6(start, v6Start, at) !== null && parseIpv6(end, v6End, at) !== null;
    if (!ok || compare128(v6Start, at, v6End, at) > 0 || (i > 0 && compare128(v6Start, at, v6End, at - 4) <= 0)) {
      throw new Error(`IP country data: IPv6 line ${i + 1} is malformed, unsorted or overlapping: ${start},${end}`);
    }
    v6Country[i] = indexOf(code);
  });

  return { v4Start, v4End, v4Country, v6Start, v6End, v6Country, codes };
}
