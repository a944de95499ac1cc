/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";
import { authPlugin } from "../portal/plugin.ts";
import { htmlResponse } from "../portal/respond.ts";
import { AuditPage } from "../../views/audit/audit.tsx";
import { auditQuery } from "./model.ts";
import { auditPageModel } from "./pages.ts";

/** The audit log page, filtered by action and key, paged by cursor. */
export const auditPortal = (deps: Deps) =>
  new Elysia({ name: "audit-portal" })
    .use(authPlugin(deps))
    .get("/portal/audit", async ({ session, query }) => htmlResponse(AuditPage(await auditPageModel(deps, session, auditQuery.catch({}).parse(query)))), { page: true });
