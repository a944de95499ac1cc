import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { ManualClock } from "../../src/ops/clock.ts";
import { RedisState } from "../../src/state/redis.ts";
import { TEST_REDIS_URL } from "../support/backends.ts";

const MINUTE = 60_000;
const key = () => `t:${randomBytes(4).toString("hex")}`;

/**
 * Every admission holds a GCRA slot in (t, t + τ], so in any span [a, b] at most
 * limit + (b − a) / interval requests may pass. Checks that bound over every pair of
 * admissions (times in ms, sorted).
 */
function largestExcess(admitted: number[], limit: number, windowMs: number): number {
  const interval = Math.ceil((windowMs * 1000) / limit) / 1000;
  let worst = -Infinity;
  for (let i = 0; i < admitted.length; i++) {
    for (let j = i; j < admitted.length; j++) {
      const allowed = limit + Math.floor((admitted[j]! - admitted[i]!) / interval);
      worst = Math.max(worst, j - i + 1 - allowed);
    }
  }
  return worst;
}

describe.skipIf(!TEST_REDIS_URL)("leased limits in Redis [service]", () => {
  const prefix = `kptest:${randomBytes(5).toString("hex")}:`;
  let a: RedisState;
  let b: RedisState;
  beforeAll(async () => {
    // Two clients on one prefix stand for two instances.
    a = await RedisState.connect(TEST_REDIS_URL!, { prefix });
    b = await RedisState.connect(TEST_REDIS_URL!, { prefix });
  });
  afterAll(async () => {
    await b.close();
    await a.purge();
    await a.close();
  });

  it.each([1, 7, 50, 1000])("admits exactly a limit of %d from concurrent bursts on two instances", async (limit) => {
    const k = key();
    const now = Date.now();
    const decisions = await Promise.all(Array.from({ length: limit * 3 }, (_, i) => (i % 2 ? a : b).rateLimit(k, limit, MINUTE, now)));
    expect(decisions.filter((d) => d.allowed).length).toBe(limit);
  });

  it("never admits more than GCRA allows in any span, two instances, over three minutes of load", async () => {
    const k = key();
    const limit = 60;
    const clock = new ManualClock(Date.now());
    const admitted: number[] = [];
    for (let step = 0; step < 1800; step++) {
      clock.advance(100);
      // Bursts of a few concurrent requests on both instances every 100 ms: 3× the limit.
      const now = clock.now();
      const burst = await Promise.all([a, b, a].map((s) => s.rateLimit(k, limit, MINUTE, now)));
      for (const d of burst) if (d.allowed) admitted.push(now);
    }
    expect(largestExcess(admitted, limit, MINUTE)).toBeLessThanOrEqual(0);
    // 180 s at 1 a second, plus the first burst.
    expect(admitted.length).toBeGreaterThanOrEqual(limit + 170);
  });

  it("reaches Redis at most once per ten decisions for a key far from its limit", async () => {
    const k = key();
    const clock = new ManualClock(Date.now());
    const before = a.commandCount();
    for (let i = 0; i < 5000; i++) {
      clock.advance(1);
      expect((await a.rateLimit(k, 100_000, MINUTE, clock.now())).allowed).toBe(true);
    }
    expect(a.commandCount() - before).toBeLessThanOrEqual(500);
  });

  it("answers a key over its limit locally until its next request is due", async () => {
    const k = key();
    const t0 = Date.now();
    for (let i = 0; i < 10; i++) expect((await a.rateLimit(k, 10, MINUTE, t0)).allowed).toBe(true);
    const before = a.commandCount();
    const refusals = await Promise.all(Array.from({ length: 500 }, () => a.rateLimit(k, 10, MINUTE, t0 + 10)));
    expect(refusals.every((d) => !d.allowed && d.remaining === 0)).toBe(true);
    expect(refusals[0]!.retryAfterMs).toBeCloseTo(MINUTE / 10 - 10, 0);
    expect(a.commandCount() - before).toBe(1);
    expect((await a.rateLimit(k, 10, MINUTE, t0 + MINUTE / 10)).allowed).toBe(true);
    expect((await a.rateLimit(k, 10, MINUTE, t0 + MINUTE / 10)).allowed).toBe(false);
  });

  it("spends the cells it holds while a larger cost is refused, and counts them toward a cost that continues them", async () => {
    const k = key();
    const now = Date.now();
    const limit = 1000;
    // Leases of 1, 2, 4 and 8 cells: after eight requests this instance holds seven.
    for (let i = 0; i < 8; i++) expect((await a.rateLimit(k, limit, MINUTE, now)).allowed).toBe(true);
    const before = a.commandCount();
    // 992 are free to one instance's GCRA (985 in Redis, 7 held): 995 is refused...
    expect(await a.rateLimit(k, limit, MINUTE, now, 995)).toMatchObject({ allowed: false, remaining: 992 });
    expect(a.commandCount() - before).toBe(1);
    // ...and a single request is answered from the held cells, without Redis.
    expect(await a.rateLimit(k, limit, MINUTE, now)).toMatchObject({ allowed: true, remaining: 991 });
    expect(a.commandCount() - before).toBe(1);
    // 991 fit: the six held cells and 985 from Redis, continuing them.
    expect(await a.rateLimit(k, limit, MINUTE, now, 991)).toMatchObject({ allowed: true, remaining: 0 });
    expect((await b.rateLimit(k, limit, MINUTE, now)).allowed).toBe(false);
    expect((await a.rateLimit(k, limit, MINUTE, now)).allowed).toBe(false);
  });

  it("reports what one instance's GCRA would: remaining and reset count only the cells spent", async () => {
    const k = key();
    const now = Date.now();
    const first = await a.rateLimit(k, 10, MINUTE, now);
    expect(first).toMatchObject({ allowed: true, limit: 10, remaining: 9, resetMs: 6000 });
    const second = await a.rateLimit(k, 10, MINUTE, now + 1000);
    expect(second).toMatchObject({ allowed: true, remaining: 8, resetMs: 11_000 });
  });

  it("gives an idle lease near its limit back, so another instance can spend it", async () => {
    const k = key();
    const now = Date.now();
    const limit = 100;
    // A third client spends 60 and closes (giving its unused cells back): 40 are free.
    const c = await RedisState.connect(TEST_REDIS_URL!, { prefix });
    for (let i = 0; i < 60; i++) expect((await c.rateLimit(k, limit, MINUTE, now)).allowed).toBe(true);
    await c.close();
    // A, near the limit, spends four (its leases grow: 1, 2, then 4 cells, one of them spent)
    // and goes idle.
    for (let i = 0; i < 4; i++) expect((await a.rateLimit(k, limit, MINUTE, now)).allowed).toBe(true);
    await a.returnIdleLeases(0);
    let admittedByB = 0;
    while ((await b.rateLimit(k, limit, MINUTE, now)).allowed) admittedByB++;
    expect(admittedByB).toBe(limit - 64);
  });

  it("keeps no local state for keys whose leases have run out", async () => {
    const d = await RedisState.connect(TEST_REDIS_URL!, { prefix });
    const now = Date.now();
    for (let i = 0; i < 200; i++) await d.rateLimit(`${key()}:${i}`, 1000, MINUTE, now);
    expect(d.leasedKeys()).toBe(200);
    // Past every lease's last slot the state goes.
    await d.returnIdleLeases(0, now + MINUTE);
    expect(d.leasedKeys()).toBe(0);
    await d.close();
  });

  it("spends a capped counter exactly to its cap from concurrent requests on two instances", async () => {
    const k = key();
    const results = await Promise.all(Array.from({ length: 90 }, (_, i) => (i % 2 ? a : b).consume(k, 1, 40, MINUTE)));
    expect(results.filter((r) => r.ok).length).toBe(40);
    expect(await a.get(k)).toBe(40);
  });

  it("leases a busy counter in blocks: far fewer Redis calls than requests, and exact after they are returned", async () => {
    const k = key();
    const before = b.commandCount();
    for (let i = 0; i < 3000; i++) expect((await b.consume(k, 1, 1_000_000, MINUTE)).ok).toBe(true);
    expect(b.commandCount() - before).toBeLessThanOrEqual(300);
    // The counter runs ahead by the unspent part of the lease until it goes back.
    expect(await b.get(k)).toBeGreaterThanOrEqual(3000);
    await b.returnIdleLeases(0);
    expect(await b.get(k)).toBe(3000);
  });

  it("refuses a cost that does not fit under the cap, and spends one that does", async () => {
    const k = key();
    expect((await a.consume(k, 7, 10, MINUTE)).ok).toBe(true);
    expect((await b.consume(k, 4, 10, MINUTE)).ok).toBe(false);
    expect((await b.consume(k, 3, 10, MINUTE)).ok).toBe(true);
    expect(await a.get(k)).toBe(10);
  });
});
