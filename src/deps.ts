import type { Passwords } from "./accounts/passwords.ts";
import type { Catalog } from "./billing/plans.ts";
import type { Config } from "./config.ts";
import type { Database, Db } from "./db/client.ts";
import type { Clock } from "./ops/clock.ts";
import type { Logger } from "./ops/log.ts";
import type { Metrics } from "./ops/metrics.ts";
import type { Shutdown } from "./ops/shutdown.ts";
import type { SharedState } from "./state/types.ts";
import type { KeyCache } from "./keys/cache.ts";
import type { UsageMeter } from "./usage/meter.ts";

/** Everything a service needs, passed in: the CLI, the API and tests build it the same way. */
export interface Deps {
  config: Config;
  database: Database;
  db: Db;
  state: SharedState;
  clock: Clock;
  passwords: Passwords;
  log: Logger;
  metrics: Metrics;
  shutdown: Shutdown;
  keyCache: KeyCache;
  meter: UsageMeter;
  /** The products and plans (the plans file), also seeded into the `plans` table. */
  catalog: Catalog;
}
