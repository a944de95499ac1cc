import { createApp } from "../../src/app.ts";
import type { Config } from "../../src/config.ts";
import type { Clock } from "../../src/ops/clock.ts";
import { createLogger } from "../../src/ops/log.ts";
import { assembleDeps, type OwnedDeps } from "../../src/runtime.ts";
import { argon2id } from "../../src/accounts/passwords.ts";
import { randomBytes } from "node:crypto";
import { openPostgres, type Database } from "../../src/db/client.ts";
import type { KeyCacheOptions } from "../../src/keys/cache.ts";
import { RedisState } from "../../src/state/redis.ts";
import type { SharedState } from "../../src/state/types.ts";
import { freshDatabase, freshState, testConfig, type Backend } from "./backends.ts";

/**
 * Real argon2id at the least cost: tests create hundreds of accounts, and at the server's
 * cost each hash took 0.1-0.2 s of CPU. What the cost is does not change what is tested.
 */
export const TEST_PASSWORDS = argon2id({ memoryCost: 256, timeCost: 1 });

export interface Harness {
  deps: OwnedDeps;
  app: ReturnType<typeof createApp>;
  /** Log lines the app wrote (the secrets suite greps them). */
  logs: string[];
  databaseUrl?: string;
  redisPrefix?: string;
  req(path: string, init?: RequestInit & { json?: unknown }): Promise<Response>;
  close(): Promise<void>;
}

/** A Keyport app on a fresh database and state of the given backend. */
export interface HarnessOptions {
  clock?: Clock;
  config?: Partial<Config>;
  /** Another harness whose database and Redis prefix this one shares: a second instance. */
  share?: Harness;
  keyCache?: KeyCacheOptions;
}

export async function startHarness(backend: Backend, opts: HarnessOptions = {}): Promise<Harness> {
  const config: Config = { ...testConfig(), ...opts.config, databaseUrl: backend.databaseUrl, redisUrl: backend.redisUrl };
  let database: Database;
  let state: SharedState;
  let prefix: string | undefined;
  if (opts.share) {
    if (!opts.share.databaseUrl || !opts.share.redisPrefix || !backend.redisUrl) throw new Error("only service-mode harnesses can be shared");
    const own = await openPostgres(opts.share.databaseUrl);
    // The first harness drops the database; this one only closes its connections.
    database = own;
    prefix = opts.share.redisPrefix;
    state = await RedisState.connect(backend.redisUrl, { prefix });
  } else {
    const fresh = await freshDatabase(backend);
    database = fresh;
    prefix = backend.redisUrl ? `kptest:${randomBytes(5).toString("hex")}:` : undefined;
    state = await freshState(backend, opts.clock, prefix);
    (database as Database & { url?: string }).url = fresh.url;
  }
  const logs: string[] = [];
  const log = createLogger("debug", (line) => void logs.push(line));
  const deps = await assembleDeps(config, database, state, { clock: opts.clock, log, keyCache: opts.keyCache, passwords: TEST_PASSWORDS });
  const app = createApp(deps);
  return {
    deps,
    app,
    logs,
    databaseUrl: (database as Database & { url?: string }).url ?? opts.share?.databaseUrl,
    redisPrefix: prefix,
    req(path, init = {}) {
      const { json, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (json !== undefined) headers.set("content-type", "application/json");
      return app.handle(
        new Request(`http://localhost${path}`, { ...rest, headers, body: json !== undefined ? JSON.stringify(json) : rest.body }),
      );
    },
    close: () => deps.close(),
  };
}
