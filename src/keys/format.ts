import { BASE62, randomBase62 } from "../ids.ts";

export type Environment = "live" | "test";

/** 40 base62 characters = 40·log2(62) ≈ 238 bits from the CSPRNG. */
export const RANDOM_LENGTH = 40;
/** CRC32 < 2^32 < 62^6, so six base62 digits always hold it. */
export const CHECKSUM_LENGTH = 6;
export const BODY_LENGTH = RANDOM_LENGTH + CHECKSUM_LENGTH;

function base62Fixed(n: number, width: number): string {
  let out = "";
  for (let i = 0; i < width; i++) {
    out = BASE62[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

/** Checksum over everything before it: `<prefix>_<env>_<40 random>`. */
export function checksum(head: string): string {
  return base62Fixed(Bun.hash.crc32(head), CHECKSUM_LENGTH);
}

/**
 * A new key: `<prefix>_<env>_<40 random base62><6 base62 CRC32>`.
 * @example generateKey("kp", "live") // "kp_live_3fJ…Qa9Xz1"
 */
export function generateKey(prefix: string, env: Environment): string {
  const head = `${prefix}_${env}_${randomBase62(RANDOM_LENGTH)}`;
  return head + checksum(head);
}

/**
 * A key derived rather than drawn: the same `<prefix>_<env>_<40 base62><checksum>` shape,
 * its 40 characters taken from HMAC-SHA256(secret, `label`‖counter) by rejection sampling
 * (bytes under 248 = 4·62, so each character is uniform). Whoever holds `secret` and
 * `label` can make it again; nobody else can.
 */
export function deriveKey(prefix: string, env: Environment, secret: string, label: string): string {
  let body = "";
  for (let block = 0; body.length < RANDOM_LENGTH; block++) {
    const bytes = new Bun.CryptoHasher("sha256", secret).update(`${label}\0${block}`).digest();
    for (const b of bytes) {
      if (b < 248 && body.length < RANDOM_LENGTH) body += BASE62[b % 62];
    }
  }
  const head = `${prefix}_${env}_${body}`;
  return head + checksum(head);
}

export type ParsedKey = { ok: true; env: Environment } | { ok: false };

const BODY = /^[0-9A-Za-z]{46}$/;

/**
 * Checks shape and checksum without touching any store, so a typo or a made-up key is
 * rejected before a lookup.
 */
export function parseKey(raw: string, prefix: string): ParsedKey {
  if (raw.length !== prefix.length + 6 + BODY_LENGTH || !raw.startsWith(prefix + "_")) return { ok: false };
  const env = raw.slice(prefix.length + 1, prefix.length + 5);
  if ((env !== "live" && env !== "test") || raw[prefix.length + 5] !== "_") return { ok: false };
  const body = raw.slice(prefix.length + 6);
  if (!BODY.test(body)) return { ok: false };
  const head = raw.slice(0, raw.length - CHECKSUM_LENGTH);
  if (checksum(head) !== raw.slice(-CHECKSUM_LENGTH)) return { ok: false };
  return { ok: true, env };
}

/** SHA-256 hex of the whole key: what the database stores and the cache is keyed by. */
export function hashKey(raw: string): string {
  return Bun.SHA256.hash(raw, "hex");
}

/** The length every well-formed key with this prefix has. */
export function keyLength(prefix: string): number {
  return prefix.length + 6 + BODY_LENGTH;
}

/** `kp_live_AbCd…wxyz`: enough to recognise a key, far too little to use it. */
export function displayKey(prefix: string, env: Environment, start: string, end: string): string {
  return `${prefix}_${env}_${start}…${end}`;
}

export function keyParts(raw: string, prefix: string): { start: string; end: string } {
  const body = raw.slice(prefix.length + 6);
  return { start: body.slice(0, 4), end: body.slice(-4) };
}

/** The regex secret scanners use to find our keys in text. */
export function keyPattern(prefix: string): RegExp {
  return new RegExp(`\\b${prefix}_(live|test)_[0-9A-Za-z]{46}\\b`, "g");
}
