import { sql } from "drizzle-orm";
import { index, integer, pgTable, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";
import { accounts } from "../accounts/accounts.sql.ts";

export const apiKeys = pgTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    environment: text("environment", { enum: ["live", "test"] }).notNull(),
    /** SHA-256 (hex) of the whole key string. */
    hash: text("hash").notNull(),
    /** First 4 and last 4 characters of the body, for `kp_live_AbCd…wxyz`. */
    start: text("start").notNull(),
    end: text("end").notNull(),
    scopes: text("scopes").array().notNull().default([]),
    rateLimit: integer("rate_limit").notNull().default(60),
    ipAllowlist: text("ip_allowlist").array().notNull().default([]),
    monthlyQuota: integer("monthly_quota"),
    expiresAt: timestamp("expires_at", { withTimezone: true, mode: "date" }),
    /** Set by a roll: the key keeps answering until then, and counts as revoked after. */
    graceEndsAt: timestamp("grace_ends_at", { withTimezone: true, mode: "date" }),
    replacedBy: text("replaced_by"),
    /**
     * Last use as written before usage rows carried it (migration 0004); since then read as
     * a floor under the usage rows' latest (keys/service.ts withLastUsed), no longer written.
     */
    lastUsedAt: timestamp("last_used_at", { withTimezone: true, mode: "date" }),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    revokedAt: timestamp("revoked_at", { withTimezone: true, mode: "date" }),
    /** Reported found in public (src/leaks/): when, where, and by whom; the key's badge in the portal. */
    leakedAt: timestamp("leaked_at", { withTimezone: true, mode: "date" }),
    leakedUrl: text("leaked_url"),
    leakedBy: text("leaked_by"),
    /**
     * Set on a sandbox key: the API reference's try-it key of one portal session (its id).
     * Revoked when that session logs out; never counted against the key limit.
     */
    sandboxSessionId: text("sandbox_session_id"),
  },
  (t) => [
    uniqueIndex("api_keys_hash_idx").on(t.hash),
    index("api_keys_account_idx").on(t.accountId, t.createdAt),
    index("api_keys_sandbox_session_idx").on(t.sandboxSessionId).where(sql`${t.sandboxSessionId} is not null`),
  ],
);
