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
import type { ProductRegistry } from "./products/registry.ts";
import type { Mailer } from "./email/outbox.ts";

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
  /** The registered products (a team's own APIs), compiled in memory and kept in step across instances. */
  products: ProductRegistry;
  /** Where mail goes (SMTP, or .eml files in DATA_DIR/mail/) and what was sent. */
  mailer: Mailer;
}
