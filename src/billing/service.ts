import { and, asc, desc, eq, gte, isNull, lt, lte, sql } from "drizzle-orm";
import type { Deps } from "../deps.ts";
import type { Db, Tx } from "../db/client.ts";
import { accounts } from "../accounts/accounts.sql.ts";
import { recordAudit, systemActor, type Actor } from "../audit/service.ts";
import { DomainError, invalidInput, notFound } from "../errors.ts";
import { newId } from "../ids.ts";
import { apiKeys } from "../keys/keys.sql.ts";
import { emit } from "../notify/service.ts";
import { keyUsage } from "../usage/usage.sql.ts";
import { invoiceNumbers, invoices, planChanges, plans } from "./billing.sql.ts";
import {
  monthDays,
  monthEnd,
  monthName,
  monthOf,
  monthSegments,
  monthStart,
  planIn,
  previousMonth,
  priceMonth,
  type ChangePoint,
  type PricedMonth,
  type Segment,
} from "./invoices.ts";
import {
  monthSchema,
  PLAN_CHANGE_RULE,
  type CurrentPlan,
  type InvoiceStatus,
  type InvoiceView,
  type InvoiceWithEmail,
  type MonthMeter,
  type PlanChangeKind,
  type PlanChangePreview,
} from "./model.ts";
import type { Plan } from "./plans.ts";

type BillingDeps = Pick<Deps, "db" | "clock" | "catalog" | "keyCache">;
type Reader = Pick<Db, "select">;

const DAY_MS = 86_400_000;

// ---------------------------------------------------------------------------------------
// Plans and plan changes

/**
 * Every plan an invoice may name: the plans table (which keeps plans retired from the file,
 * at their last figures) overlaid by the catalog (the file in force).
 */
async function knownPlans(deps: Pick<Deps, "db" | "catalog">, db: Reader = deps.db): Promise<Map<string, Plan>> {
  const rows = await db.select().from(plans);
  const all = new Map<string, Plan>(
    rows.map((r) => [r.id, { id: r.id, name: r.name, description: r.description, priceCents: r.priceCents, includedCalls: r.includedCalls, overageCentsPer1000: r.overageCentsPer1000, requestsPerSecond: r.requestsPerSecond }]),
  );
  for (const p of deps.catalog.plans) all.set(p.id, p);
  return all;
}

function planFrom(known: ReadonlyMap<string, Plan>, id: string): Plan {
  const plan = known.get(id);
  if (!plan) throw new Error(`plan "${id}" is neither in the plans file nor in the plans table`);
  return plan;
}

/** The account's plan changes that were not withdrawn, in the order they take effect. */
async function changesOf(db: Reader, accountId: string): Promise<(ChangePoint & { id: string; fromPlan: string })[]> {
  const rows = await db
    .select({ id: planChanges.id, fromPlan: planChanges.fromPlan, toPlan: planChanges.toPlan, effectiveAt: planChanges.effectiveAt })
    .from(planChanges)
    .where(and(eq(planChanges.accountId, accountId), isNull(planChanges.cancelledAt)))
    .orderBy(asc(planChanges.effectiveAt), asc(planChanges.requestedAt));
  return rows.map((r) => ({ id: r.id, fromPlan: r.fromPlan, toPlan: r.toPlan, effectiveAt: r.effectiveAt.getTime() }));
}

async function accountRow(db: Reader, accountId: string): Promise<{ id: string; createdAt: Date; planId: string }> {
  const [row] = await db.select({ id: accounts.id, createdAt: accounts.createdAt, planId: accounts.planId }).from(accounts).where(eq(accounts.id, accountId));
  if (!row) throw notFound("account");
  return row;
}

/** The account's row locked for the transaction: plan changes of one account are serialised. */
async function lockAccount(tx: Tx, accountId: string): Promise<{ id: string; createdAt: Date; planId: string }> {
  const [row] = await tx.select({ id: accounts.id, createdAt: accounts.createdAt, planId: accounts.planId }).from(accounts).where(eq(accounts.id, accountId)).for("update");
  if (!row) throw notFound("account");
  return row;
}

