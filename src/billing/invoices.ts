import type { InvoiceLine } from "./billing.sql.ts";
import type { Plan } from "./plans.ts";

/**
 * Invoice arithmetic, with no database: calendar months (UTC), the plans an account was on
 * during one, and its price. The service feeds it the account's plan changes and the sum of
 * its usage rows; the tests check the worked figures against it directly.
 */

/** The first instant of `month` (`YYYY-MM`), epoch ms. */
export function monthStart(month: string): number {
  const [y, m] = month.split("-").map(Number);
  return Date.UTC(y!, m! - 1, 1);
}

/** The first instant after `month`: the next month's start. */
export function monthEnd(month: string): number {
  const [y, m] = month.split("-").map(Number);
  return Date.UTC(y!, m!, 1);
}

/** The month (`YYYY-MM`, UTC) holding the instant `ms`. */
export function monthOf(ms: number): string {
  return new Date(ms).toISOString().slice(0, 7);
}

export const previousMonth = (month: string): string => monthOf(monthStart(month) - 1);
export const nextMonth = (month: string): string => monthOf(monthEnd(month));

/** Seconds in `month`: 2,592,000 for a 30-day month. */
export function secondsInMonth(month: string): number {
  return (monthEnd(month) - monthStart(month)) / 1000;
}

/** The first and last day (`YYYY-MM-DD`) of `month`, for the usage rows' `day`. */
export function monthDays(month: string): { first: string; last: string } {
  return { first: `${month}-01`, last: new Date(monthEnd(month) - 86_400_000).toISOString().slice(0, 10) };
}

/** A stretch of a month on one plan: [from, to) in epoch ms. */
export interface Segment {
  planId: string;
  from: number;
  to: number;
}

/**
 * Whole seconds a segment covers. Both ends are floored to the second, so the segments of a
 * month add up to its seconds exactly (the ends telescope) whatever milliseconds a change
 * was made at.
 */
export function segmentSeconds(s: Pick<Segment, "from" | "to">): number {
  return Math.floor(s.to / 1000) - Math.floor(s.from / 1000);
}

/** A plan change taking effect at an instant (cancelled ones left out). */
export interface ChangePoint {
  toPlan: string;
  effectiveAt: number;
}

/** Where an account starts when no change says otherwise. */
export const DEFAULT_PLAN = "free";

/** The plan in force at `at`, given the account's changes in order of taking effect. */
export function planIn(changes: readonly ChangePoint[], at: number): string {
  let plan = DEFAULT_PLAN;
  for (const c of changes) {
    if (c.effectiveAt > at) break;
    plan = c.toPlan;
  }
  return plan;
}

/**
 * The plans an account was on during `month`, each with its stretch: from the month's
 * start, or the account's creation when it was made during the month (the time before it
 * is not billed), to the month's end. `changes` in order of taking effect. Empty when the
 * account did not exist before the month ended.
 */
export function monthSegments(month: string, createdAt: number, changes: readonly ChangePoint[]): Segment[] {
  const end = monthEnd(month);
  const start = Math.max(monthStart(month), createdAt);
  if (start >= end) return [];
  const segments: Segment[] = [];
  let plan = planIn(changes, start);
  let from = start;
  for (const c of changes) {
    if (c.effectiveAt <= start || c.effectiveAt >= end) continue;
    if (c.toPlan !== plan) {
      segments.push({ planId: plan, from, to: c.effectiveAt });
      plan = c.toPlan;
      from = c.effectiveAt;
    }
  }
  segments.push({ planId: plan, from, to: end });
  // A stretch shorter than a second (two changes in the same second) bills nothing: left out.
  return segments.filter((s) => segmentSeconds(s) > 0);
}

export interface PricedMonth {
  month: string;
  lines: InvoiceLine[];
  calls: number;
  /** round(Σ includedCalls × seconds ÷ seconds in the month). */
  includedCalls: number;
  /** max(0, calls − includedCalls). */
  overCalls: number;
  baseCents: number;
  overageCents: number;
  totalCents: number;
}

const dollars = (cents: number) => `$${(cents / 100).toFixed(2)}`;
const count = (n: number) => n.toLocaleString("en-US");
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const FULL_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const instant = (ms: number) => {
  const d = new Date(ms);
  return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.toISOString().slice(11, 16)}`;
};

/** `November 2026`. */
export function monthName(month: string): string {
  const [y, m] = month.split("-").map(Number);
  return `${FULL_MONTHS[m! - 1]} ${y}`;
}

function planOf(plans: ReadonlyMap<string, Plan>, id: string): Plan {
  const plan = plans.get(id);
  if (!plan) throw new Error(`plan "${id}" is neither in the plans file nor in the plans table`);
  return plan;
}

/**
 * A month's invoice lines and total, in integer cents.
 * - A base line per segment: round(priceCents × seconds ÷ seconds in the month); a whole
 *   month on one plan is exactly its price.
 * - Included calls: round(Σ includedCalls × seconds ÷ seconds in the month), rounded once.
 * - Overage, priced by the plan in force at the month's end (the last segment): ceil(over ÷
 *   1,000) × its cents per 1,000. A hard-cap plan (no overage price) has no overage line.
 * Products of cents or calls and seconds stay below 2^53 (10^9 × 2.7·10^6), so the
 * arithmetic is exact before the one rounding.
 *
 * @example
 * priceMonth("2026-11", [{ planId: "starter", from: monthStart("2026-11"), to: monthEnd("2026-11") }], 12_345, catalog.byId).totalCents // 5800
 */
export function priceMonth(month: string, segments: readonly Segment[], calls: number, plans: ReadonlyMap<string, Plan>): PricedMonth {
  const monthSeconds = secondsInMonth(month);
  const lines: InvoiceLine[] = [];
  let includedWeighted = 0;
  for (const s of segments) {
    const plan = planOf(plans, s.planId);
    const seconds = segmentSeconds(s);
    includedWeighted += plan.includedCalls * seconds;
    const whole = seconds === monthSeconds;
    const days = Math.round((seconds / 86_400) * 100) / 100;
    lines.push({
      kind: "base",
      planId: plan.id,
      description: whole
        ? `${plan.name} plan, ${monthName(month)}`
        : `${plan.name} plan, ${instant(s.from)} – ${instant(s.to)} UTC (${days} of ${monthSeconds / 86_400} days)`,
      quantity: seconds,
      amountCents: whole ? plan.priceCents : Math.round((plan.priceCents * seconds) / monthSeconds),
    });
  }
  const includedCalls = Math.round(includedWeighted / monthSeconds);
  const overCalls = Math.max(0, calls - includedCalls);
  const last = segments.length ? planOf(plans, segments[segments.length - 1]!.planId) : undefined;
  let overageCents = 0;
  if (last && last.overageCentsPer1000 !== null && overCalls > 0) {
    const thousands = Math.ceil(overCalls / 1000);
    overageCents = thousands * last.overageCentsPer1000;
    lines.push({
      kind: "overage",
      planId: last.id,
      description: `Overage on ${last.name}: ${count(overCalls)} calls over ${count(includedCalls)} included, ${count(thousands)} × 1,000 started at ${dollars(last.overageCentsPer1000)} per 1,000`,
      quantity: overCalls,
      amountCents: overageCents,
    });
  }
  const baseCents = lines.filter((l) => l.kind === "base").reduce((n, l) => n + l.amountCents, 0);
  return { month, lines, calls, includedCalls, overCalls, baseCents, overageCents, totalCents: baseCents + overageCents };
}
