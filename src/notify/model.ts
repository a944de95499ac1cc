import { z } from "zod";
import { idParams } from "../ids.ts";

export const webhookSchema = z.strictObject({
  url: z.string({ error: "is required" }).describe("https (plain http only for localhost); must resolve to public addresses."),
  allowPrivate: z.boolean({ error: "must be true or false" }).optional().describe("Operators only: allow private, loopback and link-local targets."),
});
export type WebhookInput = z.output<typeof webhookSchema>;

export const deliveryIdParams = idParams("The delivery's id (`dlv_…`).");

export const notificationSchema = z.object({
  id: z.string(),
  event: z.string().describe("`key.created`, `key.revoked`, `key.rotation_scheduled`, `key.rotation_started`, `key.expiring`, `key.rotation_completed`, `key.leaked`, `usage.quota_warning`."),
  keyId: z.string().nullable(),
  data: z.record(z.string(), z.unknown()),
  createdAt: z.string(),
  readAt: z.string().nullable(),
});
export type NotificationView = z.output<typeof notificationSchema>;
export const notificationListSchema = z.object({ unread: z.number().int(), data: z.array(notificationSchema) });
export const unreadSchema = z.object({ unread: z.number().int() });

const endpointSchema = z.object({ url: z.string(), allowPrivate: z.boolean(), createdAt: z.string() });
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
export const webhookSetSchema = z.object({ url: z.string(), allowPrivate: z.boolean(), secret: z.string().describe("The signing secret: shown in this answer once.") });
export const webhookDeletedSchema = z.object({ endpoint: z.null() });
export const resentSchema = z.object({ id: z.string().describe("The new delivery.") });
