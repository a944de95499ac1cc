import type { QueryOptions, Results } from "@electric-sql/pglite";
import { pgliteAssetPaths, pgliteWorkerUrl } from "../embedded.ts";
import type { WorkerReply, WorkerRequest } from "./pglite-protocol.ts";

/** What drizzle's PGlite driver calls on its client, and on a transaction's. */
export interface PgliteQueryable {
  query<T>(sql: string, params?: unknown[], options?: QueryOptions): Promise<Results<T>>;
}

/** What drizzle's PGlite driver calls on its client: the worker's, or a test's lease of one. */
export interface PgliteConnection extends PgliteQueryable {
  transaction<T>(fn: (tx: PgliteQueryable) => Promise<T>): Promise<T>;
}

export interface OpenOptions {
  /** A `dump()` to start an empty directory from, instead of initdb (seconds). */
  loadDataDir?: Blob;
  /** postgresql.conf lines, e.g. `shared_buffers=4MB` for the many small databases of tests. */
  settings?: string[];
}

type Pending = { resolve: (value: unknown) => void; reject: (err: Error) => void };
/** A request before `send` numbers it. */
type Unnumbered<R> = R extends unknown ? Omit<R, "id"> : never;
/** Bun's Worker has Node's ref/unref; the DOM typing of the global does not. */
type BunWorker = Worker & { ref(): void; unref(): void };

/** Workers are not started more often than this after failures. */
const RESTART_INTERVAL_MS = 1000;

/**
 * The embedded database in a worker thread. PGlite in the serving thread cost the gateway
 * 17-73% more CPU a request even while idle, and its p99: its ~450 MB of WebAssembly memory
 * counts toward the thread's garbage-collected heap, so collections grew rarer and far
 * longer (test/bench/README.md). In a worker it has a heap of its own.
 *
 * `@electric-sql/pglite/worker` needs `navigator.locks`, which Bun lacks, so this is the
 * small part drizzle's PGlite driver uses — `query` and `transaction` — with PGlite's own
 * semantics: one thing at a time, a transaction holding the database until it ends (a query
 * outside it waits).
 */
export class PgliteWorkerClient implements PgliteConnection {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** The tail of the queue of exclusive operations. */
  private tail: Promise<unknown> = Promise.resolve();
  private worker!: BunWorker;
  /** Why the current worker cannot answer (it failed or stopped), until a new one is open. */
  private failure: Error | undefined;
  /** Set when close() starts: no worker is started after it. */
  private closing = false;
  /** No new worker is started before this time (performance.now()): at most one a second. */
  private retryAt = 0;
  /** Set once a worker has opened the database: a restart opens what is in the directory. */
  private opened = false;
  /** Workers started after one failed (for tests and diagnostics). */
  restarts = 0;

  private constructor(
    private readonly dataDir: string | undefined,
    private readonly opts: OpenOptions,
  ) {}

  /** Starts the worker and opens the database in `dataDir` (in memory when undefined). */
  static async open(dataDir: string | undefined, opts: OpenOptions = {}): Promise<PgliteWorkerClient> {
    const client = new PgliteWorkerClient(dataDir, opts);
    await client.start();
    return client;
  }

  /** The whole data directory as an uncompressed tar file, for `open(…, { loadDataDir })`. */
  dump(): Promise<Blob> {
    return this.exclusive(() => this.send({ op: "dump" }) as Promise<Blob>);
  }

  /** A new worker with the database open in it; on failure it is stopped and the error thrown. */
  private async start(): Promise<void> {
    const worker = new Worker(pgliteWorkerUrl()) as BunWorker;
    // Events of a worker that has been replaced are not this client's any more.
    worker.addEventListener("message", (event: MessageEvent<WorkerReply>) => worker === this.worker && this.settle(event.data));
    worker.addEventListener("error", (event: ErrorEvent) => worker === this.worker && this.fail(new Error(`the embedded database's worker failed: ${event.message}`)));
    worker.addEventListener("close", () => worker === this.worker && this.fail(new Error("the embedded database's worker stopped")));
    // An idle database does not keep the process alive; a question in flight does (see send).
    worker.unref();
    this.worker = worker;
    this.failure = undefined;
    try {
      // After a restart the directory holds the data: it is never loaded over again.
      const loadDataDir = this.opened ? undefined : this.opts.loadDataDir;
      await this.send({ op: "open", dataDir: this.dataDir, assets: pgliteAssetPaths(), loadDataDir, settings: this.opts.settings });
      this.opened = true;
    } catch (err) {
      this.failure = err as Error;
      worker.terminate();
      throw err;
    }
  }

