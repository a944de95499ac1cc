import { index, pgTable, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";

export const LEAK_SOURCES = ["github", "gitlab", "gitlab-revocation", "portal", "api", "operator", "scan"] as const;
export type LeakSource = (typeof LEAK_SOURCES)[number];

/**
 * What became of a report: `pending` until processed (src/leaks/service.ts, off the intake's
 * request); then `acted` (the key revoked or rotated by the account's policy), `notified`
 * (policy notify, or a test key), `already_revoked`, `unknown` (no such key: recorded only),
 * or `duplicate` (the key was already handled for a leak: acted once).
 */
export const LEAK_OUTCOMES = ["pending", "acted", "notified", "already_revoked", "unknown", "duplicate"] as const;
export type LeakOutcome = (typeof LEAK_OUTCOMES)[number];

export const LEAK_POLICIES = ["notify", "rotate", "revoke"] as const;
export type LeakPolicy = (typeof LEAK_POLICIES)[number];

/**
 * Every report of a leaked key, from any source. Only the key's SHA-256 is kept (the same
 * hash api_keys has), its masked form for people, and where it was seen. A report repeated
 * by the same source for the same place is one row (`report_key`).
 */
export const leakReports = pgTable(
  "leak_reports",
  {
    id: text("id").primaryKey(),
    keyHash: text("key_hash").notNull(),
    /** `kp_live_AbCd…wxyz`, or the report's type for a token that is not a key of ours. */
    display: text("display").notNull(),
    source: text("source", { enum: LEAK_SOURCES }).notNull(),
    /** Where it was seen (a commit's or a file's URL), as reported. */
    url: text("url"),
    /** Who reported it: `account:acct_…`, `github`, `cli` … */
    reporter: text("reporter").notNull(),
    /** hash + source + url: the same report twice is one row. */
    reportKey: text("report_key").notNull(),
    keyId: text("key_id"),
    accountId: text("account_id"),
    outcome: text("outcome", { enum: LEAK_OUTCOMES }).notNull().default("pending"),
    /** What was done: `revoked`, `rotated`, `notified`, or null. */
    action: text("action"),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
    processedAt: timestamp("processed_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [uniqueIndex("leak_reports_report_key_idx").on(t.reportKey), index("leak_reports_pending_idx").on(t.outcome, t.createdAt), index("leak_reports_account_idx").on(t.accountId, t.createdAt)],
);

/** Operator-wide settings, one row each (the leak policy floor). */
export const instanceSettings = pgTable("instance_settings", {
  key: text("key").primaryKey(),
  value: text("value").notNull(),
  updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});
