import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { createApp } from "../../src/app.ts";
import type { Config } from "../../src/config.ts";
import { cliActor } from "../../src/audit/service.ts";
import { revokeKey } from "../../src/keys/service.ts";
import { createLogger } from "../../src/ops/log.ts";
import { assembleDeps, type OwnedDeps } from "../../src/runtime.ts";
import { RedisState } from "../../src/state/redis.ts";
import { ResilientState } from "../../src/state/resilient.ts";
import { backends, freshDatabase, testConfig, UNMETERED_PLANS } from "../support/backends.ts";
import { bearer, newAccount, newKey } from "../support/fixtures.ts";
import type { Harness } from "../support/harness.ts";
import { startProxy, type FaultProxy } from "../support/proxy.ts";

const service = backends.find((b) => b.name === "service");
const EMAIL = "/v1/email/a@example.com";

/** An app whose Redis goes through a cuttable proxy, with an outage policy. */
async function appBehindProxy(policy: Config["rateLimitOnRedisError"], instanceCount = 1) {
  const proxy = startProxy(Number(new URL(service!.redisUrl!).port || 6379));
  const database = await freshDatabase(service!);
  const url = new URL(service!.redisUrl!);
  url.port = String(proxy.port);
  const logs: string[] = [];
  const log = createLogger("debug", (l) => void logs.push(l));
  const redis = await RedisState.connect(url.toString(), { prefix: `kptest:${randomBytes(4).toString("hex")}:`, commandTimeoutMs: 300 });
  const state = new ResilientState(redis, { policy, instanceCount, log, retryAfterMs: 200 });
  const deps: OwnedDeps = await assembleDeps({ ...testConfig(), rateLimitOnRedisError: policy, instanceCount, trustProxy: true, plansFile: UNMETERED_PLANS }, database, state, { log });
  const app = createApp(deps);
  const h: Harness = { deps, app, logs, req: (path, init = {}) => app.handle(new Request(`http://localhost${path}`, init)), close: () => deps.close() };
  return {
    h,
    proxy,
    state,
    async close() {
      proxy.restore();
      await redis.purge().catch(() => {});
      await deps.close();
      proxy.close();
    },
  };
}

describe.skipIf(!service)("Redis outage [service]", () => {
  let env: Awaited<ReturnType<typeof appBehindProxy>>;
  beforeAll(async () => {
    env = await appBehindProxy("local", 2);
  });
  afterAll(() => env.close());

  it("keeps answering with no 5xx, limits locally at limit / instances, reports degraded, and goes back to Redis", async () => {
    const { h, proxy, state } = env;
    const account = await newAccount(h);
    const { secret } = await newKey(h, account.id, { rateLimit: 20 });
    expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
    expect((await h.req("/readyz")).status).toBe(200);

    proxy.cut();
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) statuses.push((await h.req(EMAIL, { headers: bearer(secret) })).status);
    expect(statuses.filter((s) => s >= 500)).toEqual([]);
    // 20 per minute over 2 instances: this instance admits 10 on its own.
    expect(statuses.filter((s) => s === 200).length).toBe(10);
    expect(statuses.filter((s) => s === 429).length).toBe(30);
    expect(state.degraded()).not.toBeNull();
    const ready = await h.req("/readyz");
    expect(ready.status).toBe(503);
    expect((await ready.json()).status).toBe("degraded");
    expect(h.logs.filter((l) => l.includes("redis unavailable")).length).toBe(1);
    expect(await (await h.req("/metrics")).text()).toContain("keyport_redis_degraded 1");

    proxy.restore();
    // ioredis reconnects on its own; the breaker probes again after its pause.
    let back = false;
    for (let i = 0; i < 100 && !back; i++) {
      await Bun.sleep(50);
      back = (await h.req("/readyz")).status === 200;
    }
    expect(back).toBe(true);
    expect(state.degraded()).toBeNull();
    const { secret: fresh } = await newKey(h, account.id, { rateLimit: 5 });
    const after: number[] = [];
    for (let i = 0; i < 7; i++) after.push((await h.req(EMAIL, { headers: bearer(fresh) })).status);
    expect(after).toEqual([200, 200, 200, 200, 200, 429, 429]);
    expect(h.logs.some((l) => l.includes("redis is back"))).toBe(true);
    expect(await (await h.req("/metrics")).text()).toContain("keyport_redis_degraded 0");
    // Requests during the cut wait out the 300 ms command timeout until the breaker opens, and
    // the breaker's probe pause passes before Redis is used again: 1-2 s.
  }, 15_000);

  it("still revokes on the next request of this instance while Redis is away", async () => {
    const { h, proxy } = env;
    const account = await newAccount(h);
    const { key, secret } = await newKey(h, account.id, { rateLimit: 100 });
    expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
    proxy.cut();
    await revokeKey(h.deps, account.id, key.id, cliActor);
    const res = await h.req(EMAIL, { headers: { ...bearer(secret), "x-forwarded-for": "192.0.2.77" } });
    expect(res.status).toBe(401);
    proxy.restore();
  });
});

describe.skipIf(!service)("Redis outage policies [service]", () => {
  for (const [policy, expected] of [
    ["allow", 12],
    ["deny", 0],
  ] as const) {
    it(`RATE_LIMIT_ON_REDIS_ERROR=${policy} admits ${expected} of 12 over a limit of 3`, async () => {
      const env = await appBehindProxy(policy);
      try {
        const account = await newAccount(env.h);
        const { secret } = await newKey(env.h, account.id, { rateLimit: 3 });
        env.proxy.cut();
        const statuses: number[] = [];
        for (let i = 0; i < 12; i++) statuses.push((await env.h.req(EMAIL, { headers: bearer(secret) })).status);
        expect(statuses.filter((s) => s >= 500)).toEqual([]);
        expect(statuses.filter((s) => s === 200).length).toBe(expected);
      } finally {
        await env.close();
      }
      // Requests wait out the 300 ms command timeout until the breaker opens: about 1 s.
    }, 10_000);
  }
});
