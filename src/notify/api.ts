import { Elysia } from "elysia";
import { isOperator } from "../accounts/service.ts";
import type { Deps } from "../deps.ts";
import { operation } from "../plugins/openapi.ts";
import { authPlugin } from "../portal/plugin.ts";
import { deliveryIdParams, notificationListSchema, resentSchema, unreadSchema, webhookDeletedSchema, webhookSchema, webhookSetSchema, webhookStateSchema } from "./model.ts";
import { listNotificationViews, markAllRead, unreadCount } from "./service.ts";
import { deleteWebhook, getWebhook, listDeliveries, resendDelivery, setWebhook } from "./webhooks.ts";

const DELIVERY = {
  id: "dlv_3Nq8Wc1Zr6Tb9Ks2",
  event: "key.created",
  url: "https://hooks.example.com/keyport",
  state: "delivered",
  attempts: 1,
  lastStatus: 200,
  lastError: null,
  nextAttemptAt: "2026-12-01T10:00:00.000Z",
  createdAt: "2026-12-01T10:00:00.000Z",
  deliveredAt: "2026-12-01T10:00:01.000Z",
} as const;

/** Notifications and the webhook endpoint (README "Rotation and notifications"). */
export const notifyApi = (deps: Deps) =>
  new Elysia({ name: "notify-api", prefix: "/api" })
    .use(authPlugin(deps))
    .get(
      "/notifications",
      async ({ caller }) => {
        const [data, unread] = await Promise.all([listNotificationViews(deps.db, caller.accountId), unreadCount(deps.db, caller.accountId)]);
        return { unread, data };
      },
      {
        caller: true,
        detail: operation({
          id: "listNotifications",
          tag: "notifications",
          summary: "The account's notifications",
          answers: {
            200: {
              description: "The newest 50 and the unread count.",
              schema: notificationListSchema,
              example: { unread: 1, data: [{ id: "ntf_1", event: "key.created", keyId: "key_4f8Qm2xV9kTz1aB3", data: { name: "ci" }, createdAt: "2026-12-01T10:00:00.000Z", readAt: null }] },
            },
          },
        }),
      },
    )
    .post(
      "/notifications/read",
      async ({ caller }) => {
        await markAllRead(deps.db, caller.accountId, new Date(deps.clock.now()));
        return { unread: 0 };
      },
      { caller: true, detail: operation({ id: "markNotificationsRead", tag: "notifications", summary: "Mark every notification read", answers: { 200: { description: "None unread.", schema: unreadSchema, example: { unread: 0 } } } }) },
    )
    .get("/webhook", async ({ caller }) => ({ endpoint: await getWebhook(deps, caller.accountId), deliveries: await listDeliveries(deps, caller.accountId) }), {
      caller: true,
      detail: operation({
        id: "getWebhook",
        tag: "notifications",
        summary: "The webhook endpoint and its recent deliveries",
        answers: { 200: { description: "The endpoint (null if none) and the newest 50 deliveries.", schema: webhookStateSchema, example: { endpoint: { url: DELIVERY.url, allowPrivate: false, createdAt: "2026-12-01T09:00:00.000Z" }, deliveries: [DELIVERY] } } },
      }),
    })
    .put(
      "/webhook",
      async ({ caller, body, set }) => {
        set.headers["cache-control"] = "no-store";
        return setWebhook(deps, caller.accountId, body, caller.actor, await isOperator(deps, caller.accountId));
      },
      {
        caller: true,
        body: webhookSchema,
        detail: operation({
          id: "setWebhook",
          tag: "notifications",
          summary: "Set the webhook endpoint",
          description: "Deliveries are signed: `Keyport-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>`. The signing secret is in this answer only.",
          answers: { 200: { description: "The endpoint and its signing secret.", schema: webhookSetSchema, example: { url: DELIVERY.url, allowPrivate: false, secret: "whsec_Jd8Kq2Lw5Xz9Mv3Nb7Pc1Rt4Ys6Ua0Hf" } } },
          errors: ["invalid_request", "webhook_target_refused"],
          requestExample: { url: DELIVERY.url },
        }),
      },
    )
    .delete(
      "/webhook",
      async ({ caller }) => {
        await deleteWebhook(deps, caller.accountId, caller.actor);
        return { endpoint: null };
      },
      { caller: true, detail: operation({ id: "deleteWebhook", tag: "notifications", summary: "Remove the webhook endpoint", answers: { 200: { description: "No endpoint.", schema: webhookDeletedSchema, example: { endpoint: null } } } }) },
    )
    .post(
      "/webhook/deliveries/:id/resend",
      async ({ caller, params, set }) => {
        set.status = 202;
        return { id: await resendDelivery(deps, caller.accountId, params.id) };
      },
      {
        caller: true,
        params: deliveryIdParams,
        detail: operation({
          id: "resendDelivery",
          tag: "notifications",
          summary: "Send a delivery again",
          answers: { 202: { description: "A fresh delivery of the same notification, due now.", schema: resentSchema, example: { id: "dlv_8Rt2Wq5Zn1Kc7Lm4" } } },
          errors: ["not_found", "no_webhook"],
        }),
      },
    );