/**
 * The plan an account is on at `at` (default now), read from its plan changes: right even
 * before the sweep has copied a due downgrade into accounts.plan_id.
 */
export async function planAt(deps: Pick<Deps, "db" | "clock" | "catalog">, accountId: string, at = deps.clock.now()): Promise<Plan> {
  const [changes, known] = await Promise.all([changesOf(deps.db, accountId), knownPlans(deps)]);
  return planFrom(known, planIn(changes, at));
}

/** The first change taking effect after `now`: a scheduled downgrade (at most one is pending). */
const pendingOf = <C extends ChangePoint>(changes: C[], now: number): C | undefined => changes.find((c) => c.effectiveAt > now);

/** Dearer first; between plans of one price, more calls, then more requests per second. */
function compare(a: Plan, b: Plan): number {
  return a.priceCents - b.priceCents || a.includedCalls - b.includedCalls || a.requestsPerSecond - b.requestsPerSecond;
}

/**
 * What choosing `to` does for an account on `current` (with `pending` scheduled): the plan in
 * force is `same`, or `cancel` when a downgrade is scheduled; a plan ranked below is a
 * downgrade; any other plan (dearer, or level with it) applies at once as an upgrade.
 */
function kindOf(current: Plan, to: Plan, pending: ChangePoint | undefined): PlanChangeKind {
  if (to.id === current.id) return pending ? "cancel" : "same";
  return compare(to, current) < 0 ? "downgrade" : "upgrade";
}

function choosablePlan(deps: Pick<Deps, "catalog">, toPlanId: string): Plan {
  const to = deps.catalog.byId.get(toPlanId);
  if (!to) {
    throw new DomainError("invalid_request", "There is no such plan.", [
      { field: "plan", message: `is not a plan; choose ${deps.catalog.plans.map((p) => p.id).join(", ")}` },
    ]);
  }
  return to;
}

/** The plan in force now and a scheduled downgrade, if any. */
export async function currentPlan(deps: Pick<Deps, "db" | "clock" | "catalog">, accountId: string): Promise<CurrentPlan> {
  const now = deps.clock.now();
  await accountRow(deps.db, accountId);
  const [changes, known] = await Promise.all([changesOf(deps.db, accountId), knownPlans(deps)]);
  const pending = pendingOf(changes, now);
  return {
    plan: planFrom(known, planIn(changes, now)),
    scheduled: pending ? { toPlan: planFrom(known, pending.toPlan), effectiveAt: new Date(pending.effectiveAt).toISOString() } : null,
  };
}

/** Live-key successful calls of the account in `month`: the sum of its usage rows, to the unit. */
export async function monthCalls(db: Reader, accountId: string, month: string): Promise<number> {
  const { first, last } = monthDays(month);
  const [row] = await db
    .select({ calls: sql<string>`coalesce(sum(${keyUsage.successes}), 0)` })
    .from(keyUsage)
    .where(and(eq(keyUsage.accountId, accountId), eq(keyUsage.environment, "live"), gte(keyUsage.day, first), lte(keyUsage.day, last)));
  return Number(row?.calls ?? 0);
}

/** The stretch of the month an account is billed for (from its creation if made during it), and how much of it has passed. */
function pace(month: string, createdAt: number, now: number, used: number): number {
  const start = Math.max(monthStart(month), createdAt);
  const span = monthEnd(month) - start;
  // At least a day elapsed: ten calls in the month's first minute are no pace of 400,000.
  const elapsed = Math.min(span, Math.max(now - start, DAY_MS));
  return Math.round((used * span) / elapsed);
}

interface MonthState {
  now: number;
  month: string;
  createdAt: number;
  changes: ChangePoint[];
  known: Map<string, Plan>;
  used: number;
  projectedCalls: number;
}

