import { loadCatalog, seedPlans } from "./billing/plans.ts";
import { argon2id, type Passwords } from "./accounts/passwords.ts";
import type { Config } from "./config.ts";
import { openDatabase, type Database } from "./db/client.ts";
import type { Deps } from "./deps.ts";
import { systemClock, type Clock } from "./ops/clock.ts";
import { createLogger, type Logger } from "./ops/log.ts";
import { createMetrics } from "./ops/metrics.ts";
import { Shutdown } from "./ops/shutdown.ts";
import { openState } from "./state/index.ts";
import type { SharedState } from "./state/types.ts";
import { KeyCache, type KeyCacheOptions } from "./keys/cache.ts";
import { UsageMeter, flushConnections } from "./usage/meter.ts";
import { ProductRegistry } from "./products/registry.ts";
import { join } from "node:path";
import { queuedMail, type Mailer } from "./email/outbox.ts";
import { fileTransport, smtpTransport, type MailTransport } from "./email/transport.ts";

export type OwnedDeps = Deps & {
  /** Starts the timers a serving process runs (usage flush); tests drive them by hand. */
  startTimers(): void;
  close(): Promise<void>;
};

export interface AssembleOptions {
  clock?: Clock;
  log?: Logger;
  keyCache?: KeyCacheOptions;
  /** Where mail goes instead of what the config says (a test's SMTP server with its own CA). */
  mailTransport?: MailTransport;
  /** How often the products' epoch is polled (ms). */
  productsPollMs?: number;
  passwords?: Passwords;
}

/** Deps over an open database and state; `close` runs the shutdown hooks, then closes both. */
export async function assembleDeps(config: Config, database: Database, state: SharedState, opts: AssembleOptions = {}): Promise<OwnedDeps> {
  const log = opts.log ?? createLogger(config.logLevel, undefined, config.logBufferBytes);
  const clock = opts.clock ?? systemClock;
  const catalog = loadCatalog(config.plansFile);
  await seedPlans(database.db, catalog, new Date(clock.now()));
  const shutdown = new Shutdown();
  const keyCache = new KeyCache(database.db, state, clock, log, opts.keyCache);
  await keyCache.start();
  const meter = new UsageMeter(database.db, clock, log, config.usageFlushMs, flushConnections(database.kind));
  // Registered first so it runs first: the last flush needs the database still open.
  shutdown.register("usage flushed", async () => {
    meter.stop();
    await meter.drain();
  });
  shutdown.register("key cache stopped", () => keyCache.stop());
  const products = new ProductRegistry(database.db, state, config.secretKey, log, opts.productsPollMs);
  await products.start();
  shutdown.register("product registry stopped", () => products.stop());
  const transport = opts.mailTransport ?? (config.smtpUrl ? smtpTransport(config.smtpUrl) : fileTransport(join(config.dataDir, "mail"), log));
  const mailer: Mailer = { transport, sent: 0, failed: 0 };
  shutdown.register("mail transport closed", () => transport.close());
  const deps: Deps = {
    config,
    database,
    db: database.db,
    state,
    clock,
    passwords: opts.passwords ?? argon2id(),
    log,
    metrics: createMetrics({
      dbQueries: () => database.queryCount(),
      usageFlushQueries: () => meter.queries,
      usageFlushes: () => ({ flushes: meter.flushes, rows: meter.flushedRows, last: meter.lastFlush }),
      keyLookups: () => keyCache.misses,
      redisCommands: state.kind === "redis" ? () => state.commandCount() : undefined,
      mailSent: () => mailer.sent,
      mailFailed: () => mailer.failed,
      mailQueued: () => queuedMail(database.db),
    }),
    shutdown,
    keyCache,
    meter,
    catalog,
    products,
    mailer,
  };
  let closed: Promise<void> | undefined;
  return {
    ...deps,
    startTimers() {
      meter.start();
    },
    close() {
      closed ??= (async () => {
        await shutdown.run(log);
        await state.close();
        await database.close();
      })();
      return closed;
    },
  };
}

/**
 * Opens the shared state, then the database (migrating it), for a config. The CLI and the
 * server start here. Redis answers or refuses in milliseconds; opening the embedded database
 * takes about a second: an unreachable REDIS_URL is reported before that is spent.
 */
export async function buildDeps(config: Config, opts: AssembleOptions = {}): Promise<OwnedDeps> {
  const state = await openState({
    redisUrl: config.redisUrl,
    clock: opts.clock,
    policy: config.rateLimitOnRedisError,
    instanceCount: config.instanceCount,
    log: opts.log,
  });
  let database: Database | undefined;
  try {
    database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
    await database.migrate();
    return await assembleDeps(config, database, state, opts);
  } catch (err) {
    await database?.close().catch(() => {});
    await state.close().catch(() => {});
    throw err;
  }
}
