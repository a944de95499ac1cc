import type { Config } from "./config.ts";
import { openDatabase, type Database } from "./db/client.ts";
import type { Deps } from "./deps.ts";
import { systemClock, type Clock } from "./ops/clock.ts";
import { createLogger, type Logger } from "./ops/log.ts";
import { createMetrics } from "./ops/metrics.ts";
import { Shutdown } from "./ops/shutdown.ts";
import { openState } from "./state/index.ts";
import type { SharedState } from "./state/types.ts";

export type OwnedDeps = Deps & { close(): Promise<void> };

/** Deps over an open database and state; `close` runs the shutdown hooks, then closes both. */
export function assembleDeps(config: Config, database: Database, state: SharedState, opts: { clock?: Clock; log?: Logger } = {}): OwnedDeps {
  const log = opts.log ?? createLogger(config.logLevel);
  const shutdown = new Shutdown();
  const deps: Deps = {
    config,
    database,
    db: database.db,
    state,
    clock: opts.clock ?? systemClock,
    log,
    metrics: createMetrics(),
    shutdown,
  };
  let closed: Promise<void> | undefined;
  return {
    ...deps,
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
 * Opens the database (migrating it) and the shared state for a config. The CLI and the
 * server start here.
 */
export async function buildDeps(config: Config, opts: { clock?: Clock; log?: Logger } = {}): Promise<OwnedDeps> {
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  try {
    await database.migrate();
    const state = await openState({ redisUrl: config.redisUrl, clock: opts.clock });
    return assembleDeps(config, database, state, opts);
  } catch (err) {
    await database.close().catch(() => {});
    throw err;
  }
}
