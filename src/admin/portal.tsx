/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";
import { pageSession } from "../portal/page.ts";
import { authPlugin } from "../portal/plugin.ts";
import { htmlResponse } from "../portal/respond.ts";
import { complianceCsv } from "../rotation/portal.tsx";
import { complianceReport } from "../rotation/compliance.ts";
import { CompliancePage } from "../../views/rotation/compliance.tsx";

/** Operators' pages (404 for anyone else): every account's key compliance. */
export const adminPortal = (deps: Deps) =>
  new Elysia({ name: "admin-portal" })
    .use(authPlugin(deps))
    .get("/admin/compliance", async ({ session }) => {
      const report = await complianceReport(deps.db, deps.clock.now());
      return htmlResponse(CompliancePage({ session: await pageSession(deps, session), report, now: deps.clock.now(), operator: true }));
    }, { operator: true })
    .get("/admin/compliance.csv", async () => complianceCsv(await complianceReport(deps.db, deps.clock.now())), { operator: true });
