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

/** A batch taken from the meter: its rows (the swapped-out map) and, once built, its parts' texts. */
interface PendingFlush {
  flushId: string;
  source: RowMap;
  rowCount: number;
  /** Built once (in slices) and kept for a retry, which must send the same parts under the same ledger ids. */
  parts: FlushPart[] | undefined;
}

/** One part of a batch: its rows as lines (rowLine), sent in one transaction under ledger id `<flush id>.<index>`. */
interface FlushPart {
  ledgerId: string;
  rows: number;
  text: string;
}

/** Rows by UTC day, key id, endpoint. */
type RowMap = Map<string, Map<string, Map<string, UsageRow>>>;

/**
 * JavaScript the flush runs on the serving thread before it yields to the event loop (ms): the
 * lines of 30,000 rows take tens of milliseconds, built in slices of about this much with a
 * macrotask between, so answers go out meanwhile.
 */
const SLICE_MS = 1;
/** Rows built between two looks at the clock. */
const ROWS_PER_CHECK = 64;
/** Rows built in one slice at most, however fast: a batch of n rows yields at least n / ROWS_PER_SLICE times. */
export const ROWS_PER_SLICE = 2048;

const noop = () => {};

/** Lets the event loop run (I/O, timers, other requests) before the flush goes on. */
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Rows per part at most: a part's text stays a few megabytes (≈120 bytes a row). */
const MAX_ROWS_PER_PART = 50_000;
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
  private current: RowMap = new Map();
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
  /** Batches written and their rows (keyport_usage_flushes_total, keyport_usage_flushed_rows_total). */
  flushes = 0;
  flushedRows = 0;
  /** The last batch written: when it began and ended (epoch ms) and its rows (the keyport_usage_last_flush_* gauges). */
  lastFlush: { startedAt: number; endedAt: number; rows: number } | undefined;

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

  /** Requests not yet in the database (in the current map or a batch being written or kept after a failure). */
  unflushed(): number {
    let n = 0;
    for (const r of rowsOf(this.current)) n += r.successes + r.errors;
    if (this.pending) for (const r of rowsOf(this.pending.source)) n += r.successes + r.errors;
    return n;
  }

  /** Flushes now; concurrent calls share one run. Throws when the database refuses (the batch is kept). */
  flush(): Promise<void> {
    this.flushing ??= this.runFlush().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  /**
   * Everything recorded so far into the database (the last flush, at shutdown): a flush
   * already under way took only the rows recorded before it began, so it is awaited and then
   * the rest flushed. flush() alone would share that run and leave the later rows behind.
   */
  async drain(): Promise<void> {
    if (this.flushing) await this.flushing.catch(() => {});
    await this.flush();
  }

  private async runFlush(): Promise<void> {
    if (this.pending) {
      await this.write(this.pending);
      this.pending = undefined;
    }
    if (this.rowCount === 0) return;
    this.pending = { flushId: newId("flush"), source: this.current, rowCount: this.rowCount, parts: undefined };
    this.current = new Map();
    this.rowCount = 0;
    await this.write(this.pending);
    this.pending = undefined;
  }

  /**
   * Writes a batch: its rows in parts on up to `parallel` connections at once, each part in
   * its own transaction that first claims its ledger id (`<flush id>.<part>`), so a retried
   * batch re-applies only the parts that did not commit. Parts hold disjoint rows, each
   * locked in the global row order (buildParts), so neither they nor other instances'
   * flushes can deadlock. A part is sent
   * as soon as its text is built, while the next is built in slices between the event loop's
   * other work. A key's last use travels in its rows (`last_used_at`, the latest wins):
   * writing it to the key's own row as well cost the flush that inserts a day's rows ~80 ms
   * more for 10,000 keys (their updates competing with the parts for the cores).
   */
  private async write(batch: PendingFlush): Promise<void> {
    const startedAt = Date.now();
    const writes: Promise<void>[] = [];
    // At most `parallel` parts in flight: the pool's other connections stay free for key lookups.
    const send = (part: FlushPart) => {
      const i = writes.length;
      const w = i < this.parallel ? this.writePart(part) : writes[i - this.parallel]!.then(noop, noop).then(() => this.writePart(part));
      // Observed by allSettled below; meanwhile a failure is not an unhandled rejection.
      w.catch(noop);
      writes.push(w);
    };
    if (batch.parts !== undefined) {
      for (const part of batch.parts) send(part);
    } else {
      const built: FlushPart[] = [];
      try {
        for await (const part of this.buildParts(batch)) {
          built.push(part);
          send(part);
        }
      } catch (err) {
        await Promise.allSettled(writes);
        throw err;
      }
      batch.parts = built;
    }
    const parts = batch.parts;
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
      this.log.warn("usage flush failed; the batch is kept and retried", { flushId: batch.flushId, rows: batch.rowCount, error: err?.message });
      throw err;
    }
    if (batch.rowCount) {
      this.flushes++;
      this.flushedRows += batch.rowCount;
      this.lastFlush = { startedAt, endedAt: Date.now(), rows: batch.rowCount };
      this.log.debug("usage flushed", { flushId: batch.flushId, rows: batch.rowCount, parts: parts.length, ms: this.lastFlush.endedAt - startedAt });
    }
  }

  /**
   * The batch's rows in one global order, (key, day, endpoint), so concurrent flushes of two
   * instances lock rows in the same order and cannot deadlock; in contiguous parts of at
   * least MIN_ROWS_PER_PART, at most `parallel` of them (more only past MAX_ROWS_PER_PART
   * each). The key ids are sorted once (sortInSlices) and the few days and endpoints under
   * each as the lines are built. Sorting and lines run in slices of about SLICE_MS, yielding
   * to the event loop between: 30,000 rows in one go held the serving thread for 40-170 ms
   * here. (Sorting in the statement instead, `order by … collate "C"`, cost the server 4-13%
   * more CPU: 260 vs 230 ms inserting 30,000 rows, 280 vs 270 updating them, medians of 7.)
   */
  private async *buildParts(batch: PendingFlush): AsyncGenerator<FlushPart> {
    const count = Math.max(1, Math.ceil(batch.rowCount / MAX_ROWS_PER_PART), Math.min(this.parallel, Math.floor(batch.rowCount / MIN_ROWS_PER_PART)));
    const size = Math.ceil(batch.rowCount / count);
    const days = [...batch.source.keys()].sort();
    const ids = new Set<string>();
    for (const day of days) for (const keyId of batch.source.get(day)!.keys()) ids.add(keyId);
    const keyIds = await sortInSlices([...ids]);
    // A slice's lines are joined before the yield: joining a part's 7,500 lines at once (each
    // a rope of its fields, flattened by the join) was itself 10-15 ms of the serving thread.
    let chunks: string[] = [];
    let lines: string[] = [];
    let rows = 0;
    let index = 0;
    let sliceStart = performance.now();
    for (const row of orderedRows(batch.source, keyIds, days)) {
      lines.push(rowLine(row));
      if (++rows === size) {
        chunks.push(lines.join("\n"));
        yield { ledgerId: `${batch.flushId}.${index++}`, rows, text: chunks.join("\n") };
        chunks = [];
        lines = [];
        rows = 0;
      } else if (lines.length % ROWS_PER_CHECK === 0 && (lines.length === ROWS_PER_SLICE || performance.now() - sliceStart >= SLICE_MS)) {
        chunks.push(lines.join("\n"));
        lines = [];
        await yieldToLoop();
        sliceStart = performance.now();
      }
    }
    if (rows > 0) {
      if (lines.length > 0) chunks.push(lines.join("\n"));
      yield { ledgerId: `${batch.flushId}.${index}`, rows, text: chunks.join("\n") };
    }
  }

  /** How long one flush attempt may take: twice the interval, between 1 s and 60 s. */
  private timeLimitMs(): number {
    return Math.min(60_000, Math.max(1_000, 2 * this.flushMs));
  }

  private writePart(part: FlushPart): Promise<void> {
    return this.db.transaction(async (tx) => {
      this.queries++;
      const [claimed] = await tx
        .insert(usageFlushes)
        .values({ flushId: part.ledgerId, rows: part.rows, appliedAt: new Date(this.clock.now()) })
        .onConflictDoNothing()
        .returning({ flushId: usageFlushes.flushId });
      // Already applied by an attempt whose answer was lost: adding again would double count.
      if (!claimed) return;
      this.queries++;
      await tx.execute(upsertRows(part.text));
    });
  }
}

