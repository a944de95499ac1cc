import { sql } from "drizzle-orm";
import type { Db } from "../db/client.ts";
import { newId } from "../ids.ts";
import type { Clock } from "../ops/clock.ts";
import type { Logger } from "../ops/log.ts";
import { BUCKET_COUNT, bucketOf } from "./histogram.ts";
import { keyUsage, usageFlushes } from "./usage.sql.ts";

export interface UsageRow {
  keyId: string;
  accountId: string;
  environment: "live" | "test";
  day: string;
  endpoint: string;
  successes: number;
  errors: number;
  latencySumMs: number;
  latencyBuckets: number[];
  /** When the latest request counted in the row was recorded (epoch ms). */
  lastUsedAt: number;
}

interface PendingFlush {
  flushId: string;
  rows: UsageRow[];
}

/**
 * Rows per statement. The rows travel as one text parameter (see rowLines), so the count is
 * not bound by Postgres' 65,535 parameters; one statement per flush at the usual sizes.
 */
const ROWS_PER_STATEMENT = 50_000;
/** A batch is split across connections only in parts at least this large. */
const MIN_ROWS_PER_PART = 2_000;

/**
 * Connections a flush uses at once: Postgres spreads a large batch over several backends
 * (the pool holds 10); PGlite is one connection.
 */
export function flushConnections(kind: "postgres" | "pglite"): number {
  return kind === "postgres" ? 4 : 1;
}

/**
 * Usage metering. The request path only adds to an in-memory map keyed by
 * (key, UTC day, endpoint template); a timer swaps the map and writes it in parts (see
 * write): each part one transaction with a `usage_flushes` ledger row, then upserts that add
 * to the stored counts. A failed flush keeps its batch and flush id and is retried first on
 * the next tick, and the ledger makes a retry of an already-committed part a no-op: every
 * answered request is counted exactly once.
 */
export class UsageMeter {
  /** Rows by UTC day, key id, endpoint: nested maps keyed by strings the caller keeps (a key's id, a route's name), so a hit hashes nothing new. */
  private current = new Map<string, Map<string, Map<string, UsageRow>>>();
  /** Rows in `current`. */
  private rowCount = 0;
  /** The UTC day of the last record and the span it covers, so a record formats no date. */
  private day = "";
  private dayStart = 0;
  private dayEnd = 0;
  private pending: PendingFlush | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private flushing: Promise<void> | undefined;
  /** Requests recorded since start (the benchmark and tests compare it with the table). */
  recorded = 0;
  /** Statements its flushes sent: the background share of Database.queryCount (the benchmark subtracts it). */
  queries = 0;