async function monthState(deps: Pick<Deps, "db" | "clock" | "catalog">, accountId: string, now: number): Promise<MonthState> {
  const month = monthOf(now);
  const account = await accountRow(deps.db, accountId);
  const [changes, known, used] = await Promise.all([changesOf(deps.db, accountId), knownPlans(deps), monthCalls(deps.db, accountId, month)]);
  const createdAt = account.createdAt.getTime();
  return { now, month, createdAt, changes, known, used, projectedCalls: pace(month, createdAt, now, used) };
}

const summary = (p: PricedMonth, projected: PricedMonth) => ({ baseCents: p.baseCents, includedCalls: p.includedCalls, projectedCents: projected.totalCents });

/**
 * What changing to `toPlanId` would do, before it is done: its kind, when it takes effect,
 * the rule in one sentence, and this month's and next month's figures with and without it
 * (at the month's pace so far). Unknown plan: invalid_request on `plan`.
 */
export async function previewPlanChange(deps: Pick<Deps, "db" | "clock" | "catalog">, accountId: string, toPlanId: string): Promise<PlanChangePreview> {
  const to = choosablePlan(deps, toPlanId);
  const s = await monthState(deps, accountId, deps.clock.now());
  const from = planFrom(s.known, planIn(s.changes, s.now));
  const pending = pendingOf(s.changes, s.now);
  const kind = kindOf(from, to, pending);
  const effectiveAt = kind === "downgrade" ? monthEnd(s.month) : s.now;
  const past = s.changes.filter((c) => c.effectiveAt <= s.now);
  const withChange = kind === "upgrade" ? [...past, { toPlan: to.id, effectiveAt: s.now }] : past;
  const price = (changes: ChangePoint[], calls: number) => priceMonth(s.month, monthSegments(s.month, s.createdAt, changes), calls, s.known);
  const nextPlan = kind === "upgrade" || kind === "downgrade" ? to : from;
  const next = monthOf(monthEnd(s.month));
  const nextWhole: Segment[] = [{ planId: nextPlan.id, from: monthStart(next), to: monthEnd(next) }];
  return {
    from,
    to,
    kind,
    effectiveAt: new Date(effectiveAt).toISOString(),
    rule: ruleFor(kind, from, to, pending ? planFrom(s.known, pending.toPlan) : undefined, monthEnd(s.month)),
    thisMonth: summary(price(withChange, s.used), price(withChange, s.projectedCalls)),
    thisMonthWithoutChange: summary(price(past, s.used), price(past, s.projectedCalls)),
    projectedCalls: s.projectedCalls,
    nextMonthCents: nextPlan.priceCents,
    nextMonthProjectedCents: priceMonth(next, nextWhole, s.projectedCalls, s.known).totalCents,
  };
}

/** `1 December 2026 00:00 UTC`. */
const utcDate = (ms: number) => `${new Date(ms).getUTCDate()} ${monthName(monthOf(ms))} ${new Date(ms).toISOString().slice(11, 16)} UTC`;

function ruleFor(kind: PlanChangeKind, from: Plan, to: Plan, pending: Plan | undefined, nextStart: number): string {
  const cap = to.overageCentsPer1000 === null ? ` ${to.name} has a hard cap: calls past its ${to.includedCalls.toLocaleString("en-US")} a month are refused until the month turns.` : "";
  switch (kind) {
    case "upgrade":
      return `An upgrade applies at once: this month's base fee and included calls are split by the time (in seconds) spent on ${from.name} and on ${to.name}, the calls already made still count, and calls over the included ones are priced at ${to.name}'s rate.${cap}`;
    case "downgrade":
      return `A downgrade is scheduled for the start of next month (${utcDate(nextStart)}): this month stays entirely on ${from.name}, and next month is entirely on ${to.name}.${cap}`;
    case "cancel":
      return `You are on ${from.name} with a change to ${pending?.name ?? "another plan"} scheduled for ${utcDate(nextStart)}; choosing ${from.name} cancels it, and you stay on ${from.name}.`;
    default:
      return `You are on ${from.name} already: nothing changes. ${PLAN_CHANGE_RULE}`;
  }
}

