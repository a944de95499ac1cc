import { sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { LATENCY_BOUNDS_MS } from "./histogram.ts";

import type { UsageReport } from "./model.ts";
export type { DailyUsage, EndpointUsage, UsageReport } from "./model.ts";

function rows<T>(result: unknown): T[] {
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}

const bounds = sql.raw(`array[0,${LATENCY_BOUNDS_MS.join(",")}]::float8[]`);

/**
 * p95 from summed histogram buckets, interpolated linearly inside the bucket that holds the
 * 95th percentile (as Prometheus' histogram_quantile does); the open last bucket reports its
 * lower bound. `source` yields (grp, i, c): group, 1-based bucket index, count.
 */
function p95Sql(source: ReturnType<typeof sql>) {
  return sql`
    select distinct on (grp) grp,
      case when i > ${LATENCY_BOUNDS_MS.length} then (${bounds})[i]
           else (${bounds})[i] + ((${bounds})[i + 1] - (${bounds})[i]) * ((0.95 * total - (running - c)) / c)
      end as p95
    from (
      select grp, i, c, sum(c) over (partition by grp order by i) as running, sum(c) over (partition by grp) as total
      from (${source}) s
    ) w
    where total > 0 and c > 0 and running >= 0.95 * total
    order by grp, i`;
}

/** Usage of one key over the last `days` UTC days (today included), computed in SQL. */
export async function keyUsageReport(db: Db, keyId: string, days: number, now: number): Promise<UsageReport> {
  const to = new Date(now).toISOString().slice(0, 10);
  const from = new Date(now - (days - 1) * 86_400_000).toISOString().slice(0, 10);

  // One snapshot for the three queries: a flush committing between them made a page whose
  // chart, totals and endpoint table disagreed (seen in the browser test).
  const { daily, top, summary } = await db.transaction(
    async (tx) => {
      const daily = rows<{ day: string; successes: string; errors: string; latency_sum: number; p95: number | null }>(
        await tx.execute(sql`
          with d as (select generate_series(${from}::date, ${to}::date, interval '1 day')::date as day),
          u as (
            select day, sum(successes) as successes, sum(errors) as errors, sum(latency_sum_ms) as latency_sum
            from key_usage where key_id = ${keyId} and day between ${from}::date and ${to}::date group by day
          ),
          p as (${p95Sql(sql`
            select k.day as grp, t.i, sum(t.c)::float8 as c
            from key_usage k, unnest(k.latency_buckets) with ordinality as t(c, i)
            where k.key_id = ${keyId} and k.day between ${from}::date and ${to}::date
            group by k.day, t.i`)})
          select to_char(d.day, 'YYYY-MM-DD') as day, coalesce(u.successes, 0) as successes, coalesce(u.errors, 0) as errors,
                 u.latency_sum, p.p95
          from d left join u on u.day = d.day left join p on p.grp = d.day
          order by d.day`),
      );

      const top = rows<{ endpoint: string; requests: string; errors: string }>(
        await tx.execute(sql`
          select endpoint, sum(successes + errors) as requests, sum(errors) as errors
          from key_usage where key_id = ${keyId} and day between ${from}::date and ${to}::date
          group by endpoint order by requests desc, endpoint limit 10`),
      );

      const [summary] = rows<{ successes: string | null; errors: string | null; latency_sum: number | null; p95: number | null }>(
        await tx.execute(sql`
          with p as (${p95Sql(sql`
            select 1 as grp, t.i, sum(t.c)::float8 as c
            from key_usage k, unnest(k.latency_buckets) with ordinality as t(c, i)
            where k.key_id = ${keyId} and k.day between ${from}::date and ${to}::date
            group by t.i`)})
          select sum(successes) as successes, sum(errors) as errors, sum(latency_sum_ms) as latency_sum, (select p95 from p) as p95
          from key_usage where key_id = ${keyId} and day between ${from}::date and ${to}::date`),
      );
      return { daily, top, summary };
    },
    { isolationLevel: "repeatable read", accessMode: "read only" },
  );

  const round = (n: number | null) => (n === null || Number.isNaN(n) ? null : Math.round(n * 100) / 100);
  const successes = Number(summary?.successes ?? 0);
  const errors = Number(summary?.errors ?? 0);
  const total = successes + errors;
  return {
    keyId,
    days,
    from,
    to,
    daily: daily.map((r) => {
      const s = Number(r.successes);
      const e = Number(r.errors);
      return {
        day: r.day,
        successes: s,
        errors: e,
        avgLatencyMs: s + e > 0 && r.latency_sum !== null ? round(Number(r.latency_sum) / (s + e)) : null,
        p95LatencyMs: round(r.p95 === null ? null : Number(r.p95)),
      };
    }),
    topEndpoints: top.map((r) => ({ endpoint: r.endpoint, requests: Number(r.requests), errors: Number(r.errors) })),
    summary: {
      total,
      successes,
      errors,
      errorRate: total > 0 ? Math.round((errors / total) * 10_000) / 10_000 : 0,
      avgLatencyMs: total > 0 && summary?.latency_sum != null ? round(Number(summary.latency_sum) / total) : null,
      p95LatencyMs: round(summary?.p95 == null ? null : Number(summary.p95)),
    },
  };
}

export interface AccountOverview {
  today: { successes: number; errors: number };
  month: { successes: number; errors: number };
  errorRate: number;
  daily: { day: string; successes: number; errors: number }[];
  /** keyId → requests this UTC month. */
  perKeyMonth: Record<string, number>;
}

/** The dashboard's numbers for one account: today, this UTC month, the last 7 days, per key. */
export async function accountOverview(db: Db, accountId: string, now: number): Promise<AccountOverview> {
  const today = new Date(now).toISOString().slice(0, 10);
  const monthStart = today.slice(0, 8) + "01";
  const weekStart = new Date(now - 6 * 86_400_000).toISOString().slice(0, 10);
  const [totals] = rows<{ ts: string | null; te: string | null; ms: string | null; me: string | null }>(
    await db.execute(sql`
      select sum(successes) filter (where day = ${today}::date) as ts, sum(errors) filter (where day = ${today}::date) as te,
             sum(successes) as ms, sum(errors) as me
      from key_usage where account_id = ${accountId} and day >= ${monthStart}::date`),
  );
  const daily = rows<{ day: string; successes: string; errors: string }>(
    await db.execute(sql`
      with d as (select generate_series(${weekStart}::date, ${today}::date, interval '1 day')::date as day)
      select to_char(d.day, 'YYYY-MM-DD') as day, coalesce(sum(u.successes), 0) as successes, coalesce(sum(u.errors), 0) as errors
      from d left join key_usage u on u.day = d.day and u.account_id = ${accountId}
      group by d.day order by d.day`),
  );
  const perKey = rows<{ key_id: string; n: string }>(
    await db.execute(sql`
      select key_id, sum(successes + errors) as n from key_usage
      where account_id = ${accountId} and day >= ${monthStart}::date group by key_id`),
  );
  const ms = Number(totals?.ms ?? 0);
  const me = Number(totals?.me ?? 0);
  return {
    today: { successes: Number(totals?.ts ?? 0), errors: Number(totals?.te ?? 0) },
    month: { successes: ms, errors: me },
    errorRate: ms + me > 0 ? me / (ms + me) : 0,
    daily: daily.map((d) => ({ day: d.day, successes: Number(d.successes), errors: Number(d.errors) })),
    perKeyMonth: Object.fromEntries(perKey.map((r) => [r.key_id, Number(r.n)])),
  };
}
