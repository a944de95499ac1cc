import { Elysia } from "elysia";
import { Gauge } from "prom-client";
import { createHash, timingSafeEqual } from "node:crypto";
import type { Deps } from "../deps.ts";
import { requestOrigin } from "../plugins/origin.ts";
import { problemResponse } from "../plugins/problem.ts";

/**
 * /healthz: the process runs. /readyz: 200 when the database and Redis answer, else 503
 * naming the failure ("degraded" when only Redis is away). /metrics: Prometheus, behind
 * `Authorization: Bearer <METRICS_TOKEN>` when that is set.
 */
export const opsRoutes = (deps: Deps) => {
  registerDegradedGauge(deps);
  return new Elysia({ name: "ops" })
    .get("/healthz", () => ({ status: "ok" }))
    .get("/readyz", async ({ set }) => {
      const checks: Record<string, string> = {};
      const probe = async (name: string, ping: () => Promise<void>) => {
        try {
          await withTimeout(ping(), 2000);
          checks[name] = "ok";
        } catch (err) {
          checks[name] = `failed: ${(err as Error).message || "no answer"}`;
        }
      };
      await Promise.all([
        probe(`database (${deps.database.kind})`, () => deps.database.ping()),
        ...(deps.state.kind === "redis" ? [probe("redis", () => deps.state.ping())] : []),
      ]);
      const dbOk = Object.entries(checks).every(([name, v]) => name === "redis" || v === "ok");
      const redisOk = checks.redis === undefined || checks.redis === "ok";
      // 503 names what failed. Without Redis the gateway still answers (rate limits follow
      // RATE_LIMIT_ON_REDIS_ERROR), which the body calls "degraded"; without the database
      // new keys cannot be verified: "unavailable".
      set.status = dbOk && redisOk ? 200 : 503;
      return { status: !dbOk ? "unavailable" : redisOk ? "ready" : "degraded", checks };
    })
    .get("/metrics", async ({ request }) => {
      const refused = metricsRefusal(request, deps.config);
      if (refused) return refused;
      return new Response(await deps.metrics.registry.metrics(), {
        headers: { "content-type": deps.metrics.registry.contentType },
      });
    });
};

/**
 * The 401 for a /metrics request without the configured token, or null to serve it. Both
 * sides are hashed to the same length first, so the comparison takes the same time whatever
 * the guess (timingSafeEqual needs equal lengths and would leak the token's otherwise).
 */
function metricsRefusal(request: Request, config: Deps["config"]): Response | null {
  const token = config.metricsToken;
  if (!token) return null;
  const challenge = { "www-authenticate": 'Bearer realm="metrics"' };
  const given = /^Bearer +(\S+)\s*$/i.exec(request.headers.get("authorization") ?? "")?.[1];
  const origin = requestOrigin(request, config);
  if (!given) return problemResponse(origin, "missing_api_key", "/metrics needs Authorization: Bearer <METRICS_TOKEN>.", {}, challenge);
  const digest = (s: string) => createHash("sha256").update(s).digest();
  if (!timingSafeEqual(digest(given), digest(token))) return problemResponse(origin, "invalid_api_key", "The metrics token is not valid.", {}, challenge);
  return null;
}

/** keyport_redis_degraded: 1 while Redis fails and the outage policy decides limits. */
function registerDegradedGauge(deps: Deps): void {
  const name = "keyport_redis_degraded";
  if (deps.metrics.registry.getSingleMetric(name)) return;
  const state = deps.state as { degraded?: () => number | null };
  new Gauge({
    name,
    help: "1 while Redis is unreachable and rate limits follow RATE_LIMIT_ON_REDIS_ERROR",
    registers: [deps.metrics.registry],
    collect() {
      this.set(state.degraded?.() != null ? 1 : 0);
    },
  });
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]);
}
