import { createApp } from "../../src/app.ts";
import type { Config } from "../../src/config.ts";
import type { Clock } from "../../src/ops/clock.ts";
import { createLogger } from "../../src/ops/log.ts";
import { assembleDeps, type OwnedDeps } from "../../src/runtime.ts";
import { argon2id } from "../../src/accounts/passwords.ts";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileTransport, type MailTransport } from "../../src/email/transport.ts";
import { openPostgres, type Database } from "../../src/db/client.ts";
import type { KeyCacheOptions } from "../../src/keys/cache.ts";
import { RedisState } from "../../src/state/redis.ts";
import type { SharedState } from "../../src/state/types.ts";
import { freshDatabase, freshState, testConfig, type Backend } from "./backends.ts";
import { JSON_TYPES, mediaType, openApiChecker, problemTypeDrift, type OpenApiChecker } from "./openapi.ts";

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
  /**
   * A request through `app.handle`. A JSON answer to a /v1 or /api request is checked
   * against /openapi.json: one the document does not describe (its status, content type or
   * body) rejects, naming the request and the drift, so the test that made it fails. So does
   * any problem+json answer whose `type` is not `<the request's origin>/docs/errors#<code>`.
   */
  req(path: string, init?: RequestInit & { json?: unknown }): Promise<Response>;
  close(): Promise<void>;
}

/** The requests whose answers /openapi.json describes. */
const DOCUMENTED = /^\/(v1|api)\//;

/**
 * The origin a request reached as its client sees it: the URL's, or behind a trusted proxy
 * the X-Forwarded-Proto and X-Forwarded-Host it sent (tests send well-formed ones; hostile
 * values are test/plugins/problem-type.test.ts's).
 */
function reachedOrigin(request: Request, trustProxy: boolean): string {
  const url = new URL(request.url);
  if (!trustProxy) return url.origin;
  const proto = request.headers.get("x-forwarded-proto") ?? url.protocol.slice(0, -1);
  return `${proto}://${request.headers.get("x-forwarded-host") ?? url.host}`;
}

/** A Keyport app on a fresh database and state of the given backend. */
export interface HarnessOptions {
  clock?: Clock;
  config?: Partial<Config>;
  /** Another harness whose database and Redis prefix this one shares: a second instance. */
  share?: Harness;
  keyCache?: KeyCacheOptions;
  /** Where mail goes: a test SMTP server's transport (test/support/smtp.ts); by default .eml files in a temporary folder. */
  mailTransport?: MailTransport;
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
  const mailTransport = opts.mailTransport ?? fileTransport(mkdtempSync(join(tmpdir(), "keyport-test-mail-")), log);
  const deps = await assembleDeps(config, database, state, { clock: opts.clock, log, keyCache: opts.keyCache, passwords: TEST_PASSWORDS, mailTransport });
  const app = createApp(deps);
  // The app's own document, read on the first request it describes, and again when the
  // registered products change (their specs are part of it).
  let docs: Promise<OpenApiChecker> | undefined;
  let docsFor = -1;
  const checker = () => {
    if (docsFor !== deps.products.version) {
      docsFor = deps.products.version;
      docs = undefined;
    }
    return (docs ??= app
      .handle(new Request("http://localhost/openapi.json"))
      .then((res) => res.json())
      .then(openApiChecker));
  };
  return {
    deps,
    app,
    logs,
    databaseUrl: (database as Database & { url?: string }).url ?? opts.share?.databaseUrl,
    redisPrefix: prefix,
    async req(path, init = {}) {
      const { json, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (json !== undefined) headers.set("content-type", "application/json");
      const request = new Request(`http://localhost${path}`, { ...rest, headers, body: json !== undefined ? JSON.stringify(json) : rest.body });
      const res = await app.handle(request);
      const type = mediaType(res.headers.get("content-type"));
      const problem = type === "application/problem+json";
      if (!problem && !(DOCUMENTED.test(path) && JSON_TYPES.includes(type))) return res;
      // A HEAD answer has no body; a compressed one (a product's upstream chose it) is not text.
      const encoding = res.headers.get("content-encoding");
      if (request.method === "HEAD" || (encoding !== null && encoding !== "identity")) return res;
      const text = await res.clone().text();
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        throw new Error(`${request.method} ${path} → ${res.status}: the ${type} answer is not JSON: ${text.slice(0, 500)}`);
      }
      const wrongType = problem ? problemTypeDrift(reachedOrigin(request, config.trustProxy), body) : undefined;
      if (wrongType) throw new Error(`${request.method} ${path} → ${res.status}: ${wrongType}`);
      if (!DOCUMENTED.test(path)) return res;
      const drift = (await checker()).check(request.method, new URL(request.url).pathname, res.status, res.headers.get("content-type") ?? "", body);
      if (drift) throw new Error(`The answer drifted from /openapi.json: ${drift}`);
      return res;
    },
    close: () => deps.close(),
  };
}
