import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";

/** /healthz: the process runs. /readyz: its database and Redis answer. /metrics: Prometheus. */
export const opsRoutes = (deps: Deps) =>
  new Elysia({ name: "ops" })
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
      const ready = Object.values(checks).every((v) => v === "ok");
      set.status = ready ? 200 : 503;
      return { status: ready ? "ready" : "unavailable", checks };
    })
    .get("/metrics", async ({ set }) => {
      set.headers["content-type"] = deps.metrics.registry.contentType;
      return new Response(await deps.metrics.registry.metrics(), {
        headers: { "content-type": deps.metrics.registry.contentType },
      });
    });

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout>;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    }),
  ]);
}