function* rowsOf(map: RowMap): Generator<UsageRow> {
  for (const keys of map.values()) for (const endpoints of keys.values()) yield* endpoints.values();
}

/** The rows of `map` by key (in the order of `keyIds`), then day (`days`, sorted), then endpoint. */
function* orderedRows(map: RowMap, keyIds: string[], days: string[]): Generator<UsageRow> {
  for (const keyId of keyIds) {
    for (const day of days) {
      const endpoints = map.get(day)!.get(keyId);
      if (endpoints === undefined) continue;
      if (endpoints.size === 1) yield* endpoints.values();
      else for (const endpoint of [...endpoints.keys()].sort()) yield endpoints.get(endpoint)!;
    }
  }
}

/** Strings per run sorted at once by sortInSlices (a fraction of a millisecond). */
const SORT_RUN = 1024;

/**
 * The strings in code-unit order (Array.prototype.sort's), in slices between which the event
 * loop runs: runs of SORT_RUN sorted natively, then merged pairwise. Sorting 10,000 key ids
 * at once took 1.3-11 ms here.
 */
export async function sortInSlices(items: string[]): Promise<string[]> {
  let sliceStart = performance.now();
  const pause = async () => {
    if (performance.now() - sliceStart < SLICE_MS) return;
    await yieldToLoop();
    sliceStart = performance.now();
  };
  let runs: string[][] = [];
  for (let i = 0; i < items.length; i += SORT_RUN) {
    runs.push(items.slice(i, i + SORT_RUN).sort());
    await pause();
  }
  while (runs.length > 1) {
    const merged: string[][] = [];
    for (let i = 0; i < runs.length; i += 2) {
      const a = runs[i]!;
      const b = runs[i + 1];
      if (b === undefined) {
        merged.push(a);
        continue;
      }
      const out = new Array<string>(a.length + b.length);
      let x = 0;
      let y = 0;
      let k = 0;
      while (x < a.length && y < b.length) {
        out[k++] = a[x]! <= b[y]! ? a[x++]! : b[y++]!;
        if ((k & (SORT_RUN - 1)) === 0) await pause();
      }
      while (x < a.length) out[k++] = a[x++]!;
      while (y < b.length) out[k++] = b[y++]!;
      merged.push(out);
    }
    runs = merged;
  }
  return runs[0] ?? [];
}

