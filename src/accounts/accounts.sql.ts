import { sql } from "drizzle-orm";
import { bigint, boolean, index, pgTable, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";

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
  /**
   * Two-factor sign-in (src/accounts/twofactor.ts): the TOTP secret, sealed (src/crypto/seal.ts,
   * bound to the account id) since each sign-in must read it back; null while not enrolled.
   */
  totpSecretSealed: text("totp_secret_sealed"),
  /** When two-factor sign-in was turned on; null: off. */
  totpEnabledAt: timestamp("totp_enabled_at", { withTimezone: true, mode: "date" }),
  /**
   * The last RFC 6238 time step a code was accepted for: a code of that step or an earlier
   * one is refused, so a code seen over a shoulder or in a proxy cannot be used again.
   */
  totpLastStep: bigint("totp_last_step", { mode: "number" }),
  /** An enrolment under way: the new secret, sealed, until a code from it confirms it. */
  totpPendingSealed: text("totp_pending_sealed"),
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

/**
 * The ten single-use recovery codes of an account with two-factor sign-in: only SHA-256 of each
 * (80 random bits: far beyond guessing, so a plain hash suffices). `used_at` is set by the one
 * UPDATE that spends a code, so two uses sent at once cannot both pass.
 */
export const recoveryCodes = pgTable(
  "recovery_codes",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    codeHash: text("code_hash").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    usedAt: timestamp("used_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [uniqueIndex("recovery_codes_account_hash_idx").on(t.accountId, t.codeHash)],
);
