import { sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { notFound } from "../errors.ts";
import { monthDays, monthOf } from "../billing/invoices.ts";

/**
 * What the operator's pages read across accounts. Reads only: every change an operator makes
 * goes through the owning capability's service (suspension, plans, invoices), which audits it.
 */

function rows<T>(result: unknown): T[] {
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}

const iso = (v: Date | string | null | undefined): string | null => (v === null || v === undefined ? null : new Date(v).toISOString());

export interface OperatorAccountRow {
  id: string;
  email: string;
  planId: string;
  operator: boolean;
  createdAt: string;
  suspendedAt: string | null;
  suspendedReason: string | null;
  /** Keys whose status is active (not revoked, not in a roll's grace, not expired); sandbox keys left out. */
  activeKeys: number;
  /** Successful calls with live keys this UTC month: the usage rows the invoice sums. */
  callsThisMonth: number;
  /** The latest of a key's last use and a session's last use, or null. */
  lastActivityAt: string | null;
}

export const ACCOUNTS_PAGE = 50;

/** The condition "the key is active at `at`", as keyStatus decides it (src/keys/service.ts). */
const activeKey = (at: string) => sql`k.revoked_at is null and k.grace_ends_at is null and (k.expires_at is null or k.expires_at > ${at}::timestamptz) and k.sandbox_session_id is null`;

/** `%text%` for ILIKE, with the pattern's own metacharacters taken literally. */
const contains = (q: string) => `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;

function accountColumns(now: number) {
  const at = new Date(now).toISOString();
  const { first, last } = monthDays(monthOf(now));
  return sql`a.id, a.email, a.plan_id, a.is_operator, a.created_at, a.suspended_at, a.suspended_reason,
    (select count(*) from api_keys k where k.account_id = a.id and ${activeKey(at)})::int as active_keys,
    (select coalesce(sum(u.successes), 0) from key_usage u
      where u.account_id = a.id and u.environment = 'live' and u.day between ${first}::date and ${last}::date)::bigint as calls,
    greatest((select max(u.last_used_at) from key_usage u where u.account_id = a.id),
             (select max(s.last_seen_at) from sessions s where s.account_id = a.id)) as last_activity`;
}

type AccountRaw = {
  id: string;
  email: string;
  plan_id: string;
  is_operator: boolean;
  created_at: Date | string;
  suspended_at: Date | string | null;
  suspended_reason: string | null;
  active_keys: number | string;
  calls: number | string;
  last_activity: Date | string | null;
};

function toRow(r: AccountRaw): OperatorAccountRow {
  return {
    id: r.id,
    email: r.email,
    planId: r.plan_id,
    operator: r.is_operator,
    createdAt: iso(r.created_at)!,
    suspendedAt: iso(r.suspended_at),
    suspendedReason: r.suspended_reason,
    activeKeys: Number(r.active_keys),
    callsThisMonth: Number(r.calls),
    lastActivityAt: iso(r.last_activity),
  };
}

/** Accounts whose email contains `q` (any case), oldest first, 50 a page, with the totals. */
export async function searchAccounts(db: Db, search: { q?: string; page?: number }, now: number): Promise<{ accounts: OperatorAccountRow[]; total: number; page: number; pages: number }> {
  const where = search.q ? sql`where a.email ilike ${contains(search.q)}` : sql``;
  const [{ n } = { n: 0 }] = rows<{ n: number | string }>(await db.execute(sql`select count(*)::int as n from accounts a ${where}`));
  const total = Number(n);
  const pages = Math.max(1, Math.ceil(total / ACCOUNTS_PAGE));
  const page = Math.min(Math.max(1, search.page ?? 1), pages);
  const found = rows<AccountRaw>(
    await db.execute(sql`select ${accountColumns(now)} from accounts a ${where} order by a.created_at, a.id limit ${ACCOUNTS_PAGE} offset ${(page - 1) * ACCOUNTS_PAGE}`),
  );
  return { accounts: found.map(toRow), total, page, pages };
}

/** One account as the operator's list shows it; not_found when there is none. */
export async function operatorAccount(db: Db, accountId: string, now: number): Promise<OperatorAccountRow> {
  const [row] = rows<AccountRaw>(await db.execute(sql`select ${accountColumns(now)} from accounts a where a.id = ${accountId}`));
  if (!row) throw notFound("account");
  return toRow(row);
}

export interface DailyByEnvironment {
  day: string;
  live: { successes: number; errors: number };
  test: { successes: number; errors: number };
}

/** Requests per UTC day over the last `days` days (today included), live and test apart: one account's, or all of them. */
export async function dailyUsageByEnvironment(db: Db, now: number, days: number, accountId?: string): Promise<DailyByEnvironment[]> {
  const to = new Date(now).toISOString().slice(0, 10);
  const from = new Date(now - (days - 1) * 86_400_000).toISOString().slice(0, 10);
  const result = rows<{ day: string; ls: string; le: string; ts: string; te: string }>(
    await db.execute(sql`
      with d as (select generate_series(${from}::date, ${to}::date, interval '1 day')::date as day)
      select to_char(d.day, 'YYYY-MM-DD') as day,
             coalesce(sum(u.successes) filter (where u.environment = 'live'), 0) as ls,
             coalesce(sum(u.errors) filter (where u.environment = 'live'), 0) as le,
             coalesce(sum(u.successes) filter (where u.environment = 'test'), 0) as ts,
             coalesce(sum(u.errors) filter (where u.environment = 'test'), 0) as te
      from d left join key_usage u on u.day = d.day ${accountId ? sql`and u.account_id = ${accountId}` : sql``}
      group by d.day order by d.day`),
  );
  return result.map((r) => ({ day: r.day, live: { successes: Number(r.ls), errors: Number(r.le) }, test: { successes: Number(r.ts), errors: Number(r.te) } }));
}

export interface PlanUsage {
  id: string;
  name: string;
  description: string;
  priceCents: number;
  includedCalls: number;
  overageCentsPer1000: number | null;
  requestsPerSecond: number;
  retiredAt: string | null;
  /** Accounts on the plan now. */
  accounts: number;
  /** Accounts with a change to this plan scheduled (a downgrade waiting for next month). */
  scheduled: number;
}

/** Every plan of the plans table (retired ones too: accounts may still be on them) with how many accounts are on it. */
export async function plansWithAccounts(db: Db, now: number): Promise<PlanUsage[]> {
  const at = new Date(now).toISOString();
  const result = rows<{
    id: string;
    name: string;
    description: string;
    price_cents: number;
    included_calls: number;
    overage_cents_per_1000: number | null;
    requests_per_second: number;
    retired_at: Date | string | null;
    accounts: number | string;
    scheduled: number | string;
  }>(
    await db.execute(sql`
      select p.id, p.name, p.description, p.price_cents, p.included_calls, p.overage_cents_per_1000, p.requests_per_second, p.retired_at,
             (select count(*) from accounts a where a.plan_id = p.id)::int as accounts,
             (select count(distinct c.account_id) from plan_changes c
               where c.to_plan = p.id and c.cancelled_at is null and c.effective_at > ${at}::timestamptz)::int as scheduled
      from plans p order by p.retired_at is not null, p.position, p.id`),
  );
  return result.map((r) => ({
    id: r.id,
    name: r.name,
    description: r.description,
    priceCents: Number(r.price_cents),
    includedCalls: Number(r.included_calls),
    overageCentsPer1000: r.overage_cents_per_1000 === null ? null : Number(r.overage_cents_per_1000),
    requestsPerSecond: Number(r.requests_per_second),
    retiredAt: iso(r.retired_at),
    accounts: Number(r.accounts),
    scheduled: Number(r.scheduled),
  }));
}

/** Plan id → name for every plan of the plans table (retired ones too). */
export async function planNames(db: Db): Promise<Record<string, string>> {
  const result = rows<{ id: string; name: string }>(await db.execute(sql`select id, name from plans`));
  return Object.fromEntries(result.map((r) => [r.id, r.name]));
}
