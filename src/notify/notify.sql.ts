import { boolean, index, integer, jsonb, pgTable, text, timestamp } from "drizzle-orm/pg-core";
import { accounts } from "../accounts/accounts.sql.ts";

export const NOTIFICATION_EVENTS = [
  "key.created",
  "key.revoked",
  "key.rotation_scheduled",
  "key.rotation_started",
  "key.expiring",
  "key.rotation_completed",
  "key.leaked",
  "usage.quota_warning",
  "plan.usage_80",
  "plan.usage_100",
  "invoice.finalized",
] as const;
export type NotificationEvent = (typeof NOTIFICATION_EVENTS)[number];

/** The outbox and the in-app list in one: written in the same transaction as the change. */
export const notifications = pgTable(
  "notifications",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id").notNull(),
    event: text("event").notNull(),
    keyId: text("key_id"),
    data: jsonb("data").$type<Record<string, unknown>>().notNull().default({}),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    readAt: timestamp("read_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [index("notifications_account_idx").on(t.accountId, t.createdAt)],
);

export const webhookEndpoints = pgTable("webhook_endpoints", {
  accountId: text("account_id")
    .primaryKey()
    .references(() => accounts.id, { onDelete: "cascade" }),
  url: text("url").notNull(),
  /** The signing secret, sealed (it must be usable to sign, so it cannot be a hash). */
  secretSealed: text("secret_sealed").notNull(),
  /** Set only by an operator: deliver to private/loopback targets (SSRF guard off). */
  allowPrivate: boolean("allow_private").notNull().default(false),
  /** The events sent to it; null is every event, including ones added in later versions. */
  events: text("events").array().$type<NotificationEvent[]>(),
  /**
   * The secret a rotation replaced, sealed like the current one: deliveries are signed with
   * both until `previousSecretExpiresAt` (24 h), so receivers can switch without a gap.
   */
  previousSecretSealed: text("previous_secret_sealed"),
  previousSecretExpiresAt: timestamp("previous_secret_expires_at", { withTimezone: true, mode: "date" }),
  createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

export const DELIVERY_STATES = ["pending", "delivered", "gave_up"] as const;

export const webhookDeliveries = pgTable(
  "webhook_deliveries",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id").notNull(),
    /** Null for a test event (`webhook.test`), which is no notification. */
    notificationId: text("notification_id"),
    event: text("event").notNull(),
    url: text("url").notNull(),
    state: text("state", { enum: DELIVERY_STATES }).notNull(),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: timestamp("next_attempt_at", { withTimezone: true, mode: "date" }).notNull(),
    lastStatus: integer("last_status"),
    lastError: text("last_error"),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull(),
    deliveredAt: timestamp("delivered_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [index("webhook_deliveries_due_idx").on(t.state, t.nextAttemptAt), index("webhook_deliveries_account_idx").on(t.accountId, t.createdAt)],
);
