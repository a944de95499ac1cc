import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { ManualClock } from "../../src/ops/clock.ts";
import { RedisState } from "../../src/state/redis.ts";
import type { SharedState } from "../../src/state/types.ts";
import { backends, freshState } from "../support/backends.ts";

const MINUTE = 60_000;

for (const backend of backends) {
  describe(`shared state contract [${backend.name}]`, () => {
    const clock = new ManualClock();
    let state: SharedState;
    let other: SharedState | undefined;
    const prefix = `kptest:${randomBytes(5).toString("hex")}:`;
    beforeAll(async () => {
      state = await freshState(backend, clock, prefix);
      // A second client on the same prefix stands for a second instance (Redis only).
      if (backend.redisUrl) other = await RedisState.connect(backend.redisUrl, { prefix });
    });
    afterAll(async () => {
      await other?.close();
      await state.close();
    });
    const key = () => `t:${randomBytes(4).toString("hex")}`;

    it("admits exactly the limit in a burst and refuses the next with a retry time", async () => {
      const k = key();
      const now = clock.now();
      for (let i = 0; i < 7; i++) {
        const d = await state.rateLimit(k, 7, MINUTE, now);
        expect(d.allowed).toBe(true);
        expect(d.remaining).toBe(6 - i);
      }
      const denied = await state.rateLimit(k, 7, MINUTE, now);
      expect(denied).toMatchObject({ allowed: false, remaining: 0 });
      expect(denied.retryAfterMs).toBeCloseTo(MINUTE / 7, 0);
    });

    it("lets one more through after one emission interval, and the full limit after a window", async () => {
      const k = key();
      const t0 = clock.now();
      for (let i = 0; i < 10; i++) expect((await state.rateLimit(k, 10, MINUTE, t0)).allowed).toBe(true);
      expect((await state.rateLimit(k, 10, MINUTE, t0 + 5_999)).allowed).toBe(false);
      expect((await state.rateLimit(k, 10, MINUTE, t0 + 6_000)).allowed).toBe(true);
      expect((await state.rateLimit(k, 10, MINUTE, t0 + 6_001)).allowed).toBe(false);
      let allowed = 0;
      for (let i = 0; i < 12; i++) if ((await state.rateLimit(k, 10, MINUTE, t0 + 6_000 + MINUTE)).allowed) allowed++;
      expect(allowed).toBe(10);
    });

    it("refuses a cost that does not fit without blocking a smaller one that does", async () => {
      const k = key();
      const now = clock.now();
      for (let i = 0; i < 7; i++) expect((await state.rateLimit(k, 10, MINUTE, now)).allowed).toBe(true);
      // Three cells are free: a batch of five waits two emission intervals, and says three are left.
      const five = await state.rateLimit(k, 10, MINUTE, now, 5);
      expect(five).toMatchObject({ allowed: false, remaining: 3 });
      expect(five.retryAfterMs).toBeCloseTo((2 * MINUTE) / 10, 0);
      const three = await state.rateLimit(k, 10, MINUTE, now + 1, 3);
      expect(three).toMatchObject({ allowed: true, remaining: 0 });
      const one = await state.rateLimit(k, 10, MINUTE, now + 2);
      expect(one).toMatchObject({ allowed: false, remaining: 0 });
      expect(one.retryAfterMs).toBeCloseTo(MINUTE / 10 - 2, 0);
    });

    it("holds at the largest limit without drift (100,000 per minute)", async () => {
      const k = key();
      const now = clock.now();
      const decisions = await Promise.all(Array.from({ length: 1000 }, () => state.rateLimit(k, 100_000, MINUTE, now)));
      expect(decisions.every((d) => d.allowed)).toBe(true);
      expect(Math.min(...decisions.map((d) => d.remaining))).toBe(100_000 - 1000);
    });

    it("is shared between two clients on the same prefix", async () => {
      if (!other) return;
      const k = key();
      const now = clock.now();
      const results = await Promise.all(
        Array.from({ length: 40 }, (_, i) => (i % 2 ? state : other!).rateLimit(k, 25, MINUTE, now)),
      );
      expect(results.filter((d) => d.allowed).length).toBe(25);
    });

    it("counts with expiry and caps atomically", async () => {
      const k = key();
      expect(await state.incr(k, 2, MINUTE)).toBe(2);
      expect(await state.incr(k, 3, MINUTE)).toBe(5);
      expect(await state.get(k)).toBe(5);
      const capped = key();
      const results = await Promise.all(Array.from({ length: 30 }, () => state.incrCapped(capped, 1, 20, MINUTE)));
      expect(results.filter((r) => r.ok).length).toBe(20);
      expect(await state.get(capped)).toBe(20);
      expect(await state.incrCapped(capped, 1, 20, MINUTE)).toEqual({ ok: false, value: 20 });
      await state.del(capped);
      expect(await state.get(capped)).toBe(0);
    });

    /** Hands an instance's unspent leased units back to Redis (in memory there are none), so `get` reads what was spent. */
    const settle = async (...states: (SharedState | undefined)[]) => {
      for (const s of states) if (s instanceof RedisState) await s.returnIdleLeases(0);
    };

    it("gives back consumed units, so the counter holds only what was kept, and never goes below zero", async () => {
      const k = key();
      for (let i = 0; i < 5; i++) expect((await state.consume(k, 2, 100, MINUTE)).ok).toBe(true);
      await state.giveBack(k, 2);
      await state.giveBack(k, 1);
      await settle(state);
      expect(await state.get(k)).toBe(7);
      // Units given back after the lease went back are taken off the shared counter.
      await state.giveBack(k, 3);
      expect(await state.get(k)).toBe(4);
      await state.giveBack(k, 10);
      expect(await state.get(k)).toBe(0);
    });

    it("spends a unit given back at the cap again, exactly to the cap", async () => {
      const k = key();
      for (let i = 0; i < 10; i++) expect((await state.consume(k, 1, 10, MINUTE)).ok).toBe(true);
      expect((await state.consume(k, 1, 10, MINUTE)).ok).toBe(false);
      await state.giveBack(k, 1);
      const again = await state.consume(k, 1, 10, MINUTE);
      expect(again).toEqual({ ok: true, value: 10 });
      expect((await state.consume(k, 1, 10, MINUTE)).ok).toBe(false);
      await settle(state);
      expect(await state.get(k)).toBe(10);
    });

    it("spends a cost that fits with the units this instance already holds, exactly to the cap", async () => {
      const k = key();
      // Eight single requests: in Redis the lease grows (1, 2, 4, then 8 units), so this
      // instance holds seven unspent units when the batch comes.
      for (let i = 0; i < 8; i++) expect((await state.consume(k, 1, 100, MINUTE)).ok).toBe(true);
      expect(await state.consume(k, 90, 100, MINUTE)).toEqual({ ok: true, value: 98 });
      expect((await state.consume(k, 3, 100, MINUTE)).ok).toBe(false);
      expect(await state.consume(k, 2, 100, MINUTE)).toEqual({ ok: true, value: 100 });
      expect((await state.consume(k, 1, 100, MINUTE)).ok).toBe(false);
      await settle(state);
      expect(await state.get(k)).toBe(100);
    });

    it("lets another instance spend a unit one instance gave back at the cap", async () => {
      if (!other) return;
      const k = key();
      for (let i = 0; i < 6; i++) expect((await state.consume(k, 1, 6, MINUTE)).ok).toBe(true);
      await settle(state);
      expect((await other.consume(k, 1, 6, MINUTE)).ok).toBe(false);
      await state.giveBack(k, 2);
      // The other instance remembers the refusal for a second; its idle lease state dropped,
      // it asks Redis again at once.
      await settle(other);
      expect((await other.consume(k, 2, 6, MINUTE)).ok).toBe(true);
      expect((await state.consume(k, 1, 6, MINUTE)).ok).toBe(false);
      await settle(state, other);
      expect(await state.get(k)).toBe(6);
    });

    it("leaves an expired or unknown counter alone when units are given back", async () => {
      const k = key();
      await state.giveBack(k, 3);
      expect(await state.get(k)).toBe(0);
      expect((await state.consume(k, 1, 5, MINUTE)).value).toBe(1);
    });

    it("expires counters after their time to live", async () => {
      const k = key();
      await state.incr(k, 1, 50);
      if (backend.redisUrl) await Bun.sleep(80);
      else clock.advance(51);
      expect(await state.get(k)).toBe(0);
    });

    it("delivers published messages to subscribers until they unsubscribe", async () => {
      const ch = key();
      const got: string[] = [];
      const unsubscribe = await (other ?? state).subscribe(ch, (m) => got.push(m));
      await state.publish(ch, "one");
      await waitFor(() => got.length === 1);
      await unsubscribe();
      await state.publish(ch, "two");
      await Bun.sleep(backend.redisUrl ? 50 : 0);
      expect(got).toEqual(["one"]);
    });

    it("gives a lock to one holder at a time and frees it on release", async () => {
      const name = key();
      const a = await state.tryLock(name, MINUTE);
      expect(a).not.toBeNull();
      expect(await (other ?? state).tryLock(name, MINUTE)).toBeNull();
      await a!.release();
      const b = await (other ?? state).tryLock(name, MINUTE);
      expect(b).not.toBeNull();
      await b!.release();
    });

    it("reports possibly lost messages when the subscriber connection drops", async () => {
      if (!(state instanceof RedisState)) return;
      let lost = 0;
      state.onMessagesMaybeLost(() => lost++);
      state.dropSubscriber();
      await waitFor(() => lost >= 1);
      expect(lost).toBeGreaterThanOrEqual(1);
    });
  });
}

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await Bun.sleep(5);
  }
}
