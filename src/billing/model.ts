import { z } from "zod";
import { idParams } from "../ids.ts";
import type { InvoiceLine } from "./billing.sql.ts";
import type { Plan } from "./plans.ts";

export type { InvoiceLine } from "./billing.sql.ts";
export type { Plan } from "./plans.ts";

/** A calendar month, UTC, as `YYYY-MM` (the invoices' month, the CLI's `--month`). */
export const monthSchema = z
  .string({ error: "must be a month as YYYY-MM, e.g. 2026-11" })
  .trim()
  .regex(/^2\d{3}-(0[1-9]|1[0-2])$/, "must be a month as YYYY-MM, e.g. 2026-11");

/** The plan form and API body: the plan to change to. */
export const planChangeSchema = z.strictObject({
  plan: z.string({ error: "is required" }).trim().min(1, "is required").max(40, "is not a plan").describe("The id of the plan to change to (`free`, `starter`, `enterprise` by default)."),
});
export type PlanChangeInput = z.output<typeof planChangeSchema>;

export const invoiceIdParams = idParams("The invoice's id (`inv_…`).");

export const INVOICE_STATUSES = ["open", "paid", "void"] as const;
export type InvoiceStatus = (typeof INVOICE_STATUSES)[number];

/** An operator's change of an invoice's status: open → paid, open → void, paid → void. */
export const invoiceStatusSchema = z.strictObject({
  status: z.enum(["paid", "void"], { error: 'must be "paid" or "void"' }),
});

/**
 * What a plan change does: an upgrade (a dearer plan) applies at once, a downgrade at the
 * start of next month; choosing the plan in force is `same`, or `cancel` when a downgrade is
 * scheduled (choosing the current plan withdraws it).
 */
export type PlanChangeKind = "upgrade" | "downgrade" | "same" | "cancel";

/** The rule of plan changes, as the Billing page states it. */
export const PLAN_CHANGE_RULE =
  "An upgrade applies at once: this month's base fee and included calls are split by the fraction of the month (in seconds) spent on each plan, the calls already made still count, and calls over the included ones are priced at the new plan's rate. A downgrade is scheduled for the start of next month (UTC).";

/** An invoice as the pages, the API and the CSV show it. */
export interface InvoiceView {
  id: string;
  accountId: string;
  /** `KP-YYYYMM-NNNNNN`. */
  number: string;
  /** `YYYY-MM`. */
  month: string;
  status: InvoiceStatus;
  currency: string;
  /** Live-key successful calls in the month (the usage rows' sum). */
  calls: number;
  includedCalls: number;
  totalCents: number;
  lines: InvoiceLine[];
  finalizedAt: string;
  paidAt: string | null;
  voidedAt: string | null;
}

/** An invoice with its account's email (the operator's list, the CSV). */
export interface InvoiceWithEmail extends InvoiceView {
  email: string;
}

export interface CurrentPlan {
  plan: Plan;
  /** A downgrade waiting for the start of next month. */
  scheduled: { toPlan: Plan; effectiveAt: string } | null;
}

export interface PlanChangePreview {
  from: Plan;
  to: Plan;
  kind: PlanChangeKind;
  /** When the change takes effect: now (upgrade, same, cancel) or the next month's start (downgrade). */
  effectiveAt: string;
  /** The one-sentence rule for this change, to show beside the confirm button. */
  rule: string;
  /** This month if the change is made: base fee(s), included calls, and the total at the month's pace so far. */
  thisMonth: { baseCents: number; includedCalls: number; projectedCents: number };
  /** This month's projected total if nothing changes, to compare with `thisMonth.projectedCents`. */
  thisMonthWithoutChange: { baseCents: number; includedCalls: number; projectedCents: number };
  /** Calls at the month's pace so far (used ÷ elapsed fraction). */
  projectedCalls: number;
  /** Next month's base fee on the plan in force then. */
  nextMonthCents: number;
  /** Next month's total on that plan at this month's projected calls. */
  nextMonthProjectedCents: number;
}

export interface MonthMeter {
  /** `YYYY-MM`. */
  month: string;
  plan: Plan;
  /** Live-key successful calls in the month's usage rows so far. */
  used: number;
  /** The month's included calls (split by time when the plan changed during the month). */
  included: number;
  /** The plan refuses calls past the included ones (no overage price). */
  hardCap: boolean;
  /** used ÷ the elapsed fraction of the month (at least a day elapsed), rounded. */
  projectedCalls: number;
  /** The month's invoice total at projectedCalls. */
  projectedCents: number;
  /** The month's invoice total if no more calls were made (base fees for the whole month plus overage so far). */
  costSoFarCents: number;
  /** The month's base fee(s). */
  baseCents: number;
  /** A downgrade waiting for the start of next month. */
  scheduled: { toPlan: Plan; effectiveAt: string } | null;
  /** When the month ends (the next month's start), ISO. */
  endsAt: string;
}