  constructor(
    private readonly db: Db,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly flushMs: number,
    /** Connections a flush may use at once (Postgres' pool; PGlite has one). */
    private readonly parallel = 1,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.flush().catch(() => {}), this.flushMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Hot path: a few map operations, no I/O. */
  record(keyId: string, accountId: string, environment: "live" | "test", endpoint: string, status: number, latencyMs: number, count = 1): void {
    const now = this.clock.now();
    if (now < this.dayStart || now >= this.dayEnd) {
      this.dayStart = now - (now % 86_400_000);
      this.dayEnd = this.dayStart + 86_400_000;
      this.day = new Date(this.dayStart).toISOString().slice(0, 10);
    }
    const day = this.day;
    let keys = this.current.get(day);
    if (!keys) this.current.set(day, (keys = new Map()));
    let endpoints = keys.get(keyId);
    if (!endpoints) keys.set(keyId, (endpoints = new Map()));
    let row = endpoints.get(endpoint);
    if (!row) {
      row = { keyId, accountId, environment, day, endpoint, successes: 0, errors: 0, latencySumMs: 0, latencyBuckets: new Array(BUCKET_COUNT).fill(0), lastUsedAt: now };
      endpoints.set(endpoint, row);
      this.rowCount++;
    }
    if (status < 400) row.successes += count;
    else row.errors += count;
    row.latencySumMs += latencyMs * count;
    row.latencyBuckets[bucketOf(latencyMs)]! += count;
    if (now > row.lastUsedAt) row.lastUsedAt = now;
    this.recorded += count;
  }

  private *rows(): Generator<UsageRow> {
    for (const keys of this.current.values()) for (const endpoints of keys.values()) yield* endpoints.values();
  }

  /**
   * The current rows in one global order, (key, day, endpoint), so concurrent flushes of two
   * instances lock rows in the same order and cannot deadlock. The key ids are sorted once
   * and the few days and endpoints under them: sorting the rows with a three-field
   * comparison took 23-62 ms for 30,000, on the flush's path before any statement is sent.
   */
  private sortedRows(): UsageRow[] {
    const days = [...this.current.keys()].sort();
    const keyIds = [...new Set(days.flatMap((d) => [...this.current.get(d)!.keys()]))].sort();
    const rows: UsageRow[] = [];
    for (const keyId of keyIds) {
      for (const day of days) {
        const endpoints = this.current.get(day)!.get(keyId);
        if (endpoints === undefined) continue;
        for (const endpoint of [...endpoints.keys()].sort()) rows.push(endpoints.get(endpoint)!);
      }
    }
    return rows;
  }

  /** Rows not yet in the database (in the current map or a failed batch). */
  unflushed(): number {
    let n = 0;
    for (const r of this.rows()) n += r.successes + r.errors;
    for (const r of this.pending?.rows ?? []) n += r.successes + r.errors;
    return n;
  }

  /** Flushes now; concurrent calls share one run. Throws when the database refuses (the batch is kept). */
  flush(): Promise<void> {
    this.flushing ??= this.runFlush().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  private async runFlush(): Promise<void> {
    if (this.pending) {
      await this.write(this.pending);
      this.pending = undefined;
    }
    if (this.rowCount === 0) return;
    const rows = this.sortedRows();
    this.pending = { flushId: newId("flush"), rows };
    this.current = new Map();
    this.rowCount = 0;
    await this.write(this.pending);
    this.pending = undefined;
  }

  /**
   * Writes a batch: its rows in parts on up to `parallel` connections at once, each part in
   * its own transaction that first claims its ledger id (`<flush id>.<part>`), so a retried
   * batch re-applies only the parts that did not commit. Parts hold disjoint rows, each
   * locked in the global row order, so neither they nor other instances' flushes can
   * deadlock. A key's last use travels in its rows (`last_used_at`, the latest wins): writing
   * it to the key's own row as well cost the flush that inserts a day's rows ~80 ms more for
   * 10,000 keys (their updates competing with the parts for the cores).
   */
  private async write(batch: PendingFlush): Promise<void> {
    const started = performance.now();
    const parts = this.split(batch.rows);
    const writes = parts.map((rows, i) => this.writePart(`${batch.flushId}.${i}`, rows));
    // A database that does not answer (a black-holed connection: the driver waits to
    // reconnect rather than fail) must not hold the batch forever: past the limit the attempt
    // counts as failed and the batch is kept. Should the abandoned attempt still commit, its
    // ledger rows make the retry of those parts a no-op.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), this.timeLimitMs())));
    const outcome = await Promise.race([Promise.allSettled(writes), timedOut]);
    clearTimeout(timer);
    const err =
      outcome === "timeout"
        ? new Error(`the database did not answer within ${this.timeLimitMs()} ms`)
        : (outcome.find((r): r is PromiseRejectedResult => r.status === "rejected")?.reason as Error | undefined);
    if (err) {
      this.log.warn("usage flush failed; the batch is kept and retried", { flushId: batch.flushId, rows: batch.rows.length, error: err?.message });
      throw err;
    }
    if (batch.rows.length) {
      this.log.debug("usage flushed", { flushId: batch.flushId, rows: batch.rows.length, parts: parts.length, ms: Math.round(performance.now() - started) });
    }
  }

  /** Sorted items in contiguous parts of at least MIN_ROWS_PER_PART, at most `parallel` of them (none for none). */
  private split<T>(items: T[]): T[][] {
    const count = Math.max(1, Math.min(this.parallel, Math.floor(items.length / MIN_ROWS_PER_PART)));
    const size = Math.ceil(items.length / count);
    const parts: T[][] = [];
    for (let i = 0; i < items.length; i += size) parts.push(items.slice(i, i + size));
    return parts;
  }

  /** How long one flush attempt may take: twice the interval, between 1 s and 60 s. */
  private timeLimitMs(): number {
    return Math.min(60_000, Math.max(1_000, 2 * this.flushMs));
  }

  private writePart(ledgerId: string, rows: UsageRow[]): Promise<void> {
    return this.db.transaction(async (tx) => {
      this.queries++;
      const [claimed] = await tx
        .insert(usageFlushes)
        .values({ flushId: ledgerId, rows: rows.length, appliedAt: new Date(this.clock.now()) })
        .onConflictDoNothing()
        .returning({ flushId: usageFlushes.flushId });
      // Already applied by an attempt whose answer was lost: adding again would double count.
      if (!claimed) return;
      for (let i = 0; i < rows.length; i += ROWS_PER_STATEMENT) {
        this.queries++;
        await tx.execute(upsertRows(rows.slice(i, i + ROWS_PER_STATEMENT)));
      }
    });
  }
}

/**
 * One upsert for many rows, sent as lines of tab-separated fields (rowLines) that the server
 * splits, in order (`with ordinality`), so rows are locked in the sorted order whatever the
 * plan.
 */
function upsertRows(rows: UsageRow[]) {
  const field = (n: number) => sql.raw(`split_part(line, E'\\t', ${n})`);
  return sql`
    insert into ${keyUsage} (key_id, account_id, day, endpoint, environment, successes, errors, latency_sum_ms, latency_buckets, last_used_at)
    select ${field(1)}, ${field(2)}, ${field(3)}::date, ${field(4)}, ${field(5)}, ${field(6)}::bigint, ${field(7)}::bigint, ${field(8)}::float8, ${field(9)}::bigint[],
           to_timestamp(${field(10)}::float8 / 1000)
    from string_to_table(${rowLines(rows)}, E'\n')
      with ordinality as v(line, n)
    order by n
    on conflict (key_id, day, endpoint) do update set
      successes = ${keyUsage.successes} + excluded.successes,
      errors = ${keyUsage.errors} + excluded.errors,
      latency_sum_ms = ${keyUsage.latencySumMs} + excluded.latency_sum_ms,
      latency_buckets = ${ADD_BUCKETS},
      last_used_at = greatest(${keyUsage.lastUsedAt}, excluded.last_used_at)`;
}

/**
 * Rows as one text: a line per row, fields separated by tabs, in the order upsertRows
 * reads them. postgres.js serialising one array parameter per column cost this thread 55-60
 * ms of CPU per 30,000 rows and the statement 140 ms; one text split by the server
 * (`string_to_table`, `split_part`) ~20 ms and 100 ms (measured here). The text fields are
 * ids and route templates (the day and environment are the meter's own); one holding a tab
 * or a line break would shift the others, so it is refused.
 */
function rowLines(rows: UsageRow[]): string {
  const lines = new Array<string>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (SEPARATORS.test(r.keyId) || SEPARATORS.test(r.accountId) || SEPARATORS.test(r.endpoint)) {
      throw new Error(`a usage row's id or endpoint holds a tab or a line break: ${JSON.stringify([r.keyId, r.accountId, r.endpoint])}`);
    }
    const b = r.latencyBuckets;
    let buckets = String(b[0]);
    for (let j = 1; j < b.length; j++) buckets += "," + b[j];
    lines[i] = `${r.keyId}\t${r.accountId}\t${r.day}\t${r.endpoint}\t${r.environment}\t${r.successes}\t${r.errors}\t${r.latencySumMs}\t{${buckets}}\t${r.lastUsedAt}`;
  }
  return lines.join("\n");
}

const SEPARATORS = /[\t\n\r]/;

/**
 * Element-wise sum of the stored and the incoming histogram, written out per bucket
 * (`array[b[1] + e[1], …]`): a plain expression, where unnesting both arrays in a subquery
 * per row cost a third of an update flush.
 */
const ADD_BUCKETS = sql.raw(
  `array[${Array.from({ length: BUCKET_COUNT }, (_, i) => `coalesce(key_usage.latency_buckets[${i + 1}], 0) + coalesce(excluded.latency_buckets[${i + 1}], 0)`).join(", ")}]`,
);