/** After a plan takes effect: every key of the account is evicted from every instance's cache (the gateway reads the plan into it). */
async function evictAccountKeys(deps: Pick<Deps, "db" | "keyCache">, accountIds: Iterable<string>): Promise<void> {
  for (const accountId of accountIds) {
    const rows = await deps.db
      .select({ hash: apiKeys.hash })
      .from(apiKeys)
      .where(and(eq(apiKeys.accountId, accountId), isNull(apiKeys.revokedAt)));
    for (const row of rows) await deps.keyCache.announce(row.hash);
  }
}

/**
 * Changes an account's plan by the rule (PLAN_CHANGE_RULE): an upgrade applies now (a
 * plan_changes row effective now, accounts.plan_id set, the account's keys evicted on
 * every instance); a downgrade is written effective at the next month's start
 * (applyDuePlanChanges sets accounts.plan_id then; invoices read plan_changes either way);
 * choosing the plan in force while a downgrade is scheduled cancels it. Any new change
 * withdraws a scheduled one. Audited: plan.changed, plan.scheduled, plan.cancelled.
 */
export async function changePlan(deps: BillingDeps, accountId: string, toPlanId: string, who: Actor): Promise<{ kind: PlanChangeKind; effectiveAt: string }> {
  const to = choosablePlan(deps, toPlanId);
  const nowMs = deps.clock.now();
  const now = new Date(nowMs);
  const result = await deps.db.transaction(async (tx) => {
    await lockAccount(tx, accountId);
    const [changes, known] = await Promise.all([changesOf(tx, accountId), knownPlans(deps, tx)]);
    const from = planFrom(known, planIn(changes, nowMs));
    const pending = pendingOf(changes, nowMs);
    const kind = kindOf(from, to, pending);
    if (kind === "same") return { kind, effectiveAt: nowMs };
    if (kind === "downgrade" && pending?.toPlan === to.id) return { kind, effectiveAt: pending.effectiveAt };
    if (pending) await tx.update(planChanges).set({ cancelledAt: now }).where(eq(planChanges.id, pending.id));
    const withdrawn = pending ? { plan: pending.toPlan, effectiveAt: new Date(pending.effectiveAt).toISOString() } : undefined;
    if (kind === "cancel") {
      await recordAudit(tx, who, { accountId, action: "plan.cancelled", changes: { plan: { from: from.id, to: pending!.toPlan }, effectiveAt: withdrawn!.effectiveAt } }, now);
      return { kind, effectiveAt: nowMs };
    }
    const effectiveAt = kind === "downgrade" ? monthEnd(monthOf(nowMs)) : nowMs;
    // Two changes taking effect in one millisecond would have no order between them: the
    // second becomes the first's destination (the time on the plan between is zero anyway).
    const sameInstant = kind === "upgrade" ? changes.find((c) => c.effectiveAt === nowMs) : undefined;
    if (sameInstant) await tx.update(planChanges).set({ toPlan: to.id }).where(eq(planChanges.id, sameInstant.id));
    else await tx.insert(planChanges).values({ id: newId("plc"), accountId, fromPlan: from.id, toPlan: to.id, effectiveAt: new Date(effectiveAt), requestedAt: now, actor: who.actor });
    if (kind === "downgrade") {
      await recordAudit(
        tx,
        who,
        { accountId, action: "plan.scheduled", changes: { plan: { from: from.id, to: to.id }, effectiveAt: new Date(effectiveAt).toISOString(), ...(withdrawn ? { replaces: withdrawn } : {}) } },
        now,
      );
    } else {
      await tx.update(accounts).set({ planId: to.id, updatedAt: now }).where(eq(accounts.id, accountId));
      await recordAudit(tx, who, { accountId, action: "plan.changed", changes: { plan: { from: from.id, to: to.id }, ...(withdrawn ? { cancelledScheduled: withdrawn } : {}) } }, now);
    }
    return { kind, effectiveAt };
  });
  if (result.kind === "upgrade") await evictAccountKeys(deps, [accountId]);
  return { kind: result.kind, effectiveAt: new Date(result.effectiveAt).toISOString() };
}

