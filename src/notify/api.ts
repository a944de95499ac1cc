import { Elysia } from "elysia";
import { isOperator } from "../accounts/service.ts";
import type { Deps } from "../deps.ts";
import { operation } from "../plugins/openapi.ts";
import { authPlugin } from "../portal/plugin.ts";
import {
  deliveryIdParams,
  notificationListSchema,
  resentSchema,
  secretRotatedSchema,
  testEventSchema,
  unreadSchema,
  webhookDeletedSchema,
  webhookSchema,
  webhookSetSchema,
  webhookStateSchema,
} from "./model.ts";
import { listNotificationViews, markAllRead, unreadCount } from "./service.ts";
import { WEBHOOK_SENDS_PER_HOUR, deleteWebhook, listDeliveries, resendDelivery, rotateWebhookSecret, sendTestEvent, setWebhook, webhookEndpoint } from "./webhooks.ts";

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

const ENDPOINT = {
  url: DELIVERY.url,
  allowPrivate: false,
  events: ["key.created", "key.revoked", "key.leaked"],
  previousSecretExpiresAt: "2026-12-02T09:30:00.000Z",
  createdAt: "2026-12-01T09:00:00.000Z",
};

const SIGNATURE =
  "Deliveries are signed: `Keyport-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>`. For 24 h after a secret rotation they carry two `v1` entries, the new secret's first, then the previous one's: accept a delivery when any `v1` matches.";

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
    .get("/webhook", async ({ caller }) => ({ endpoint: await webhookEndpoint(deps, caller.accountId), deliveries: await listDeliveries(deps, caller.accountId) }), {
      caller: true,
      detail: operation({
        id: "getWebhook",
        tag: "notifications",
        summary: "The webhook endpoint and its recent deliveries",
        description: "The endpoint never shows a signing secret; `previousSecretExpiresAt` says until when the one a rotation replaced still signs.",
        answers: { 200: { description: "The endpoint (null if none) and the newest 50 deliveries.", schema: webhookStateSchema, example: { endpoint: ENDPOINT, deliveries: [DELIVERY] } } },
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
          description: `${SIGNATURE} Creating the endpoint makes its signing secret, in this answer only; changing it (URL, events, private targets) keeps its secrets. \`events\` omitted: every event. Private, loopback and link-local targets (localhost too) are refused unless an operator's account sends \`allowPrivate: true\`.`,
          answers: {
            200: {
              description: "The endpoint, and its signing secret when this request created it.",
              schema: webhookSetSchema,
              example: { url: DELIVERY.url, allowPrivate: false, events: ENDPOINT.events, secret: "whsec_Jd8Kq2Lw5Xz9Mv3Nb7Pc1Rt4Ys6Ua0Hf" },
            },
          },
          errors: ["invalid_request", "webhook_target_refused"],
          requestExample: { url: DELIVERY.url, events: ENDPOINT.events },
        }),
      },
    )
    .delete(
      "/webhook",
      async ({ caller }) => {
        await deleteWebhook(deps, caller.accountId, caller.actor);
        return { endpoint: null };
      },
      {
        caller: true,
        detail: operation({
          id: "deleteWebhook",
          tag: "notifications",
          summary: "Remove the webhook endpoint",
          description: "Its pending deliveries are given up. Removing none is no error.",
          answers: { 200: { description: "No endpoint.", schema: webhookDeletedSchema, example: { endpoint: null } } },
        }),
      },
    )
    .post(
      "/webhook/test",
      async ({ caller, set }) => {
        set.status = 202;
        return { id: await sendTestEvent(deps, caller.accountId) };
      },
      {
        caller: true,
        detail: operation({
          id: "sendWebhookTest",
          tag: "notifications",
          summary: "Send a test event",
          description: `At most ${WEBHOOK_SENDS_PER_HOUR} test events and resends an hour, together (429 \`too_many_attempts\` with Retry-After after that). A \`webhook.test\` delivery, due now, whatever events the endpoint chose: \`{"id":"dlv_…","type":"webhook.test","createdAt":"…","data":{}}\`, signed and retried like any event. ${SIGNATURE}`,
          answers: { 202: { description: "The test delivery, queued.", schema: testEventSchema, example: { id: "dlv_5Hc9Tq2Wm7Zr4Kx1" } } },
          errors: ["no_webhook", "too_many_attempts"],
        }),
      },
    )
    .post(
      "/webhook/rotate-secret",
      async ({ caller, set }) => {
        set.headers["cache-control"] = "no-store";
        return rotateWebhookSecret(deps, caller.accountId, caller.actor);
      },
      {
        caller: true,
        detail: operation({
          id: "rotateWebhookSecret",
          tag: "notifications",
          summary: "Rotate the webhook signing secret",
          description: `A new signing secret, in this answer only. The previous one keeps signing for 24 h (a second \`v1\` after the new one's), so receivers can switch without refusing a delivery; after that only the new one signs. A rotation within those 24 h drops the oldest secret. ${SIGNATURE}`,
          answers: {
            200: {
              description: "The new secret, and until when the previous one also signs.",
              schema: secretRotatedSchema,
              example: { secret: "whsec_Qm3Vx8Lp1Zt6Rb9Nc4Kd7Wy2Hs5Jf0Ga", previousSecretExpiresAt: ENDPOINT.previousSecretExpiresAt },
            },
          },
          errors: ["no_webhook"],
        }),
      },
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
          description: `At most ${WEBHOOK_SENDS_PER_HOUR} resends and test events an hour, together (429 \`too_many_attempts\` with Retry-After after that).`,
          answers: { 202: { description: "A fresh delivery of the same notification, due now.", schema: resentSchema, example: { id: "dlv_8Rt2Wq5Zn1Kc7Lm4" } } },
          errors: ["not_found", "no_webhook", "too_many_attempts"],
        }),
      },
    );
