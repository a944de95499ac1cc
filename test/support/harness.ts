import { createApp } from "../../src/app.ts";
import type { Config } from "../../src/config.ts";
import type { Clock } from "../../src/ops/clock.ts";
import { createLogger } from "../../src/ops/log.ts";
import { assembleDeps, type OwnedDeps } from "../../src/runtime.ts";
import { freshDatabase, freshState, testConfig, type Backend } from "./backends.ts";

export interface Harness {
  deps: OwnedDeps;
  app: ReturnType<typeof createApp>;
  /** Log lines the app wrote (the secrets suite greps them). */
  logs: string[];
  req(path: string, init?: RequestInit & { json?: unknown }): Promise<Response>;
  close(): Promise<void>;
}

/** A Keyport app on a fresh database and state of the given backend. */
export async function startHarness(backend: Backend, opts: { clock?: Clock; config?: Partial<Config>; redisPrefix?: string } = {}): Promise<Harness> {
  const config: Config = { ...testConfig(), ...opts.config, databaseUrl: backend.databaseUrl, redisUrl: backend.redisUrl };
  const database = await freshDatabase(backend);
  const state = await freshState(backend, opts.clock, opts.redisPrefix);
  const logs: string[] = [];
  const log = createLogger("debug", (line) => void logs.push(line));
  const deps = assembleDeps(config, database, state, { clock: opts.clock, log });
  const app = createApp(deps);
  return {
    deps,
    app,
    logs,
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
