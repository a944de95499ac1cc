/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";
import { DomainError } from "../errors.ts";
import { listKeys } from "../keys/service.ts";
import { pageSession } from "../portal/page.ts";
import { authPlugin } from "../portal/plugin.ts";
import { htmlResponse } from "../portal/respond.ts";
import { AuditPage } from "../../views/audit/audit.tsx";
import { auditQuery } from "./model.ts";
import { auditActions, listAuditEvents } from "./service.ts";

/** The audit log page, filtered by action and key, paged by cursor. */
export const auditPortal = (deps: Deps) =>
  new Elysia({ name: "audit-portal" }).use(authPlugin(deps)).get("/portal/audit", async ({ session, query }) => {
    const q = auditQuery.catch({}).parse(query);
    const filters = { action: q.action || undefined, keyId: q.keyId || undefined };
    let page: Awaited<ReturnType<typeof listAuditEvents>>;
    try {
      page = await listAuditEvents(deps.db, session.accountId, { ...filters, cursor: q.cursor || undefined });
    } catch (err) {
      // A cursor this page did not give: the first page.
      if (!(err instanceof DomainError)) throw err;
      page = await listAuditEvents(deps.db, session.accountId, filters);
    }
    const [actions, keys, layout] = await Promise.all([auditActions(deps.db, session.accountId), listKeys(deps, session.accountId), pageSession(deps, session)]);
    return htmlResponse(AuditPage({ session: layout, events: page.data, filters, actions, keys: keys.map((k) => ({ id: k.id, name: k.name })), nextCursor: page.nextCursor }));
  }, { page: true });