/**
 * Copies plans that have taken effect (scheduled downgrades whose start has come) into
 * accounts.plan_id, audited as plan.changed by `system`, and evicts those accounts' keys on
 * every instance. Idempotent: an account whose plan_id already agrees is left alone.
 * Returns how many accounts changed.
 */
export async function applyDuePlanChanges(deps: BillingDeps): Promise<number> {
  const nowMs = deps.clock.now();
  const now = new Date(nowMs);
  const latest = await deps.db
    .selectDistinctOn([planChanges.accountId], { accountId: planChanges.accountId, toPlan: planChanges.toPlan, planId: accounts.planId })
    .from(planChanges)
    .innerJoin(accounts, eq(accounts.id, planChanges.accountId))
    .where(and(isNull(planChanges.cancelledAt), lte(planChanges.effectiveAt, now)))
    .orderBy(planChanges.accountId, desc(planChanges.effectiveAt), desc(planChanges.requestedAt));
  const changed: string[] = [];
  for (const { accountId } of latest.filter((r) => r.toPlan !== r.planId)) {
    const applied = await deps.db.transaction(async (tx) => {
      const account = await lockAccount(tx, accountId);
      const changes = await changesOf(tx, accountId);
      const plan = planIn(changes, nowMs);
      if (plan === account.planId) return false;
      const change = changes.filter((c) => c.effectiveAt <= nowMs).at(-1);
      await tx.update(accounts).set({ planId: plan, updatedAt: now }).where(eq(accounts.id, accountId));
      await recordAudit(
        tx,
        systemActor,
        { accountId, action: "plan.changed", changes: { plan: { from: account.planId, to: plan }, scheduled: true, ...(change ? { effectiveAt: new Date(change.effectiveAt).toISOString() } : {}) } },
        now,
      );
      return true;
    });
    if (applied) changed.push(accountId);
  }
  await evictAccountKeys(deps, changed);
  return changed.length;
}

/**
 * This month's meter for the Billing page: live calls so far against the month's included
 * calls, the plan, the pace, and what the invoice would say at that pace and if no more
 * calls were made.
 */
export async function monthMeter(deps: Pick<Deps, "db" | "clock" | "catalog">, accountId: string, now = deps.clock.now()): Promise<MonthMeter> {
  const s = await monthState(deps, accountId, now);
  const segments = monthSegments(s.month, s.createdAt, s.changes.filter((c) => c.effectiveAt <= now));
  const plan = planFrom(s.known, planIn(s.changes, now));
  const soFar = priceMonth(s.month, segments, s.used, s.known);
  const pending = pendingOf(s.changes, now);
  return {
    month: s.month,
    plan,
    used: s.used,
    // A hard cap is what the gateway enforces, whole from the first day; paid plans' included
    // calls are the month's prorated share, as the invoice counts them.
    included: plan.overageCentsPer1000 === null ? plan.includedCalls : soFar.includedCalls,
    hardCap: plan.overageCentsPer1000 === null,
    projectedCalls: s.projectedCalls,
    projectedCents: priceMonth(s.month, segments, s.projectedCalls, s.known).totalCents,
    costSoFarCents: soFar.totalCents,
    baseCents: soFar.baseCents,
    scheduled: pending ? { toPlan: planFrom(s.known, pending.toPlan), effectiveAt: new Date(pending.effectiveAt).toISOString() } : null,
    endsAt: new Date(monthEnd(s.month)).toISOString(),
  };
}

// ---------------------------------------------------------------------------------------
// Invoices

