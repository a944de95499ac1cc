import type { Server } from "bun";
import { Elysia } from "elysia";
import type { Deps } from "./deps.ts";
import { errorsPlugin } from "./plugins/errors.ts";
import { bodyLimitPlugin } from "./plugins/body-limit.ts";
import { observePlugin, requestRecorder, type InFlight } from "./plugins/observe.ts";
import { errorPage } from "./portal/respond.ts";
import { dataApiRoutes } from "./data-api/routes.ts";
import { proxyRoutes } from "./products/proxy.ts";
import { opsRoutes } from "./ops/routes.ts";
import { staticRoutes } from "./ops/static.ts";
import { docsCatalog, docsRoutes } from "./docs/api.ts";
import { docsPortal } from "./docs/portal.tsx";
import { keysApi } from "./keys/api.ts";
import { usageApi } from "./usage/api.ts";
import { auditApi } from "./audit/api.ts";
import { rotationApi } from "./rotation/api.ts";
import { notifyApi } from "./notify/api.ts";
import { leaksIntake } from "./leaks/api.ts";
import { accountsPortal } from "./accounts/portal.tsx";
import { sessionsPortal } from "./accounts/sessions-portal.tsx";
import { dashboardPortal } from "./portal/dashboard.tsx";
import { keysPortal } from "./keys/portal.tsx";
import { usagePortal } from "./usage/portal.tsx";
import { auditPortal } from "./audit/portal.tsx";
import { rotationPortal } from "./rotation/portal.tsx";
import { notifyPortal } from "./notify/portal.tsx";
import { adminPortal } from "./admin/portal.tsx";
import { mailAdminPortal } from "./email/admin.tsx";
import { productsAdminPortal } from "./products/portal.tsx";
import { billingPortal } from "./billing/portal.tsx";
import { emailPortal } from "./email/portal.tsx";
import { leaksApi } from "./leaks/routes.ts";
import { leaksPortal } from "./leaks/portal.tsx";

/** Composes the capabilities into one Elysia app; never listens (main.ts and tests do). */
export function createApp(deps: Deps) {
  const inflight: InFlight = { n: 0 };
  const record = requestRecorder(deps.log, deps.metrics);
  // Order matters: Elysia applies a hook to the routes registered after it. The data API
  // comes before the observe hooks, so its hot path runs none of them (its handlers record
  // requests themselves, src/gateway/route.ts); the error hook covers every route.
  let server: () => Server<unknown> | null = () => null;
  const gateway = { deps, record, inflight, server: () => server() };
  const app = new Elysia()
    .use(errorsPlugin(deps, errorPage))
    .use(bodyLimitPlugin(deps.config))
    .use(dataApiRoutes(gateway))
    .use(proxyRoutes(gateway))
    .use(observePlugin(record, inflight))
    .use(opsRoutes(deps))
    .use(staticRoutes(deps))
    .use(keysApi(deps))
    .use(usageApi(deps))
    .use(auditApi(deps))
    .use(rotationApi(deps))
    .use(notifyApi(deps))
    .use(leaksApi(deps))
    .use(leaksIntake(deps))
    .use(dashboardPortal(deps))
    .use(accountsPortal(deps))
    .use(emailPortal(deps))
    .use(sessionsPortal(deps))
    .use(keysPortal(deps))
    .use(usagePortal(deps))
    .use(auditPortal(deps))
    .use(rotationPortal(deps))
    .use(notifyPortal(deps))
    .use(billingPortal(deps))
    .use(adminPortal(deps))
    .use(leaksPortal(deps))
    .use(mailAdminPortal(deps))
    .use(productsAdminPortal(deps));
  // The document describes the routes above: it is made from the app itself, once, and the
  // reference pages are rendered from it (their try-it calls back into the app).
  const catalog = docsCatalog(app, deps.products);
  app.use(docsRoutes(catalog)).use(docsPortal(deps, app, catalog));
  server = () => app.server;
  return Object.assign(app, { inflight });
}

export type App = ReturnType<typeof createApp>;
