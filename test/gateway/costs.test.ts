import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { cliActor } from "../../src/audit/service.ts";
import { generateKey } from "../../src/keys/format.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { emergencyRotation, revealRotationSecret, runSweep } from "../../src/rotation/service.ts";
import { RedisState } from "../../src/state/redis.ts";
import type { SharedState } from "../../src/state/types.ts";
import { backends, UNMETERED_PLANS } from "../support/backends.ts";
import { bearer, newAccount, newKey, problem, roll, schedule } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const EMAIL = "/v1/email/someone@example.com";
const HOUR = 3_600_000;

/** `n` valid items, or `n` items validation refuses (an unknown type): a batch costing n, or refused. */
const items = (n: number, valid = true) => Array.from({ length: n }, () => (valid ? { type: "ip", value: "8.8.8.8" } : { type: "phone", value: "555" }));

/** Leased units this instance still holds go back to Redis, so a counter reads what was spent (in process there are none). */
async function settle(h: Harness): Promise<void> {
  if (h.deps.state instanceof RedisState) await h.deps.state.returnIdleLeases(0);
}

/** Records the key of every rate-limit decision the app asks the shared state for (the real state decides). */
function watchRateLimits(state: SharedState): { keys: string[]; stop: () => void } {
  const keys: string[] = [];
  const real = state.rateLimit;
  state.rateLimit = function (this: SharedState, key, ...rest) {
    keys.push(key);
    return real.call(this, key, ...rest);
  };
  return { keys, stop: () => void (state.rateLimit = real) };
}

