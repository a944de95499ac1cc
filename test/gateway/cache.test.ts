import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { hashKey } from "../../src/keys/format.ts";
import { KeyCache } from "../../src/keys/cache.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { createLogger } from "../../src/ops/log.ts";
import { backends } from "../support/backends.ts";
import { newAccount, newKey } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

describe("key verification cache [embedded]", () => {
  const clock = new ManualClock();
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(backends[0]!, { clock });
  });
  afterAll(() => h.close());

  it("keeps the keys in use when full and evicts one not hit since it was last passed", async () => {
    const account = await newAccount(h);
    const hashes: string[] = [];
    for (let i = 0; i < 4; i++) hashes.push(hashKey((await newKey(h, account.id)).secret));
    const cache = new KeyCache(h.deps.db, h.deps.state, clock, createLogger("silent"), { maxEntries: 3 });
    for (const hash of hashes.slice(0, 3)) await cache.load(hash);
    // The oldest entry is in use, the second is not: the second goes.
    expect(cache.peek(hashes[0]!)).toBeTruthy();
    await cache.load(hashes[3]!);
    expect(cache.size()).toBe(3);
    const before = cache.misses;
    expect(cache.peek(hashes[0]!)).toBeTruthy();
    expect(cache.peek(hashes[2]!)).toBeTruthy();
    expect(cache.peek(hashes[3]!)).toBeTruthy();
    expect(cache.peek(hashes[1]!)).toBeUndefined();
    expect(cache.misses).toBe(before);
  });

  it("does not hand a lookup begun before an eviction to a request that comes after it", async () => {
    const account = await newAccount(h);
    const { secret } = await newKey(h, account.id);
    const hash = hashKey(secret);
    const cache = new KeyCache(h.deps.db, h.deps.state, clock, createLogger("silent"));
    const before = cache.load(hash);
    expect(cache.load(hash)).toBe(before);
    // A change lands (a suspension, a plan change): the lookup under way read the old row.
    cache.evictLocal(hash);
    const after = cache.load(hash);
    expect(after).not.toBe(before);
    expect((await before)!.id).toBe((await after)!.id);
  });

  it("evicts even when every entry was hit, after one lap that clears the flags", async () => {
    const account = await newAccount(h);
    const hashes: string[] = [];
    for (let i = 0; i < 3; i++) hashes.push(hashKey((await newKey(h, account.id)).secret));
    const cache = new KeyCache(h.deps.db, h.deps.state, clock, createLogger("silent"), { maxEntries: 2 });
    await cache.load(hashes[0]!);
    await cache.load(hashes[1]!);
    cache.peek(hashes[0]!);
    cache.peek(hashes[1]!);
    await cache.load(hashes[2]!);
    expect(cache.size()).toBe(2);
    expect(cache.peek(hashes[0]!)).toBeUndefined();
    expect(cache.peek(hashes[2]!)).toBeTruthy();
  });
});
