import { Elysia } from "elysia";
import { and, desc, eq, lt, or, type SQL } from "drizzle-orm";
import type { Deps } from "../deps.ts";
import { auditEvents } from "../audit/audit.sql.ts";
import { apiAuthPlugin, callerOf } from "../plugins/auth.ts";
import { invalidRequest } from "../plugins/problem.ts";
import { keyUsageReport } from "../usage/queries.ts";
import { createKey, getKey, listKeys, revokeKey, rollKey, updateKey } from "./service.ts";

function jsonObject(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null || body === "") return {};
  if (typeof body !== "object" || Array.isArray(body)) throw invalidRequest("The body must be a JSON object.");
  return body as Record<string, unknown>;
}

function intParam(raw: string | undefined, field: string, min: number, max: number, fallback: number): number {
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min || n > max) throw invalidRequest(`The query parameter ${field} is not valid.`, [{ field, message: `must be a whole number from ${min} to ${max}` }]);
  return n;
}

const AUDIT_PAGE = 50;

function encodeCursor(createdAt: Date, id: string): string {
  return Buffer.from(`${createdAt.toISOString()}|${id}`).toString("base64url");
}

function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  const [iso, id] = Buffer.from(cursor, "base64url").toString().split("|");
  const createdAt = new Date(iso ?? "");
  if (!id || Number.isNaN(createdAt.getTime())) throw invalidRequest("The cursor is not valid.", [{ field: "cursor", message: "is not a cursor this API returned" }]);
  return { createdAt, id };
}

/** The management API for keys, their usage and the audit log (DESIGN.md "Management API"). */
export const keyRoutes = (deps: Deps) =>
  new Elysia({ name: "key-routes", prefix: "/api" })
    .use(apiAuthPlugin(deps))
    .get("/keys", async (ctx) => ({ data: await listKeys(deps, callerOf(ctx).accountId) }), { api: true })
    .post(
      "/keys",
      async (ctx) => {
        const caller = callerOf(ctx);
        const { key, secret } = await createKey(deps, caller.accountId, jsonObject(ctx.body), caller.actor);
        ctx.set.status = 201;
        ctx.set.headers["cache-control"] = "no-store";
        return { ...key, secret };
      },
      { api: true },
    )
    .get("/keys/:id", async (ctx) => getKey(deps, callerOf(ctx).accountId, ctx.params.id), { api: true })
    .patch(
      "/keys/:id",
      async (ctx) => {
        const caller = callerOf(ctx);
        return updateKey(deps, caller.accountId, ctx.params.id, jsonObject(ctx.body), caller.actor);
      },
      { api: true },
    )
    .delete(
      "/keys/:id",
      async (ctx) => {
        const caller = callerOf(ctx);
        return revokeKey(deps, caller.accountId, ctx.params.id, caller.actor);
      },
      { api: true },
    )
    .post(
      "/keys/:id/roll",
      async (ctx) => {
        const caller = callerOf(ctx);
        const { key, secret, previous } = await rollKey(deps, caller.accountId, ctx.params.id, jsonObject(ctx.body), caller.actor);
        ctx.set.status = 201;
        ctx.set.headers["cache-control"] = "no-store";
        return { ...key, secret, previous };
      },
      { api: true },
    )
    .get(
      "/keys/:id/usage",
      async (ctx) => {
        const caller = callerOf(ctx);
        const days = intParam(ctx.query.days, "days", 1, 366, 30);
        // Ownership first: another account's key answers 404 like a missing one.
        const key = await getKey(deps, caller.accountId, ctx.params.id);
        return keyUsageReport(deps.db, key.id, days, deps.clock.now());
      },
      { api: true },
    )
    .get(
      "/audit",
      async (ctx) => {
        const caller = callerOf(ctx);
        const { keyId, action, cursor } = ctx.query as Record<string, string | undefined>;
        const where: (SQL | undefined)[] = [eq(auditEvents.accountId, caller.accountId)];
        if (keyId) where.push(eq(auditEvents.keyId, keyId));
        if (action) where.push(eq(auditEvents.action, action));
        if (cursor) {
          const c = decodeCursor(cursor);
          where.push(or(lt(auditEvents.createdAt, c.createdAt), and(eq(auditEvents.createdAt, c.createdAt), lt(auditEvents.id, c.id))));
        }
        const rows = await deps.db
          .select()
          .from(auditEvents)
          .where(and(...where))
          .orderBy(desc(auditEvents.createdAt), desc(auditEvents.id))
          .limit(AUDIT_PAGE + 1);
        const page = rows.slice(0, AUDIT_PAGE);
        const last = page[page.length - 1];
        return {
          data: page.map((e) => ({
            id: e.id,
            action: e.action,
            actor: e.actor,
            keyId: e.keyId,
            ip: e.ip,
            userAgent: e.userAgent,
            changes: e.changes,
            createdAt: e.createdAt.toISOString(),
          })),
          nextCursor: rows.length > AUDIT_PAGE && last ? encodeCursor(last.createdAt, last.id) : null,
        };
      },
      { api: true },
    );

