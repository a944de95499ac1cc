import { index, integer, jsonb, pgTable, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";
import { accounts } from "../accounts/accounts.sql.ts";

/**
 * The plans of the plans file (src/billing/plans.ts), seeded into the database at every
 * start: the file is the source, this table is what queries join and what old invoices
 * were priced from (a plan removed from the file stays, marked retired).
 */
export const plans = pgTable("plans", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  description: text("description").notNull(),
  /** Base fee per calendar month, in US cents. */
  priceCents: integer("price_cents").notNull(),
  /** Calls a month the base fee includes. */
  includedCalls: integer("included_calls").notNull(),
  /** Cents per started 1,000 calls over the included ones; null: a hard cap (429 over it). */
  overageCentsPer1000: integer("overage_cents_per_1000"),
  /** Requests per second across all the account's keys. */
  requestsPerSecond: integer("requests_per_second").notNull(),
  /** Order on the pricing page. */
  position: integer("position").notNull(),
  /** Set when the plan is no longer in the plans file (accounts on it keep it). */
  retiredAt: timestamp("retired_at", { withTimezone: true, mode: "date" }),
  updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

/**
 * Every plan an account has been on, as changes taking effect at an instant: an upgrade at
 * once, a downgrade at the start of the next month (written when asked for). An invoice
 * splits the month by these. No row: the account has been on `free` since it was created.
 */
export const planChanges = pgTable(
  "plan_changes",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    fromPlan: text("from_plan").notNull(),
    toPlan: text("to_plan").notNull(),
    effectiveAt: timestamp("effective_at", { withTimezone: true, mode: "date" }).notNull(),
    requestedAt: timestamp("requested_at", { withTimezone: true, mode: "date" }).notNull(),
    /** Who asked: `account:<id>` or an operator's `operator:<id>`. */
    actor: text("actor").notNull(),
    /** A scheduled change withdrawn before it took effect. */
    cancelledAt: timestamp("cancelled_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [index("plan_changes_account_idx").on(t.accountId, t.effectiveAt)],
);

export interface InvoiceLine {
  kind: "base" | "overage";
  planId: string;
  description: string;
  /** Calls (overage) or seconds on the plan (base). */
  quantity: number;
  amountCents: number;
}

/** One invoice per account and calendar month (UTC). */
export const invoices = pgTable(
  "invoices",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id")
      .notNull()
      .references(() => accounts.id, { onDelete: "cascade" }),
    /** `YYYY-MM`. */
    month: text("month").notNull(),
    /** `KP-YYYYMM-NNNNNN`, given at finalization, without gaps. */
    number: text("number").notNull(),
    status: text("status", { enum: ["open", "paid", "void"] }).notNull().default("open"),
    currency: text("currency").notNull().default("USD"),
    /** Live-key successful calls of the month: the usage rows' sum. */
    calls: integer("calls").notNull(),
    includedCalls: integer("included_calls").notNull(),
    totalCents: integer("total_cents").notNull(),
    lines: jsonb("lines").$type<InvoiceLine[]>().notNull(),
    finalizedAt: timestamp("finalized_at", { withTimezone: true, mode: "date" }).notNull(),
    paidAt: timestamp("paid_at", { withTimezone: true, mode: "date" }),
    voidedAt: timestamp("voided_at", { withTimezone: true, mode: "date" }),
  },
  (t) => [uniqueIndex("invoices_account_month_idx").on(t.accountId, t.month), uniqueIndex("invoices_number_idx").on(t.number), index("invoices_month_idx").on(t.month)],
);

/** The last invoice number given for a month: the next is one more, in the finalizing transaction. */
export const invoiceNumbers = pgTable("invoice_numbers", {
  month: text("month").primaryKey(),
  last: integer("last").notNull(),
});