/** A month as `YYYY-MM`, or invalid_request on `month`. */
export function parseMonth(month: string): string {
  const r = monthSchema.safeParse(month);
  if (!r.success) throw invalidInput("The month is not valid.", [{ field: "month", message: r.error.issues[0]!.message }]);
  return r.data;
}

/** `KP-YYYYMM-NNNNNN`. */
export const invoiceNumber = (month: string, n: number) => `KP-${month.replace("-", "")}-${String(n).padStart(6, "0")}`;

/** The invoice `accountId` would get for `month` from the plan changes and usage rows as they are now (no number, nothing written). */
export async function draftInvoice(deps: Pick<Deps, "db" | "catalog">, accountId: string, month: string, db: Reader = deps.db): Promise<PricedMonth | null> {
  const m = parseMonth(month);
  const account = await accountRow(db, accountId);
  const [changes, known, calls] = await Promise.all([changesOf(db, accountId), knownPlans(deps, db), monthCalls(db, accountId, m)]);
  const segments = monthSegments(m, account.createdAt.getTime(), changes);
  return segments.length ? priceMonth(m, segments, calls, known) : null;
}

class AlreadyInvoiced extends Error {}

export interface CloseResult {
  month: string;
  /** Invoices finalized by this run. */
  created: number;
  /** Accounts that had their invoice already (a second run, or another instance's). */
  existing: number;
}

/**
 * Finalizes `month`'s invoice of every account that existed before the month's end, each in
 * its own transaction: priced from its plan changes and live usage rows, numbered from
 * invoice_numbers in the same transaction (so a rolled-back invoice gives its number back:
 * no gaps), `invoice.finalized` notified and audited. UNIQUE (account_id, month) makes a
 * second run, or a second instance, create nothing and change nothing. A month that has not
 * ended is refused (invalid_request on `month`).
 */
export async function closeMonth(deps: Pick<Deps, "db" | "clock" | "catalog">, month: string, settleMs = 0): Promise<CloseResult> {
  const m = parseMonth(month);
  const nowMs = deps.clock.now();
  const end = monthEnd(m);
  if (nowMs < end) {
    throw invalidInput("That month cannot be closed yet.", [{ field: "month", message: `has not ended yet (it ends ${new Date(end).toISOString().slice(0, 16).replace("T", " ")} UTC)` }]);
  }
  if (nowMs < end + settleMs) {
    const at = new Date(end + settleMs).toISOString().slice(0, 16).replace("T", " ");
    throw invalidInput("That month cannot be closed yet.", [{ field: "month", message: `ended less than ${Math.round(settleMs / 60_000)} minutes ago: usage may still be flushing; close after ${at} UTC, or pass --force` }]);
  }
  const now = new Date(nowMs);
  const open = await deps.db
    .select({ id: accounts.id })
    .from(accounts)
    .where(and(lt(accounts.createdAt, new Date(end)), sql`not exists (select 1 from ${invoices} where ${invoices.accountId} = ${accounts.id} and ${invoices.month} = ${m})`))
    .orderBy(asc(accounts.createdAt), asc(accounts.id));
  const [{ n: already } = { n: 0 }] = await deps.db
    .select({ n: sql<number>`count(*)::int` })
    .from(invoices)
    .where(eq(invoices.month, m));
  const result: CloseResult = { month: m, created: 0, existing: Number(already) };
  for (const { id: accountId } of open) {
    try {
      const made = await deps.db.transaction(async (tx) => {
        const priced = await draftInvoice(deps, accountId, m, tx);
        if (!priced) return false;
        const [counter] = await tx
          .insert(invoiceNumbers)
          .values({ month: m, last: 1 })
          .onConflictDoUpdate({ target: invoiceNumbers.month, set: { last: sql`${invoiceNumbers.last} + 1` } })
          .returning({ last: invoiceNumbers.last });
        const number = invoiceNumber(m, counter!.last);
        const id = newId("inv");
        const [inserted] = await tx
          .insert(invoices)
          .values({ id, accountId, month: m, number, status: "open", currency: "USD", calls: priced.calls, includedCalls: priced.includedCalls, totalCents: priced.totalCents, lines: priced.lines, finalizedAt: now })
          .onConflictDoNothing()
          .returning({ id: invoices.id });
        // Another run finalized it meanwhile: roll back, and the number taken goes back with it.
        if (!inserted) throw new AlreadyInvoiced();
        const data = { invoiceId: id, number, month: m, totalCents: priced.totalCents, currency: "USD", calls: priced.calls };
        await recordAudit(tx, systemActor, { accountId, action: "invoice.finalized", changes: data }, now);
        await emit(tx, { accountId, event: "invoice.finalized", data }, now);
        return true;
      });
      if (made) result.created++;
    } catch (err) {
      if (!(err instanceof AlreadyInvoiced)) throw err;
      result.existing++;
    }
  }
  return result;
}

