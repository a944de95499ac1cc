import type { Server } from "bun";
import { Elysia } from "elysia";
import { html } from "@elysiajs/html";
import type { Deps } from "./deps.ts";
import { errorsPlugin } from "./plugins/errors.ts";
import { messagePage } from "./portal/respond.ts";
import { observePlugin, requestRecorder, type InFlight } from "./plugins/observe.ts";
import { opsRoutes } from "./ops/routes.ts";
import { staticRoutes } from "./ops/static.ts";
import { portalRoutes } from "./portal/routes.tsx";
import { keyRoutes } from "./keys/routes.ts";
import { dataApiRoutes } from "./data-api/routes.ts";
import { rotationRoutes } from "./rotation/routes.ts";

/** Composes the capabilities into one Elysia app; never listens (main.ts and tests do). */
export function createApp(deps: Deps) {
  const inflight: InFlight = { n: 0 };
  const record = requestRecorder(deps.log, deps.metrics);
  // Order matters: Elysia applies a hook to the routes registered after it. The data API
  // comes before the observe and html hooks, so its hot path runs none of them (its handlers
  // record requests themselves, src/gateway/route.ts); the error hook covers every route.
  let server: () => Server<unknown> | null = () => null;
  const app = new Elysia()
    .use(errorsPlugin(deps.log, messagePage))
    .use(dataApiRoutes({ deps, record, inflight, server: () => server() }))
    .use(observePlugin(record, inflight))
    .use(html())
    .use(opsRoutes(deps))
    .use(staticRoutes())
    .use(keyRoutes(deps))
    .use(rotationRoutes(deps))
    .use(portalRoutes(deps));
  server = () => app.server;
  return Object.assign(app, { inflight });
}

export type App = ReturnType<typeof createApp>;