for (const backend of backends) {
  describe(`what a request costs [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock, config: { trustProxy: true, plansFile: UNMETERED_PLANS } });
      // The harness reads /openapi.json on the first /v1 answer it checks: here, not in a test.
      await h.req(EMAIL);
    });
    afterAll(() => h.close());

    const batch = (secret: string, n: number, valid = true, ip = "198.51.100.1") =>
      h.req("/v1/batch", { method: "POST", headers: { ...bearer(secret), "x-forwarded-for": ip }, json: { items: items(n, valid) } });

    describe("the key's rate limit", () => {
      it("counts a batch's items against the key's requests a minute: a 100/min key takes one batch of 100 a minute, not ten", async () => {
        const a = await newAccount(h);
        const { secret } = await newKey(h, a.id, { rateLimit: 100 });
        const first = await batch(secret, 100);
        expect(first.status, await first.clone().text()).toBe(200);
        expect(first.headers.get("ratelimit")).toStartWith('"default";r=0;');
        const second = await batch(secret, 100);
        expect(second.status).toBe(429);
        expect(await problem(second)).toMatchObject({ code: "rate_limited" });
        expect(Number(second.headers.get("retry-after"))).toBeGreaterThanOrEqual(59);
        expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(429);
      });

      it("admits a batch while its items fit, refuses the one that does not, and admits it once they fit again", async () => {
        const a = await newAccount(h);
        const { secret } = await newKey(h, a.id, { rateLimit: 10 });
        const six = await batch(secret, 6);
        expect(six.status).toBe(200);
        expect(six.headers.get("x-ratelimit-remaining")).toBe("4");
        const five = await batch(secret, 5);
        expect(five.status).toBe(429);
        // One item frees every 6 s on a 10/min key: the refused five fit after one more.
        expect(five.headers.get("retry-after")).toBe("6");
        clock.advance(6_000);
        expect((await batch(secret, 5)).status).toBe(200);
      });

      it("refuses 400 invalid_request a batch of more items than the key's limit ever admits, at the cost of one request", async () => {
        const a = await newAccount(h);
        const { secret } = await newKey(h, a.id, { rateLimit: 10 });
        const res = await batch(secret, 11);
        expect(res.status).toBe(400);
        const body = await problem(res);
        expect(body.code).toBe("invalid_request");
        expect(body.errors).toEqual([{ field: "items", message: "must hold at most 10 items for this key (its rate limit a minute)" }]);
        expect(res.headers.get("retry-after")).toBeNull();
        expect(res.headers.get("x-ratelimit-remaining")).toBe("9");
        expect((await batch(secret, 9)).status).toBe(200);
      });
    });

    describe("a batch refused by validation", () => {
      it("costs one request, not its items: it is refused 400 even when its items exceed what the quota has left, and the quota keeps every unit", async () => {
        const a = await newAccount(h);
        const { key, secret } = await newKey(h, a.id, { rateLimit: 1000, monthlyQuota: 100 });
        expect((await batch(secret, 50)).status).toBe(200);
        const refused = await batch(secret, 100, false);
        expect(refused.status, await refused.clone().text()).toBe(400);
        expect((await problem(refused)).code).toBe("invalid_request");
        await settle(h);
        expect(await h.deps.state.get(`quota:${key.id}:${new Date(clock.now()).toISOString().slice(0, 7)}`)).toBe(50);
        expect((await batch(secret, 50)).status).toBe(200);
        expect(await problem(await batch(secret, 1))).toMatchObject({ code: "quota_exceeded" });
      });

      it("spends one request of the key's rate limit, not its item count", async () => {
        const a = await newAccount(h);
        const { secret } = await newKey(h, a.id, { rateLimit: 10 });
        expect((await batch(secret, 10, false)).status).toBe(400);
        const rest = await batch(secret, 9);
        expect(rest.status).toBe(200);
        expect(rest.headers.get("x-ratelimit-remaining")).toBe("0");
      });
    });

    describe("the monthly quota across a key's lineage", () => {
      const month = () => new Date(clock.now()).toISOString().slice(0, 7);

      it("carries what a rolled key spent this month over to its replacement", async () => {
        const a = await newAccount(h);
        const old = await newKey(h, a.id, { rateLimit: 1000, monthlyQuota: 150 });
        expect((await batch(old.secret, 100)).status).toBe(200);
        await settle(h);
        const rolled = await roll(h, a.id, old.key.id, { gracePeriodHours: 0 });
        expect(await h.deps.state.get(`quota:${rolled.key.id}:${month()}`)).toBe(100);
        expect(await problem(await batch(rolled.secret, 60))).toMatchObject({ code: "quota_exceeded" });
        expect((await batch(rolled.secret, 50)).status).toBe(200);
        expect(await problem(await batch(rolled.secret, 1))).toMatchObject({ code: "quota_exceeded" });
      });

      it("carries it through a roll of a roll, and leaves a key with nothing spent at zero", async () => {
        const a = await newAccount(h);
        const first = await newKey(h, a.id, { rateLimit: 1000, monthlyQuota: 100 });
        const idle = await roll(h, a.id, first.key.id, { gracePeriodHours: 0 });
        expect(await h.deps.state.get(`quota:${idle.key.id}:${month()}`)).toBe(0);
        expect((await batch(idle.secret, 70)).status).toBe(200);
        await settle(h);
        const third = await roll(h, a.id, idle.key.id, { gracePeriodHours: 1 });
        expect((await batch(third.secret, 31)).status).toBe(429);
        expect((await batch(third.secret, 30)).status).toBe(200);
      });

      it("carries it over to the key an emergency rotation makes", async () => {
        const a = await newAccount(h);
        const old = await newKey(h, a.id, { rateLimit: 1000, monthlyQuota: 100 });
        expect((await batch(old.secret, 90)).status).toBe(200);
        await settle(h);
        const { secret } = await emergencyRotation(h.deps, a.id, old.key.id, { reason: "leaked" }, cliActor);
        expect(await problem(await batch(secret, 11))).toMatchObject({ code: "quota_exceeded" });
        expect((await batch(secret, 10)).status).toBe(200);
      });

      it("carries it over to the key a scheduled rotation makes when the sweep starts it", async () => {
        const a = await newAccount(h);
        const old = await newKey(h, a.id, { rateLimit: 1000, monthlyQuota: 100 });
        expect((await batch(old.secret, 40)).status).toBe(200);
        await settle(h);
        const r = await schedule(h, a.id, old.key.id, { at: new Date(clock.now() + HOUR).toISOString(), gracePeriodHours: 2, reason: "quarterly" });
        clock.advance(HOUR);
        expect((await runSweep(h.deps)).started).toBe(1);
        const { secret } = await revealRotationSecret(h.deps, a.id, r.id, cliActor);
        expect(await problem(await batch(secret, 61))).toMatchObject({ code: "quota_exceeded" });
        expect((await batch(secret, 60)).status).toBe(200);
      });
    });

    describe("the failed-authentication budget", () => {
      const fresh = () => generateKey(h.deps.config.keyPrefix, "live");
      /** A key whose checksum is wrong: refused before any lookup, it spends the budget all the same. */
      const mistyped = () => {
        const key = fresh();
        return key.slice(0, -1) + (key.endsWith("A") ? "B" : "A");
      };
      const call = (secret: string, ip: string) => h.req(EMAIL, { headers: { ...bearer(secret), "x-forwarded-for": ip } });

      it("is consulted before the lookup: a key not in the cache from an address over its budget costs no query", async () => {
        const ip = "203.0.113.61";
        const before = h.deps.keyCache.misses;
        for (let i = 0; i < 59; i++) expect([i, (await call(mistyped(), ip)).status]).toEqual([i, 401]);
        expect(h.deps.keyCache.misses - before).toBe(0);
        // The last failure the budget admits: a well-formed unknown key, looked up.
        expect((await call(fresh(), ip)).status).toBe(401);
        expect(h.deps.keyCache.misses - before).toBe(1);
        const a = await newAccount(h);
        const valid = await newKey(h, a.id, { rateLimit: 1000 });
        for (const secret of [fresh(), fresh(), fresh(), valid.secret]) {
          const res = await call(secret, ip);
          expect(res.status).toBe(429);
          expect(await problem(res)).toMatchObject({ code: "rate_limited", detail: "Too many failed authentications from this address; retry later." });
          expect(res.headers.get("retry-after")).toBe("1");
          expect(res.headers.get("ratelimit-policy")).toBe('"auth-failures";q=60;w=60');
        }
        expect(h.deps.keyCache.misses - before).toBe(1);
        // Another address still has its budget, and pays its lookup.
        expect((await call(fresh(), "203.0.113.62")).status).toBe(401);
        expect(h.deps.keyCache.misses - before).toBe(2);
        // A second later one more failure fits: one lookup, then the budget refuses again.
        clock.advance(1_000);
        expect((await call(fresh(), ip)).status).toBe(401);
        expect((await call(fresh(), ip)).status).toBe(429);
        expect(h.deps.keyCache.misses - before).toBe(3);
      });

      it("keeps a cached key working from an address over its budget, with no state call beyond its own limits", async () => {
        const ip = "203.0.113.71";
        const a = await newAccount(h);
        const { key, secret } = await newKey(h, a.id, { rateLimit: 1000 });
        for (let i = 0; i < 61; i++) await call(mistyped(), ip);
        expect((await call(fresh(), ip)).status).toBe(429);
        // Cached: a call from elsewhere that makes no lookup (the key's creation evicts its hash
        // on every instance, a message that may arrive after the first lookup).
        let cached = false;
        for (let i = 0; i < 50 && !cached; i++) {
          const misses = h.deps.keyCache.misses;
          expect((await call(secret, "203.0.113.72")).status).toBe(200);
          cached = h.deps.keyCache.misses === misses;
        }
        expect(cached).toBe(true);
        const watch = watchRateLimits(h.deps.state);
        try {
          const before = h.deps.keyCache.misses;
          const res = await call(secret, ip);
          expect(res.status).toBe(200);
          expect(h.deps.keyCache.misses).toBe(before);
          expect(watch.keys.filter((k) => k.startsWith("authfail:"))).toEqual([]);
          expect(watch.keys.length).toBe(2);
          expect(watch.keys[0]).toContain(key.id);
        } finally {
          watch.stop();
        }
      });
    });
  });
}
