import { z } from "zod";
import { idParams } from "../ids.ts";
import { NOTIFICATION_EVENTS } from "./notify.sql.ts";

/** The event a "Send test event" delivers; it is no notification, so no one chooses it. */
export const TEST_EVENT = "webhook.test";

export const webhookSchema = z.strictObject({
  url: z
    .string({ error: "is required" })
    .describe("https, resolving to public addresses. Plain http only for localhost, which is a loopback target: it needs `allowPrivate`, so an operator's account."),
  allowPrivate: z
    .boolean({ error: "must be true or false" })
    .optional()
    .describe("Operators only: allow private, loopback and link-local targets (the SSRF guard off). Ignored for other accounts, whose private targets are refused."),
  events: z
    .array(z.enum(NOTIFICATION_EVENTS, { error: `must be one of ${NOTIFICATION_EVENTS.join(", ")}` }), { error: "must be a list of event names" })
    .min(1, "choose at least one event")
    .transform((list) => NOTIFICATION_EVENTS.filter((e) => list.includes(e)))
    .optional()
    .describe("The events to send. Omitted, or every name: all events, including ones added later."),
});
export type WebhookInput = z.output<typeof webhookSchema>;

export const deliveryIdParams = idParams("The delivery's id (`dlv_…`).");

export const notificationSchema = z.object({
  id: z.string(),
  event: z.string().describe("`key.created`, `key.revoked`, `key.rotation_scheduled`, `key.rotation_started`, `key.expiring`, `key.rotation_completed`, `key.leaked`, `usage.quota_warning`, `plan.usage_80`, `plan.usage_100`, `invoice.finalized`."),
  keyId: z.string().nullable(),
  data: z.record(z.string(), z.unknown()),
  createdAt: z.string(),
  readAt: z.string().nullable(),
});
export type NotificationView = z.output<typeof notificationSchema>;
export const notificationListSchema = z.object({ unread: z.number().int(), data: z.array(notificationSchema) });
export const unreadSchema = z.object({ unread: z.number().int() });

const endpointSchema = z.object({
  url: z.string(),
  allowPrivate: z.boolean(),
  events: z.array(z.string()).describe("The events sent to the endpoint."),
  previousSecretExpiresAt: z.string().nullable().describe("Until when the secret replaced by the last rotation still signs deliveries (a second `v1`); null when none does."),
  createdAt: z.string(),
});
export type WebhookView = z.output<typeof endpointSchema>;

/** The webhook as Settings shows it: the endpoint (null if none), and whether the account may allow private targets (an operator's). */
export interface WebhookSettings {
  endpoint: WebhookView | null;
  mayAllowPrivate: boolean;
}
export const deliverySchema = z.object({
  id: z.string(),
  event: z.string(),
  url: z.string(),
  state: z.enum(["pending", "delivered", "gave_up"]),
  attempts: z.number().int(),
  lastStatus: z.number().int().nullable(),
  lastError: z.string().nullable(),
  nextAttemptAt: z.string(),
  createdAt: z.string(),
  deliveredAt: z.string().nullable(),
});
export type DeliveryView = z.output<typeof deliverySchema>;
export const webhookStateSchema = z.object({ endpoint: endpointSchema.nullable(), deliveries: z.array(deliverySchema) });
export const webhookSetSchema = z.object({
  url: z.string(),
  allowPrivate: z.boolean(),
  events: z.array(z.string()),
  secret: z.string().optional().describe("The signing secret, shown in this answer once: only when this request created the endpoint. Changing an endpoint keeps its secret (rotate it with `POST /api/webhook/rotate-secret`)."),
});
export const secretRotatedSchema = z.object({
  secret: z.string().describe("The new signing secret: shown in this answer once."),
  previousSecretExpiresAt: z.string().describe("Until then deliveries carry a second `v1` signature made with the previous secret."),
});
export const testEventSchema = z.object({ id: z.string().describe("The test delivery (`dlv_…`), due now.") });
export const webhookDeletedSchema = z.object({ endpoint: z.null() });
export const resentSchema = z.object({ id: z.string().describe("The new delivery.") });