type InvoiceRow = typeof invoices.$inferSelect;

function toInvoiceView(r: InvoiceRow): InvoiceView {
  return {
    id: r.id,
    accountId: r.accountId,
    number: r.number,
    month: r.month,
    status: r.status,
    currency: r.currency,
    calls: r.calls,
    includedCalls: r.includedCalls,
    totalCents: r.totalCents,
    lines: r.lines,
    finalizedAt: r.finalizedAt.toISOString(),
    paidAt: r.paidAt?.toISOString() ?? null,
    voidedAt: r.voidedAt?.toISOString() ?? null,
  };
}

/** The account's invoices, newest month first. */
export async function listInvoices(deps: Pick<Deps, "db">, accountId: string): Promise<InvoiceView[]> {
  const rows = await deps.db.select().from(invoices).where(eq(invoices.accountId, accountId)).orderBy(desc(invoices.month));
  return rows.map(toInvoiceView);
}

/** One of the account's invoices; another account's is not_found, like a missing one. */
export async function getInvoice(deps: Pick<Deps, "db">, accountId: string, invoiceId: string): Promise<InvoiceView> {
  const [row] = await deps.db
    .select()
    .from(invoices)
    .where(and(eq(invoices.id, invoiceId), eq(invoices.accountId, accountId)));
  if (!row) throw notFound("invoice");
  return toInvoiceView(row);
}

/** Any account's invoice with its email (operators' pages). */
export async function findInvoice(deps: Pick<Deps, "db">, invoiceId: string): Promise<InvoiceWithEmail> {
  const [row] = await deps.db.select({ invoice: invoices, email: accounts.email }).from(invoices).innerJoin(accounts, eq(accounts.id, invoices.accountId)).where(eq(invoices.id, invoiceId));
  if (!row) throw notFound("invoice");
  return { ...toInvoiceView(row.invoice), email: row.email };
}

/** Every invoice of `month` with its account's email, in number order (operators; the CSV export). */
export async function monthInvoices(deps: Pick<Deps, "db">, month: string): Promise<InvoiceWithEmail[]> {
  const m = parseMonth(month);
  const rows = await deps.db.select({ invoice: invoices, email: accounts.email }).from(invoices).innerJoin(accounts, eq(accounts.id, invoices.accountId)).where(eq(invoices.month, m)).orderBy(asc(invoices.number));
  return rows.map((r) => ({ ...toInvoiceView(r.invoice), email: r.email }));
}

/** The statuses an invoice may move to from each: open → paid | void, paid → void; void is final. */
const NEXT: Record<InvoiceStatus, readonly InvoiceStatus[]> = { open: ["paid", "void"], paid: ["void"], void: [] };

/**
 * An operator marks an invoice paid or void (no payment processor is built in). Audited in
 * the invoice's account's log as invoice.paid / invoice.voided with the operator as actor.
 * Another transition is invalid_request on `status`.
 */
