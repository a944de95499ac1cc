import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";
import { operation } from "../plugins/openapi.ts";
import { authPlugin } from "../portal/plugin.ts";
import { auditPageSchema, auditQuery } from "./model.ts";
import { listAuditEvents } from "./service.ts";

/** The account's audit log (DESIGN.md "Management API"). */
export const auditApi = (deps: Deps) =>
  new Elysia({ name: "audit-api", prefix: "/api" }).use(authPlugin(deps)).get("/audit", async ({ caller, query }) => listAuditEvents(deps.db, caller.accountId, query), {
    caller: true,
    query: auditQuery,
    detail: operation({
      id: "listAuditEvents",
      tag: "audit",
      summary: "The account's audit events",
      description: "Newest first, 50 a page; pass `nextCursor` as `cursor` for the next page.",
      answers: {
        200: {
          description: "One page of events.",
          schema: auditPageSchema,
          example: {
            data: [{ id: "aud_1", action: "key.created", actor: "account:acct_1", keyId: "key_4f8Qm2xV9kTz1aB3", ip: "203.0.113.7", userAgent: "curl/8.5.0", changes: { name: "ci" }, createdAt: "2026-12-01T10:00:00.000Z" }],
            nextCursor: null,
          },
        },
      },
      errors: ["invalid_request"],
    }),
  });
