/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";
import { validateSession } from "../accounts/sessions.ts";
import { listKeys } from "../keys/service.ts";
import { accountOverview } from "../usage/queries.ts";
import { DashboardPage } from "../../views/portal/dashboard.tsx";
import { HomePage } from "../../views/portal/home.tsx";
import { paths } from "../../views/components.tsx";
import { sessionToken } from "./http.ts";
import { pageSession } from "./page.ts";
import { authPlugin } from "./plugin.ts";
import { htmlResponse } from "./respond.ts";

/** The home page (the dashboard once signed in) and the dashboard: keys, requests, error rate. */
export const dashboardPortal = (deps: Deps) =>
  new Elysia({ name: "dashboard-portal" })
    .use(authPlugin(deps))
    .get("/", async ({ request }) => {
      if (await validateSession(deps, sessionToken(request))) return new Response(null, { status: 303, headers: { location: paths.dashboard } });
      return htmlResponse(HomePage({ origin: new URL(request.url).origin, keyPrefix: deps.config.keyPrefix }));
    })
    .get("/portal", async ({ session, request }) => {
      const [keys, overview, layout] = await Promise.all([listKeys(deps, session.accountId), accountOverview(deps.db, session.accountId, deps.clock.now()), pageSession(deps, session)]);
      return htmlResponse(
        DashboardPage({ session: layout, overview, activeKeys: keys.filter((k) => k.status === "active").length, origin: new URL(request.url).origin, prefix: deps.config.keyPrefix }),
      );
    }, { page: true });
