import { Elysia } from "elysia";
import { eq } from "drizzle-orm";
import type { Deps } from "../deps.ts";
import { accounts } from "../accounts/accounts.sql.ts";
import { apiAuthPlugin, callerOf } from "../plugins/auth.ts";
import { jsonObject } from "../errors.ts";
import { listNotifications, markAllRead, unreadCount } from "../notify/service.ts";
import { deleteWebhook, getWebhook, listDeliveries, resendDelivery, setWebhook } from "../notify/webhooks.ts";
import { getKey } from "../keys/service.ts";
import { cancelRotation, emergencyRotation, getPolicy, listRotations, revealRotationSecret, scheduleRotation, setPolicy } from "./service.ts";

/** Rotations, the rotation policy, notifications and the webhook endpoint (DESIGN.md "Management API"). */
export const rotationRoutes = (deps: Deps) =>
  new Elysia({ name: "rotation-routes", prefix: "/api" })
    .use(apiAuthPlugin(deps))
    .get("/rotation-policy", async (ctx) => getPolicy(deps, callerOf(ctx).accountId), { api: true })
    .put(
      "/rotation-policy",
      async (ctx) => {
        const c = callerOf(ctx);
        return setPolicy(deps, c.accountId, jsonObject(ctx.body), c.actor);
      },
      { api: true },
    )
    .get(
      "/keys/:id/rotations",
      async (ctx) => {
        const c = callerOf(ctx);
        await getKey(deps, c.accountId, ctx.params.id);
        return { data: await listRotations(deps, c.accountId, { keyId: ctx.params.id }) };
      },
      { api: true },
    )
    .post(
      "/keys/:id/rotations",
      async (ctx) => {
        const c = callerOf(ctx);
        ctx.set.status = 201;
        return scheduleRotation(deps, c.accountId, ctx.params.id, jsonObject(ctx.body), c.actor);
      },
      { api: true },
    )
    .post(
      "/keys/:id/rotations/emergency",
      async (ctx) => {
        const c = callerOf(ctx);
        const { rotation, secret } = await emergencyRotation(deps, c.accountId, ctx.params.id, jsonObject(ctx.body), c.actor);
        ctx.set.status = 201;
        ctx.set.headers["cache-control"] = "no-store";
        return { ...rotation, secret };
      },
      { api: true },
    )
    .get("/rotations", async (ctx) => ({ data: await listRotations(deps, callerOf(ctx).accountId, { inFlight: ctx.query.state === "in_flight" }) }), { api: true })
    .delete(
      "/rotations/:id",
      async (ctx) => {
        const c = callerOf(ctx);
        return cancelRotation(deps, c.accountId, ctx.params.id, c.actor);
      },
      { api: true },
    )
    .post(
      "/rotations/:id/reveal",
      async (ctx) => {
        const c = callerOf(ctx);
        const { rotation, secret } = await revealRotationSecret(deps, c.accountId, ctx.params.id, c.actor);
        ctx.set.headers["cache-control"] = "no-store";
        return { ...rotation, secret };
      },
      { api: true },
    )
    .get(
      "/notifications",
      async (ctx) => {
        const id = callerOf(ctx).accountId;
        const [rows, unread] = await Promise.all([listNotifications(deps.db, id), unreadCount(deps.db, id)]);
        return {
          unread,
          data: rows.map((n) => ({ id: n.id, event: n.event, keyId: n.keyId, data: n.data, createdAt: n.createdAt.toISOString(), readAt: n.readAt?.toISOString() ?? null })),
        };
      },
      { api: true },
    )
    .post(
      "/notifications/read",
      async (ctx) => {
        await markAllRead(deps.db, callerOf(ctx).accountId, new Date(deps.clock.now()));
        return { unread: 0 };
      },
      { api: true },
    )
    .get("/webhook", async (ctx) => ({ endpoint: await getWebhook(deps, callerOf(ctx).accountId), deliveries: await listDeliveries(deps, callerOf(ctx).accountId) }), { api: true })
    .put(
      "/webhook",
      async (ctx) => {
        const c = callerOf(ctx);
        const [me] = await deps.db.select({ op: accounts.isOperator }).from(accounts).where(eq(accounts.id, c.accountId));
        ctx.set.headers["cache-control"] = "no-store";
        return setWebhook(deps, c.accountId, jsonObject(ctx.body), c.actor, Boolean(me?.op));
      },
      { api: true },
    )
    .delete(
      "/webhook",
      async (ctx) => {
        const c = callerOf(ctx);
        await deleteWebhook(deps, c.accountId, c.actor);
        return { endpoint: null };
      },
      { api: true },
    )
    .post(
      "/webhook/deliveries/:id/resend",
      async (ctx) => {
        ctx.set.status = 202;
        return { id: await resendDelivery(deps, callerOf(ctx).accountId, ctx.params.id) };
      },
      { api: true },
    );