export async function setInvoiceStatus(deps: Pick<Deps, "db" | "clock">, invoiceId: string, status: "paid" | "void", who: Actor): Promise<InvoiceView> {
  const now = new Date(deps.clock.now());
  const row = await deps.db.transaction(async (tx) => {
    const [before] = await tx.select().from(invoices).where(eq(invoices.id, invoiceId)).for("update");
    if (!before) throw notFound("invoice");
    if (!NEXT[before.status].includes(status)) {
      throw new DomainError("invalid_request", `Invoice ${before.number} is ${before.status}: it cannot be marked ${status}.`, [
        { field: "status", message: before.status === "void" ? "cannot change: the invoice is void" : `must be ${NEXT[before.status].map((s) => `"${s}"`).join(" or ")} for a ${before.status} invoice` },
      ]);
    }
    const [after] = await tx
      .update(invoices)
      .set(status === "paid" ? { status, paidAt: now } : { status, voidedAt: now })
      .where(eq(invoices.id, invoiceId))
      .returning();
    await recordAudit(
      tx,
      who,
      { accountId: before.accountId, action: status === "paid" ? "invoice.paid" : "invoice.voided", changes: { invoiceId, number: before.number, status: { from: before.status, to: status } } },
      now,
    );
    return after!;
  });
  return toInvoiceView(row);
}

// ---------------------------------------------------------------------------------------
// The sweep

/**
 * How long after a month ends the sweep waits before closing it: every instance's meter
 * must have flushed the month's last calls into the usage rows the invoice sums.
 */
export function closeDelayMs(config: Pick<Deps["config"], "usageFlushMs">): number {
  return Math.max(10 * 60_000, 3 * config.usageFlushMs);
}

/** The close's lock outlives a slow close of many accounts; were it to lapse, a second runner is still harmless (idempotent, no gaps). */
const CLOSE_LOCK_MS = 30 * 60_000;

/** Whether some account that existed before `month` ended has no invoice for it. */
async function monthHasOpenAccounts(db: Reader, month: string): Promise<boolean> {
  const rows = await db
    .select({ id: accounts.id })
    .from(accounts)
    .where(and(lt(accounts.createdAt, new Date(monthEnd(month))), sql`not exists (select 1 from ${invoices} where ${invoices.accountId} = ${accounts.id} and ${invoices.month} = ${month})`))
    .limit(1);
  return rows.length > 0;
}

/**
 * The last month each database was seen fully invoiced: no account can be created in a past
 * month, so once closed a month stays closed and the sweep stops asking.
 */
const closedMonths = new WeakMap<object, string>();

export interface BillingSweepResult {
  /** Accounts whose scheduled plan took effect. */
  applied: number;
  /** The previous month's close, when this run made it. */
  closed: CloseResult | null;
}

/**
 * One pass of the billing sweep (src/jobs.ts, every ROTATION_SWEEP_MS): due plan changes
 * applied, then the previous month closed if some account lacks its invoice — once the
 * close delay has passed, after this instance's meter is flushed, under a shared lock
 * (`billing:close:<month>`) so one instance closes it.
 */
export async function runBillingSweep(deps: Deps): Promise<BillingSweepResult> {
  const applied = await applyDuePlanChanges(deps);
  const now = deps.clock.now();
  const previous = previousMonth(monthOf(now));
  let closed: CloseResult | null = null;
  if (closedMonths.get(deps.db) !== previous && now >= monthEnd(previous) + closeDelayMs(deps.config)) {
    if (!(await monthHasOpenAccounts(deps.db, previous))) closedMonths.set(deps.db, previous);
    else {
      const lock = await deps.state.tryLock(`billing:close:${previous}`, CLOSE_LOCK_MS);
      if (lock) {
        try {
          await deps.meter.flush();
          closed = await closeMonth(deps, previous);
        } finally {
          await lock.release();
        }
      }
    }
  }
  if (applied || closed?.created) deps.log.info("billing sweep", { applied, month: closed?.month, invoices: closed?.created ?? 0 });
  return { applied, closed };
}
