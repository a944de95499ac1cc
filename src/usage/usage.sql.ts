import { bigint, date, doublePrecision, pgTable, primaryKey, text, timestamp, integer } from "drizzle-orm/pg-core";

/** One row per key, UTC day and endpoint template; the flush adds to it. */
export const keyUsage = pgTable(
  "key_usage",
  {
    keyId: text("key_id").notNull(),
    accountId: text("account_id").notNull(),
    day: date("day", { mode: "string" }).notNull(),
    endpoint: text("endpoint").notNull(),
    environment: text("environment", { enum: ["live", "test"] }).notNull(),
    successes: bigint("successes", { mode: "number" }).notNull().default(0),
    errors: bigint("errors", { mode: "number" }).notNull().default(0),
    latencySumMs: doublePrecision("latency_sum_ms").notNull().default(0),
    /** Counts per latency bucket; bounds in src/usage/histogram.ts. */
    latencyBuckets: bigint("latency_buckets", { mode: "number" }).array().notNull(),
    /** The latest request counted in the row: a key's last use is the latest of its rows'. */
    lastUsedAt: timestamp("last_used_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [primaryKey({ columns: [t.keyId, t.day, t.endpoint] })],
);

/** Ledger of applied flushes: a retried flush with the same id applies once. */
export const usageFlushes = pgTable("usage_flushes", {
  flushId: text("flush_id").primaryKey(),
  rows: integer("rows").notNull(),
  appliedAt: timestamp("applied_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});