  /**
   * After the worker failed (a WebAssembly abort, say), the next operation starts a new one on
   * the same data directory — Postgres recovers it as after a crash — so the process keeps
   * serving instead of failing every query until it is restarted. The operations in flight
   * when it failed have failed. A new worker is started at most once a second (until then
   * operations fail with the last error); an in-memory database is gone with its worker and
   * is not restarted.
   */
  private async revive(): Promise<void> {
    if (this.failure === undefined || this.closing || this.dataDir === undefined) return;
    if (performance.now() < this.retryAt) return;
    this.retryAt = performance.now() + RESTART_INTERVAL_MS;
    this.worker.terminate();
    await this.start();
    this.restarts++;
  }

  query<T>(sql: string, params?: unknown[], options?: QueryOptions): Promise<Results<T>> {
    return this.exclusive(() => this.run<T>(sql, params, options));
  }

  /**
   * BEGIN, the callback with a client of its own, COMMIT — or ROLLBACK when it throws.
   * Postgres answers COMMIT of a transaction in which a statement failed with ROLLBACK: that
   * throws too, as in PGlite.
   */
  transaction<T>(fn: (tx: PgliteQueryable) => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      await this.run("BEGIN");
      let open = true;
      const tx: PgliteQueryable = {
        query: <R>(sql: string, params?: unknown[], options?: QueryOptions) => {
          if (!open) return Promise.reject(new Error("Transaction is closed"));
          return this.run<R>(sql, params, options);
        },
      };
      try {
        const result = await fn(tx);
        open = false;
        const commit = await this.run("COMMIT");
        if (commit.command === "ROLLBACK") throw new Error("the transaction was rolled back: a statement in it failed");
        return result;
      } catch (err) {
        if (open) {
          open = false;
          await this.run("ROLLBACK").catch(() => {});
        }
        throw err;
      }
    });
  }

  async close(): Promise<void> {
    this.closing = true;
    try {
      await this.exclusive(() => this.send({ op: "close" }));
    } finally {
      // Replaces any earlier failure: from now on every operation is told the database is closed.
      this.failure = undefined;
      this.fail(new Error("the embedded database is closed"));
      this.worker.terminate();
    }
  }

  private exclusive<T>(op: () => Promise<T>): Promise<T> {
    const run = () => this.revive().then(op);
    const result = this.tail.then(run, run);
    this.tail = result.catch(() => {});
    return result;
  }

  private run<T>(sql: string, params?: unknown[], options?: QueryOptions): Promise<Results<T>> {
    return this.send({
      op: "query",
      sql,
      params,
      rowMode: options?.rowMode,
      // drizzle's parsers keep dates, timestamps and intervals as Postgres' text: the same
      // types are kept as text in the worker.
      textTypes: options?.parsers ? Object.keys(options.parsers).map(Number) : [],
    }) as Promise<Results<T>>;
  }

  private send(req: Unnumbered<WorkerRequest>): Promise<unknown> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ ...req, id } as WorkerRequest);
    });
  }

  private settle(reply: WorkerReply): void {
    const waiting = this.pending.get(reply.id);
    if (!waiting) return;
    this.pending.delete(reply.id);
    if (this.pending.size === 0) this.worker.unref();
    if ("error" in reply) waiting.reject(rebuildError(reply.error));
    else waiting.resolve(reply.result);
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const waiting of this.pending.values()) waiting.reject(err);
    this.pending.clear();
    this.worker.unref();
  }
}

/** An Error carrying the database error's fields (`code`, `constraint`, `detail` …), thrown from the caller's stack. */
function rebuildError(fields: Record<string, unknown>): Error {
  const err = new Error(String(fields.message));
  Object.assign(err, fields);
  return err;
}
