import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { cliActor } from "../../src/audit/service.ts";
import { generateKey } from "../../src/keys/format.ts";
import { revokeKey } from "../../src/keys/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { AUTH_FAILURE_LIMIT } from "../../src/gateway/chain.ts";
import { backends, UNMETERED_PLANS } from "../support/backends.ts";
import { bearer, changeKey, newAccount, newKey, problem, roll } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const EMAIL = "/v1/email/someone@example.com";

for (const backend of backends) {
  describe(`gateway chain [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock, config: { trustProxy: true, plansFile: UNMETERED_PLANS } });
    });
    afterAll(() => h.close());

    /** Each test speaks from its own client address, so auth-failure budgets stay apart. */
    let ipCounter = 0;
    const from = () => ({ "x-forwarded-for": `198.51.100.${++ipCounter}` });

    it("answers 200 with the data for a valid key, and every rate-limit header", async () => {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { rateLimit: 10 });
      const res = await h.req(EMAIL, { headers: { ...bearer(secret), ...from() } });
      expect(res.status).toBe(200);
      expect((await res.json()).domain).toBe("example.com");
      expect(res.headers.get("ratelimit-policy")).toStartWith('"default";q=10;w=60, "plan";');
      expect(res.headers.get("ratelimit")).toStartWith('"default";r=9;t=6, "plan";');
      expect(res.headers.get("x-ratelimit-limit")).toBe("10");
      expect(res.headers.get("x-ratelimit-remaining")).toBe("9");
      expect(res.headers.get("x-ratelimit-reset")).toBe(String(Math.ceil((clock.now() + 6000) / 1000)));
      expect(res.headers.get("x-request-id")).toMatch(/^req_/);
    });

    it("takes the key from X-API-Key too", async () => {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id);
      expect((await h.req(EMAIL, { headers: { "x-api-key": secret, ...from() } })).status).toBe(200);
    });

    it.each([
      ["no key", {}, "missing_api_key"],
      ["an empty bearer", { authorization: "Bearer " }, "missing_api_key"],
      ["a malformed key", { authorization: "Bearer nope" }, "invalid_api_key"],
      ["a wrong checksum", { authorization: `Bearer kp_live_${"a".repeat(46)}` }, "invalid_api_key"],
      ["a well-formed unknown key", { authorization: `Bearer ${generateKey("kp", "live")}` }, "invalid_api_key"],
      ["another prefix", { authorization: `Bearer ${generateKey("zz", "live")}` }, "invalid_api_key"],
    ])("answers 401 for %s, with rate-limit headers", async (_, headers, code) => {
      const res = await h.req(EMAIL, { headers: { ...headers, ...from() } });
      expect(res.status).toBe(401);
      expect(await problem(res)).toMatchObject({ status: 401, code, title: "Unauthorized" });
      expect(res.headers.get("ratelimit-policy")).toContain("auth-failures");
      expect(res.headers.get("x-ratelimit-limit")).toBe(String(AUTH_FAILURE_LIMIT));
    });

    it("rejects a bad checksum without any database query", async () => {
      const before = h.deps.database.queryCount();
      await h.req(EMAIL, { headers: { authorization: `Bearer kp_live_${"b".repeat(46)}`, ...from() } });
      expect(h.deps.database.queryCount()).toBe(before);
    });

    it("verifies a cached key with no database query, and remembers unknown keys", async () => {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { rateLimit: 1000 });
      await h.req(EMAIL, { headers: bearer(secret) });
      const before = h.deps.database.queryCount();
      for (let i = 0; i < 20; i++) expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
      expect(h.deps.database.queryCount()).toBe(before);

      const unknown = generateKey("kp", "live");
      const results = await Promise.all(Array.from({ length: 30 }, () => h.req(EMAIL, { headers: { ...bearer(unknown), ...from() } })));
      expect(results.every((r) => r.status === 401)).toBe(true);
      expect(h.deps.database.queryCount()).toBe(before + 1);
    });

    it("answers 401 key_revoked on the very next request after a revoke", async () => {
      const account = await newAccount(h);
      const { key, secret } = await newKey(h, account.id);
      expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
      await revokeKey(h.deps, account.id, key.id, cliActor);
      const res = await h.req(EMAIL, { headers: { ...bearer(secret), ...from() } });
      expect(res.status).toBe(401);
      expect((await problem(res)).code).toBe("key_revoked");
    });

    it("answers 401 key_expired once the expiry passes", async () => {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { expiresAt: new Date(clock.now() + 60_000).toISOString() });
      expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
      clock.advance(60_000);
      const res = await h.req(EMAIL, { headers: { ...bearer(secret), ...from() } });
      expect((await problem(res)).code).toBe("key_expired");
    });

    it("keeps a rolled key answering through its grace period and refuses it after", async () => {
      const account = await newAccount(h);
      const { key, secret } = await newKey(h, account.id);
      const rolled = await roll(h, account.id, key.id, { gracePeriodHours: 1 });
      expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
      expect((await h.req(EMAIL, { headers: bearer(rolled.secret) })).status).toBe(200);
      clock.advance(3_600_000);
      const res = await h.req(EMAIL, { headers: { ...bearer(secret), ...from() } });
      expect((await problem(res)).code).toBe("key_revoked");
      expect((await h.req(EMAIL, { headers: bearer(rolled.secret) })).status).toBe(200);
    });

    it("answers 403 insufficient_scope naming the scope, and sees a scope change at once", async () => {
      const account = await newAccount(h);
      const { key, secret } = await newKey(h, account.id, { scopes: ["ip:read"] });
      const res = await h.req(EMAIL, { headers: bearer(secret) });
      expect(res.status).toBe(403);
      expect(await problem(res)).toMatchObject({ code: "insufficient_scope", requiredScope: "email:read" });
      expect(res.headers.get("x-ratelimit-limit")).toBe("60");
      await changeKey(h, account.id, key.id, { scopes: ["ip:read", "email:read"] });
      expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
    });

    it("answers 403 ip_not_allowed outside the allowlist and 200 inside it (IPv4, IPv6, CIDR)", async () => {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { ipAllowlist: ["203.0.113.0/24", "2001:db8::/32"] });
      const at = (ip: string) => h.req(EMAIL, { headers: { ...bearer(secret), "x-forwarded-for": `10.9.9.9, ${ip}` } });
      expect((await at("203.0.113.77")).status).toBe(200);
      expect((await at("2001:db8::5")).status).toBe(200);
      const res = await at("192.0.2.1");
      expect(res.status).toBe(403);
      expect((await problem(res)).code).toBe("ip_not_allowed");
      // The left-most hop is client-controlled: only the last hop (our proxy's view) counts.
      const spoofed = await h.req(EMAIL, { headers: { ...bearer(secret), "x-forwarded-for": "203.0.113.77, 192.0.2.1" } });
      expect(spoofed.status).toBe(403);
    });

    it("lets exactly N requests through a limit of N and answers the next with 429 and Retry-After", async () => {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { rateLimit: 5 });
      const statuses = [];
      for (let i = 0; i < 5; i++) statuses.push((await h.req(EMAIL, { headers: bearer(secret) })).status);
      expect(statuses).toEqual([200, 200, 200, 200, 200]);
      const limited = await h.req(EMAIL, { headers: bearer(secret) });
      expect(limited.status).toBe(429);
      expect((await problem(limited)).code).toBe("rate_limited");
      expect(limited.headers.get("retry-after")).toBe("12");
      expect(limited.headers.get("x-ratelimit-remaining")).toBe("0");
      clock.advance(12_000);
      expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
    });

    it("admits exactly N of a concurrent burst", async () => {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { rateLimit: 20 });
      const results = await Promise.all(Array.from({ length: 35 }, () => h.req(EMAIL, { headers: bearer(secret) })));
      expect(results.filter((r) => r.status === 200).length).toBe(20);
      expect(results.filter((r) => r.status === 429).length).toBe(15);
    });

    it("answers 429 quota_exceeded when the monthly quota is used up, until the next UTC month", async () => {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { monthlyQuota: 3, rateLimit: 1000 });
      for (let i = 0; i < 3; i++) expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
      const res = await h.req(EMAIL, { headers: bearer(secret) });
      expect(res.status).toBe(429);
      expect((await problem(res)).code).toBe("quota_exceeded");
      const d = new Date(clock.now());
      const nextMonth = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
      expect(res.headers.get("retry-after")).toBe(String(Math.ceil((nextMonth - clock.now()) / 1000)));
      clock.set(nextMonth);
      expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
    });

    it("starts a new quota when the month turns while the key stays cached", async () => {
      const d = new Date(clock.now());
      const monthEnd = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
      clock.set(monthEnd - 2_000);
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { monthlyQuota: 2, rateLimit: 1000 });
      for (let i = 0; i < 2; i++) expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
      expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(429);
      // Well inside the cache's lifetime: the cached key turns to the new month's counter.
      clock.advance(3_000);
      for (let i = 0; i < 2; i++) expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
      expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(429);
    });

    it("rate-limits failed authentications per client address", async () => {
      const ip = { "x-forwarded-for": "192.0.2.250" };
      let last: Response | undefined;
      for (let i = 0; i <= AUTH_FAILURE_LIMIT; i++) last = await h.req(EMAIL, { headers: { ...ip, authorization: "Bearer nope" } });
      expect(last!.status).toBe(429);
      expect(last!.headers.get("retry-after")).not.toBeNull();
      // Another address is unaffected.
      expect((await h.req(EMAIL, { headers: { "x-forwarded-for": "192.0.2.251", authorization: "Bearer nope" } })).status).toBe(401);
    });

    it("answers 400 invalid_request for a bad IP address, still with rate-limit headers", async () => {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id);
      const res = await h.req("/v1/ip/999.1.1.1", { headers: bearer(secret) });
      expect(res.status).toBe(400);
      expect((await problem(res)).code).toBe("invalid_request");
      expect(res.headers.get("x-ratelimit-limit")).toBe("60");
    });

    it("answers a batch item by item and refuses more than 100 items", async () => {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { rateLimit: 1000 });
      const ok = await h.req("/v1/batch", {
        method: "POST",
        headers: bearer(secret),
        json: { items: [{ type: "email", value: "a@gmial.com" }, { type: "ip", value: "8.8.8.8" }, { type: "ip", value: "nope" }] },
      });
      expect(ok.status).toBe(200);
      const body = await ok.json();
      expect(body.results.length).toBe(3);
      expect(body.results[2].error.code).toBe("invalid_request");
      const big = await h.req("/v1/batch", { method: "POST", headers: bearer(secret), json: { items: Array.from({ length: 101 }, () => ({ type: "ip", value: "1.1.1.1" })) } });
      expect(big.status).toBe(400);
      expect((await problem(big)).detail).toContain("at most 100");
    });

    it("needs batch:write for a batch", async () => {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { scopes: ["email:read"] });
      const res = await h.req("/v1/batch", { method: "POST", headers: bearer(secret), json: { items: [{ type: "ip", value: "1.1.1.1" }] } });
      expect((await problem(res)).code).toBe("insufficient_scope");
    });

    it("answers 503 temporarily_unavailable, not 401, for an unknown key while the database is down", async () => {
      const other = await startHarness(backend, { clock });
      const account = await newAccount(other);
      const { secret } = await newKey(other, account.id);
      expect((await other.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
      await other.deps.database.close();
      // The cached key keeps verifying.
      expect((await other.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
      const res = await other.req(EMAIL, { headers: bearer(generateKey("kp", "live")) });
      expect(res.status).toBe(503);
      expect((await problem(res)).code).toBe("temporarily_unavailable");
      await other.deps.keyCache.stop();
      await other.deps.state.close();
    });
  });
}

describe("quota warning", () => {
  it("notifies usage.quota_warning once, on the request that crosses 80% of the monthly quota", async () => {
    const { notifications } = await import("../../src/db/schema.ts");
    const { eq } = await import("drizzle-orm");
    const h = await startHarness(backends[0]!, { config: { plansFile: UNMETERED_PLANS } });
    try {
      const account = await newAccount(h);
      const { key, secret } = await newKey(h, account.id, { monthlyQuota: 10, rateLimit: 1000 });
      for (let i = 0; i < 10; i++) await h.req(EMAIL, { headers: bearer(secret) });
      // The warning is written after the answer is sent: poll (bounded) until it lands.
      const warnings = async () => (await h.deps.db.select().from(notifications).where(eq(notifications.keyId, key.id))).filter((n) => n.event === "usage.quota_warning");
      for (let i = 0; i < 100 && (await warnings()).length === 0; i++) await new Promise((r) => setImmediate(r));
      const rows = await warnings();
      expect(rows.length).toBe(1);
      expect(rows[0]!.data).toMatchObject({ used: 8, quota: 10 });
    } finally {
      await h.close();
    }
  });
});

describe("requests in flight", () => {
  it("returns to zero after answers of every kind (the shutdown drain waits for it)", async () => {
    const h = await startHarness(backends[0]!, { config: { plansFile: UNMETERED_PLANS } });
    try {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { rateLimit: 1000 });
      const answers = await Promise.all([
        h.req(EMAIL, { headers: bearer(secret) }),
        h.req(EMAIL),
        h.req("/v1/ip/not-an-ip", { headers: bearer(secret) }),
        h.req("/v1/batch", { method: "POST", headers: { ...bearer(secret), "content-type": "application/json" }, body: "{not json" }),
        h.req("/v1/batch", { method: "POST", headers: bearer(secret), json: { items: [{ type: "email", value: "a@example.com" }] } }),
        h.req("/healthz"),
        h.req("/api/keys", { headers: bearer(secret) }),
        h.req("/no/such/route"),
        h.req("/login"),
      ]);
      expect(answers.map((r) => r.status)).toEqual([200, 401, 400, 400, 200, 200, 403, 404, 200]);
      // After-response hooks run on a later turn of the event loop.
      for (let i = 0; i < 50 && h.app.inflight.n !== 0; i++) await new Promise((r) => setImmediate(r));
      expect(h.app.inflight.n).toBe(0);
    } finally {
      await h.close();
    }
  });
});

describe("percent-encoding in the path", () => {
  // app.handle routes with Elysia's router; a listening server with Bun's, which decodes a
  // bad escape differently: both must refuse it.
  it("refuses a path segment that is not valid percent-encoding, through the socket as through app.handle", async () => {
    const h = await startHarness(backends[0]!, { config: { plansFile: UNMETERED_PLANS } });
    try {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { rateLimit: 1000 });
      h.app.listen({ port: 0, hostname: "127.0.0.1" });
      const origin = `http://127.0.0.1:${h.app.server!.port}`;
      for (const path of ["/v1/email/%ff", "/v1/email/a%%40b.com", "/v1/email/%e2%82", "/v1/ip/%ff"]) {
        for (const res of [await h.req(path, { headers: bearer(secret) }), await fetch(origin + path, { headers: bearer(secret) })]) {
          expect([path, res.status]).toEqual([path, 400]);
          expect(await problem(res)).toMatchObject({ code: "invalid_request", detail: "The address is not validly percent-encoded." });
        }
      }
      // A U+FFFD the client sent, encoded, is an address like any other (an invalid one).
      const sent = await fetch(`${origin}/v1/email/%EF%BF%BD`, { headers: bearer(secret) });
      expect(sent.status).toBe(200);
      expect(await sent.json()).toMatchObject({ input: "\uFFFD", valid: false });
    } finally {
      await h.app.stop();
      await h.close();
    }
  });
});
