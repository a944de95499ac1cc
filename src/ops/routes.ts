import { Elysia } from "elysia";
import { Gauge } from "prom-client";
import type { Deps } from "../deps.ts";

/**
 * /healthz: the process runs. /readyz: 200 when the database and Redis answer, else 503
 * naming the failure ("degraded" when only Redis is away). /metrics: Prometheus.
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
    .get("/metrics", async ({ set }) => {
      set.headers["content-type"] = deps.metrics.registry.contentType;
      return new Response(await deps.metrics.registry.metrics(), {
        headers: { "content-type": deps.metrics.registry.contentType },
      });
    });
};

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
