import { sql } from "drizzle-orm";
import { boolean, index, pgTable, text, timestamp } from "drizzle-orm/pg-core";

export const accounts = pgTable("accounts", {
  id: text("id").primaryKey(),
  /** Stored lowercased and trimmed; unique. */
  email: text("email").notNull().unique(),
  /** argon2id PHC string from Bun.password. */
  passwordHash: text("password_hash").notNull(),
  isOperator: boolean("is_operator").notNull().default(false),
  /** The plan in force (src/billing): `free` for a new account. */
  planId: text("plan_id").notNull().default("free"),
  /** Suspended by an operator: every key answers 403 account_suspended. */
  suspendedAt: timestamp("suspended_at", { withTimezone: true, mode: "date" }),
  suspendedReason: text("suspended_reason"),
  /** When the address was confirmed by a link sent to it; null: not yet (src/email/). */
  emailVerifiedAt: timestamp("email_verified_at", { withTimezone: true, mode: "date" }),
  /** What a reported leak of one of its live keys does: notify, rotate (the default) or revoke (src/leaks/). */
  leakPolicy: text("leak_policy", { enum: ["notify", "rotate", "revoke"] }).notNull().default("rotate"),
  /** The mail categories the account turned off (security notices cannot be). */
  emailOptOut: text("email_opt_out").array().notNull().default(sql`'{}'::text[]`),
  createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

export const sessions = pgTable(
  "sessions",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    /** SHA-256 (hex) of the token's secret half; the token itself is never stored. */
    secretHash: text("secret_hash").notNull(),
    csrfToken: text("csrf_token").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    lastSeenAt: timestamp("last_seen_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }).notNull(),
    ip: text("ip"),
    userAgent: text("user_agent"),
  },
  (t) => [index("sessions_account_idx").on(t.accountId)],
);
