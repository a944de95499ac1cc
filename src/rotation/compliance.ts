import { sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import type { CsvCell } from "../ops/csv.ts";

export interface ComplianceRow {
  keyId: string;
  name: string;
  accountId: string;
  email: string;
  environment: string;
  createdAt: string;
  ageDays: number;
  maxAgeDays: number;
  overPolicy: boolean;
  rotationId: string | null;
  rotationState: string | null;
  /** When the rotation in flight starts (scheduled) or its grace ends (grace_period). */
  rotationDueAt: string | null;
}

export interface ComplianceReport {
  rows: ComplianceRow[];
  total: number;
  withinPolicy: number;
  percentWithinPolicy: number;
  overPolicy: number;
  inFlight: number;
  byAge: { label: string; count: number }[];
}

const AGE_BUCKETS: [string, number, number][] = [
  ["0-30 days", 0, 30],
  ["31-60 days", 31, 60],
  ["61-90 days", 61, 90],
  ["over 90 days", 91, Number.POSITIVE_INFINITY],
];

/**
 * Keys still in use (active or in a grace period), their age against their account's
 * policy and any rotation in flight. One account's, or every account's for an operator.
 */
export async function complianceReport(db: Db, now: number, accountId?: string): Promise<ComplianceReport> {
  const at = new Date(now).toISOString();
  const result = await db.execute(sql`
    select k.id, k.name, k.account_id, a.email, k.environment, k.created_at,
           floor(extract(epoch from (${at}::timestamptz - k.created_at)) / 86400)::int as age_days,
           coalesce(p.max_key_age_days, 90) as max_age,
           r.id as rotation_id, r.state as rotation_state,
           case when r.state = 'scheduled' then r.scheduled_at else r.grace_ends_at end as rotation_due
    from api_keys k
    join accounts a on a.id = k.account_id
    left join rotation_policies p on p.account_id = k.account_id
    left join key_rotations r on r.old_key_id = k.id and r.state in ('scheduled', 'grace_period')
    where k.revoked_at is null
      and (k.grace_ends_at is null or k.grace_ends_at > ${at}::timestamptz)
      and (k.expires_at is null or k.expires_at > ${at}::timestamptz)
      ${accountId ? sql`and k.account_id = ${accountId}` : sql``}
    order by k.created_at, k.id`);
  const raw = (Array.isArray(result) ? result : (result as { rows: unknown[] }).rows) as {
    id: string;
    name: string;
    account_id: string;
    email: string;
    environment: string;
    created_at: Date | string;
    age_days: number;
    max_age: number;
    rotation_id: string | null;
    rotation_state: string | null;
    rotation_due: Date | string | null;
  }[];
  const iso = (d: Date | string | null) => (d === null ? null : new Date(d).toISOString());
  const rows: ComplianceRow[] = raw.map((r) => ({
    keyId: r.id,
    name: r.name,
    accountId: r.account_id,
    email: r.email,
    environment: r.environment,
    createdAt: iso(r.created_at)!,
    ageDays: Number(r.age_days),
    maxAgeDays: Number(r.max_age),
    overPolicy: Number(r.max_age) > 0 && Number(r.age_days) > Number(r.max_age),
    rotationId: r.rotation_id,
    rotationState: r.rotation_state,
    rotationDueAt: iso(r.rotation_due),
  }));
  const over = rows.filter((r) => r.overPolicy).length;
  return {
    rows,
    total: rows.length,
    withinPolicy: rows.length - over,
    percentWithinPolicy: rows.length ? Math.round(((rows.length - over) / rows.length) * 1000) / 10 : 100,
    overPolicy: over,
    inFlight: rows.filter((r) => r.rotationState !== null).length,
    byAge: AGE_BUCKETS.map(([label, lo, hi]) => ({ label, count: rows.filter((r) => r.ageDays >= lo && r.ageDays <= hi).length })),
  };
}

export const COMPLIANCE_CSV_COLUMNS = ["key_id", "name", "account", "environment", "created_at", "age_days", "max_age_days", "over_policy", "rotation_state", "rotation_due_at"];

/**
 * The report's rows for the CSV (written by src/ops/csv.ts, which defuses formula cells: a
 * key's name and an account's email are another tenant's text in the operator's export).
 */
export function complianceCsvRows(report: ComplianceReport): CsvCell[][] {
  return report.rows.map((r) => [r.keyId, r.name, r.email, r.environment, r.createdAt, r.ageDays, r.maxAgeDays, r.overPolicy ? "yes" : "no", r.rotationState ?? "", r.rotationDueAt ?? ""]);
}
