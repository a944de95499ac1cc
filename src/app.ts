import { Elysia } from "elysia";
import { html } from "@elysiajs/html";
import type { Deps } from "./deps.ts";
import { errorsPlugin } from "./plugins/errors.ts";
import { observePlugin, type InFlight } from "./plugins/observe.ts";
import { opsRoutes } from "./ops/routes.ts";
import { staticRoutes } from "./ops/static.ts";
import { portalRoutes } from "./portal/routes.tsx";
import { keyRoutes } from "./keys/routes.ts";
import { dataApiRoutes } from "./data-api/routes.ts";
import { rotationRoutes } from "./rotation/routes.ts";

/** Composes the capabilities into one Elysia app; never listens (main.ts and tests do). */
export function createApp(deps: Deps) {
  const inflight: InFlight = { n: 0 };
  const app = new Elysia()
    .use(errorsPlugin(deps.log))
    .use(observePlugin(deps.log, deps.metrics, inflight))
    .use(html())
    .use(opsRoutes(deps))
    .use(staticRoutes())
    .use(dataApiRoutes(deps))
    .use(keyRoutes(deps))
    .use(rotationRoutes(deps))
    .use(portalRoutes(deps));
  return Object.assign(app, { inflight });
}

export type App = ReturnType<typeof createApp>;