/**
 * One upsert for many rows, sent as lines of tab-separated fields (rowLine) that the server
 * splits, in order (`with ordinality`: the planner knows the function's rows come ordered by
 * it, so no sort runs), so rows are locked in the sorted order whatever the plan.
 */
function upsertRows(text: string) {
  const field = (n: number) => sql.raw(`split_part(line, E'\\t', ${n})`);
  return sql`
    insert into ${keyUsage} (key_id, account_id, day, endpoint, environment, successes, errors, latency_sum_ms, latency_buckets, last_used_at)
    select ${field(1)}, ${field(2)}, ${field(3)}::date, ${field(4)}, ${field(5)}, ${field(6)}::bigint, ${field(7)}::bigint, ${field(8)}::float8, ${field(9)}::bigint[],
           to_timestamp(${field(10)}::float8 / 1000)
    from string_to_table(${text}, E'\n')
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
 * A row as a line of tab-separated fields, in the order upsertRows reads them; a part's
 * lines travel as one text. postgres.js serialising one array parameter per column cost this
 * thread 55-60 ms of CPU per 30,000 rows and the statement 140 ms; one text split by the
 * server (`string_to_table`, `split_part`) ~20 ms and 100 ms (measured here). The text
 * fields are ids and route templates (the day and environment are the meter's own); one
 * holding a tab or a line break would shift the others, so it is refused.
 */
function rowLine(r: UsageRow): string {
  if (SEPARATORS.test(r.keyId) || SEPARATORS.test(r.accountId) || SEPARATORS.test(r.endpoint)) {
    throw new Error(`a usage row's id or endpoint holds a tab or a line break: ${JSON.stringify([r.keyId, r.accountId, r.endpoint])}`);
  }
  // One native join for the histogram: less garbage than a string per bucket (the flush's
  // collections are what remains of its pauses).
  return `${r.keyId}\t${r.accountId}\t${r.day}\t${r.endpoint}\t${r.environment}\t${r.successes}\t${r.errors}\t${r.latencySumMs}\t{${r.latencyBuckets.join(",")}}\t${r.lastUsedAt}`;
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
