import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";
import { listAuditEvents } from "../audit/service.ts";
import { apiAuthPlugin, callerOf } from "../plugins/auth.ts";
import { invalidInput, jsonObject } from "../errors.ts";
import { keyUsageReport } from "../usage/queries.ts";
import { createKey, getKey, listKeys, revokeKey, rollKey, updateKey } from "./service.ts";

function intParam(raw: string | undefined, field: string, min: number, max: number, fallback: number): number {
  if (raw === undefined || raw === "") return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min || n > max) throw invalidInput(`The query parameter ${field} is not valid.`, [{ field, message: `must be a whole number from ${min} to ${max}` }]);
  return n;
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
        const { keyId, action, cursor } = ctx.query as Record<string, string | undefined>;
        return listAuditEvents(deps.db, callerOf(ctx).accountId, { keyId, action, cursor });
      },
      { api: true },
    );

