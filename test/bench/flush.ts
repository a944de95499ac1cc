import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { sql } from "drizzle-orm";
import { openPglite, openPostgres, type Database } from "../../src/db/client.ts";
import { accounts } from "../../src/accounts/accounts.sql.ts";
import { apiKeys } from "../../src/keys/keys.sql.ts";
import { createLogger } from "../../src/ops/log.ts";
import { systemClock } from "../../src/ops/clock.ts";
import { UsageMeter, flushConnections } from "../../src/usage/meter.ts";

export interface FlushResult {
  backend: "postgres" | "pglite";
  keys: number;
  endpoints: number;
  requests: number;
  /**
   * The first flush after start: yesterday's rows for the same keys, on a pool that opens its
   * connections for it (each backend also loads its catalog caches). Reported, not judged.
   */
  firstMs: number;
  /**
   * Then, on those connections, as in a running server (its flushes every few seconds keep
   * them open): a day's new rows inserted, then the same rows added to (the steady state).
   */
  insertMs: number;
  updateMs: number;
  rows: number;
  /** Requests counted in key_usage after the three flushes, and what was sent. */
  counted: number;
  expected: number;
  recordNsPerRequest: number;
}

const ENDPOINTS = ["GET /v1/email/:address", "GET /v1/ip/:address", "POST /v1/batch"];

/**
 * Metering at scale, in process: `requests` meter records over `keys` keys × 3 endpoints
 * dated yesterday and flushed (the first flush after start, on new connections), then
 * today's: a timed flush (30,000 new rows), the same again (30,000 upserts onto them), and
 * the table's totals compared with what was recorded.
 */
export async function benchFlush(opts: { databaseUrl?: string; keys?: number; requests?: number }): Promise<FlushResult> {
  const keys = opts.keys ?? 10_000;
  const requests = opts.requests ?? 1_000_000;
  let database: Database;
  let drop = async () => {};
  if (opts.databaseUrl) {
    const name = `kp_bench_flush_${randomBytes(5).toString("hex")}`;
    const admin = postgres(opts.databaseUrl, { max: 1, onnotice: () => {} });
    await admin.unsafe(`create database "${name}"`);
    await admin.end();
    const u = new URL(opts.databaseUrl);
    u.pathname = `/${name}`;
    database = await openPostgres(u.toString());
    drop = async () => {
      const a = postgres(opts.databaseUrl!, { max: 1, onnotice: () => {} });
      await a.unsafe(`drop database if exists "${name}" with (force)`);
      await a.end();
    };
  } else {
    database = await openPglite(undefined);
  }
  try {
    await database.migrate();
    const db = database.db;
    const accountId = "acct_bench";
    await db.insert(accounts).values({ id: accountId, email: "flush@bench.example", passwordHash: "-" });
    const ids = Array.from({ length: keys }, (_, i) => `key_bench${String(i).padStart(6, "0")}`);
    // Real key rows, as a server would have (the usage rows refer to them).
    for (let i = 0; i < keys; i += 1000) {
      await db.insert(apiKeys).values(
        ids.slice(i, i + 1000).map((id) => ({ id, accountId, name: id, environment: "live" as const, hash: id, start: "abcd", end: "wxyz", scopes: ["email:read"] })),
      );
    }
    const meter = new UsageMeter(db, systemClock, createLogger("silent"), 3_600_000, flushConnections(database.kind));
    const yesterday = new UsageMeter(db, { now: () => systemClock.now() - 86_400_000 }, createLogger("silent"), 3_600_000, flushConnections(database.kind));
    const record = (m = meter) => {
      const started = Bun.nanoseconds();
      for (let i = 0; i < requests; i++) {
        const k = i % keys;
        const e = Math.floor(i / keys) % ENDPOINTS.length;
        m.record(ids[k]!, accountId, "live", ENDPOINTS[e]!, i % 50 === 0 ? 429 : 200, (i % 97) / 10);
      }
      return (Bun.nanoseconds() - started) / requests;
    };
    const flush = async (m = meter) => {
      const started = performance.now();
      await m.flush();
      return performance.now() - started;
    };
    record(yesterday);
    const firstMs = await flush(yesterday);
    const recordNs = record();
    const insertMs = await flush();
    record();
    const updateMs = await flush();
    const [totals] = rowsOf<{ rows: number; n: string }>(
      // The rows of the timed flushes' day; the requests of both days.
      await db.execute(sql`select (count(*) filter (where day = (select max(day) from key_usage)))::int as rows, coalesce(sum(successes + errors), 0)::bigint as n from key_usage`),
    );
    return {
      backend: database.kind,
      keys,
      endpoints: ENDPOINTS.length,
      requests,
      firstMs,
      insertMs,
      updateMs,
      rows: Number(totals?.rows ?? 0),
      counted: Number(totals?.n ?? 0),
      expected: 3 * requests,
      recordNsPerRequest: recordNs,
    };
  } finally {
    await database.close();
    await drop();
  }
}

/** postgres.js answers the rows themselves, PGlite `{ rows }`. */
export function rowsOf<T>(result: unknown): T[] {
  return (Array.isArray(result) ? result : (result as { rows: T[] }).rows) as T[];
}
