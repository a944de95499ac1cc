import { index, integer, jsonb, pgTable, text, timestamp } from "drizzle-orm/pg-core";
import { accounts } from "../accounts/accounts.sql.ts";

/** `skipped`: a notice whose category the account turned off before it was sent. */
export const MAIL_STATUSES = ["queued", "sent", "failed", "skipped"] as const;

/**
 * The mail outbox: written in the same transaction as the change a message tells of (a reset
 * asked for, a key revoked), sent by a timer with retries (src/email/outbox.ts). A row holds
 * the template's name and its data, rendered when sent (src/email/messages.ts), so an
 * unsubscribe is honoured even for what is already queued. What must stay secret — the
 * single-use link of a reset or verification mail — is sealed with SECRET_KEY, and dropped
 * once the message is sent.
 */
export const emailOutbox = pgTable(
  "email_outbox",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id").references(() => accounts.id, { onDelete: "cascade" }),
    to: text("to").notNull(),
    /** The template: `password_reset`, `verify_email`, `notice:key.revoked` … */
    kind: text("kind").notNull(),
    /** The template's data: nothing secret (a key id, never a key). */
    data: jsonb("data").$type<Record<string, unknown>>().notNull().default({}),
    /** The template's secret data (`{url}` of a single-use link), sealed; null once sent or failed. */
    secretSealed: text("secret_sealed"),
    status: text("status", { enum: MAIL_STATUSES }).notNull().default("queued"),
    attempts: integer("attempts").notNull().default(0),
    nextAttemptAt: timestamp("next_attempt_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    lastError: text("last_error"),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    sentAt: timestamp("sent_at", { withTimezone: true, mode: "date" }),
    failedAt: timestamp("failed_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [index("email_outbox_due_idx").on(t.status, t.nextAttemptAt), index("email_outbox_account_idx").on(t.accountId, t.createdAt)],
);

export const EMAIL_TOKEN_PURPOSES = ["password_reset", "verify_email", "change_email"] as const;
export type EmailTokenPurpose = (typeof EMAIL_TOKEN_PURPOSES)[number];

/**
 * Single-use links sent by mail: 32 random bytes, stored as SHA-256 only. A newer token of
 * the same purpose for the account ends the older ones (`usedAt` set).
 */
export const emailTokens = pgTable(
  "email_tokens",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    purpose: text("purpose", { enum: EMAIL_TOKEN_PURPOSES }).notNull(),
    /** The address the link was sent to (for change_email: the new address). */
    email: text("email").notNull(),
    tokenHash: text("token_hash").notNull().unique(),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }).notNull(),
    usedAt: timestamp("used_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [index("email_tokens_account_idx").on(t.accountId, t.purpose)],
);
