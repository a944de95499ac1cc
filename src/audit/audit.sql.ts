import { index, jsonb, pgTable, text, timestamp } from "drizzle-orm/pg-core";

export const auditEvents = pgTable(
  "audit_events",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id").notNull(),
    /** Who did it: `account:acct_…`, `key:key_…`, `cli` or `system`. */
    actor: text("actor").notNull(),
    action: text("action").notNull(),
    keyId: text("key_id"),
    ip: text("ip"),
    userAgent: text("user_agent"),
    /** What changed, never a secret. */
    changes: jsonb("changes").$type<Record<string, unknown>>().notNull().default({}),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [index("audit_account_created_idx").on(t.accountId, t.createdAt, t.id), index("audit_key_idx").on(t.keyId)],
);
