import { describe, expect, it } from "bun:test";
import { BASE62, randomBase62 } from "../../src/ids.ts";
import { checksum, displayKey, generateKey, hashKey, keyParts, keyPattern, parseKey } from "../../src/keys/format.ts";

describe("key format", () => {
  it("generates <prefix>_<env>_<46 base62> keys that parse and match the scanner regex", () => {
    for (const env of ["live", "test"] as const) {
      const key = generateKey("kp", env);
      expect(key).toMatch(new RegExp(`^kp_${env}_[0-9A-Za-z]{46}$`));
      expect(parseKey(key, "kp")).toEqual({ ok: true, env });
      expect(`leaked: ${key}.`.match(keyPattern("kp"))).toEqual([key]);
    }
  });

  it("never generates the same key twice in 10,000 draws", () => {
    const seen = new Set(Array.from({ length: 10_000 }, () => generateKey("kp", "live")));
    expect(seen.size).toBe(10_000);
  });

  it("rejects a key with any single character changed, by checksum alone", () => {
    const key = generateKey("kp", "live");
    const body = key.slice("kp_live_".length);
    let rejected = 0;
    for (let i = 0; i < body.length; i++) {
      const replacement = body[i] === "a" ? "b" : "a";
      const corrupted = "kp_live_" + body.slice(0, i) + replacement + body.slice(i + 1);
      if (!parseKey(corrupted, "kp").ok) rejected++;
    }
    expect(rejected).toBe(body.length);
  });

  it.each([
    ["empty", ""],
    ["wrong prefix", "sk_live_" + "a".repeat(46)],
    ["unknown environment", "kp_prod_" + "a".repeat(46)],
    ["too short", "kp_live_" + "a".repeat(45)],
    ["too long", "kp_live_" + "a".repeat(47)],
    ["non-base62 character", "kp_live_" + "a".repeat(39) + "-" + "a".repeat(6)],
    ["bad checksum", "kp_live_" + "a".repeat(46)],
    ["whitespace", " kp_live_" + "a".repeat(46)],
    ["non-ASCII", "kp_live_" + "é".repeat(46)],
  ])("rejects a key with %s", (_, raw) => {
    expect(parseKey(raw, "kp").ok).toBe(false);
  });

  it("computes the checksum over everything before it", () => {
    const key = generateKey("kp", "test");
    expect(key.slice(-6)).toBe(checksum(key.slice(0, -6)));
    // Moving the key to another environment breaks the checksum.
    expect(parseKey(key.replace("_test_", "_live_"), "kp").ok).toBe(false);
  });

  it("draws base62 characters without modulo bias (chi-square over 620,000 characters)", () => {
    const counts = new Map<string, number>();
    const sample = randomBase62(620_000);
    for (const c of sample) counts.set(c, (counts.get(c) ?? 0) + 1);
    expect(counts.size).toBe(62);
    const expected = sample.length / 62;
    let chi = 0;
    for (const c of BASE62) chi += ((counts.get(c) ?? 0) - expected) ** 2 / expected;
    // 61 degrees of freedom: p = 0.0001 at ~112. A `byte % 62` mapping over-draws the first
    // 8 symbols by 25% and scores in the thousands here.
    expect(chi).toBeLessThan(112);
  });

  it("hashes with SHA-256 and shows only a recognisable display form", () => {
    const key = generateKey("kp", "live");
    expect(hashKey(key)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashKey(key)).toBe(new Bun.CryptoHasher("sha256").update(key).digest("hex"));
    const { start, end } = keyParts(key, "kp");
    const shown = displayKey("kp", "live", start, end);
    expect(shown).toBe(`kp_live_${key.slice(8, 12)}…${key.slice(-4)}`);
  });
});
