import { parseArgs } from "node:util";
import { ConfigError, ensureSecretKey, loadConfig, type Config } from "./config.ts";
import { createAccount, findAccountByEmail, parseNewAccount } from "./accounts/service.ts";
import { createKey, revokeKeyById } from "./keys/service.ts";
import { createKeySchema } from "./keys/model.ts";
import { parseInput } from "./errors.ts";
import { cliActor } from "./audit/service.ts";
import { DataDirLocked, DatabaseUnavailable, openDatabase } from "./db/client.ts";
import { createLogger } from "./ops/log.ts";
import { DomainError } from "./errors.ts";
import { STATUS } from "./plugins/problem.ts";
import { buildDeps } from "./runtime.ts";
import { RedisUnavailable } from "./state/redis.ts";

const USAGE = `usage: keyport [command]

commands:
  serve                                        start the server (the default)
  migrate                                      apply database migrations and exit
  account create --email E --password P [--admin]
                                               create a portal account
  key create --email E --name N --scopes a,b [--env live|test] [--rate N]
             [--expires ISO] [--ips a,b] [--quota N]
                                               create a key; prints the secret alone
  key revoke ID                                revoke a key
  help                                         show this text

configuration comes from the environment; see README.md or .env.example`;

/** The largest request body accepted: a full 100-item batch is ~60 KiB. */
export const MAX_BODY_BYTES = 1024 * 1024;

/** A mistake in how the command was called: usage text, exit 2. */
class UsageError extends Error {}

type Flags = Record<string, { type: "string" | "boolean" }>;

function flags<T extends Flags>(args: string[], options: T) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new UsageError((err as Error).message.split("\n")[0]);
  }
}

function required(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== "string" || v === "") throw new UsageError(`missing --${name}`);
  return v;
}

async function serve(config: Config): Promise<void> {
  const log = createLogger(config.logLevel);
  if (config.databaseUrl && config.secretKeySource === "file") {
    log.warn("SECRET_KEY is not set: using one generated in DATA_DIR; instances that share a database must share SECRET_KEY");
  }
  // The server's modules (the app, its pages, the data API's tables) are loaded only to
  // serve: the other commands start in half the time without them.
  const [{ createApp }, { startJobs }, { loadIpCountries }] = await Promise.all([import("./app.ts"), import("./jobs.ts"), import("./data-api/ip.ts")]);
  const deps = await buildDeps(config, { log });
  // Load the IP-to-country table now rather than on the first /v1/ip request.
  loadIpCountries();
  // Bodies over 1 MiB are refused by Bun before any parsing (413): memory stays bounded.
  const app = createApp(deps).listen({ port: config.port, hostname: config.host, maxRequestBodySize: MAX_BODY_BYTES });
  deps.startTimers();
  startJobs(deps);
  log.info("listening", {
    url: `http://${config.host === "0.0.0.0" ? "localhost" : config.host}:${config.port}`,
    database: deps.database.kind,
    state: deps.state.kind,
  });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("shutdown started", { signal });
    // Stop accepting; requests already in flight are answered before the hooks run.
    await app.stop(false);
    // Answers already sent still run their after-response hooks (the meter): wait for them.
    for (let waited = 0; app.inflight.n > 0 && waited < 5000; waited += 5) await Bun.sleep(5);
    log.info("shutdown step done", { step: "http server stopped", unfinished: app.inflight.n });
    await deps.close();
    log.info("shutdown step done", { step: "database and shared state closed" });
    log.info("shutdown complete");
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

async function run(argv: string[]): Promise<number> {
  const [command = "serve", ...rest] = argv;
  if (command === "help" || command === "--help" || command === "-h") {
    console.log(USAGE);
    return 0;
  }
  const known = ["serve", "migrate", "account", "key"];
  if (!known.includes(command)) throw new UsageError(`unknown command "${command}"`);

  const config = ensureSecretKey(loadConfig());
  switch (command) {
    case "serve":
      flags(rest, {});
      await serve(config);
      return -1;
    case "migrate": {
      flags(rest, {});
      const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
      try {
        await database.migrate();
      } finally {
        await database.close();
      }
      console.log(`migrations applied (${database.kind})`);
      return 0;
    }
    case "account": {
      const [sub, ...args] = rest;
      if (sub !== "create") throw new UsageError(sub ? `unknown account command "${sub}"` : "missing account command (create)");
      const values = flags(args, { email: { type: "string" }, password: { type: "string" }, admin: { type: "boolean" } });
      const email = required(values, "email");
      const password = required(values, "password");
      // Bad values are refused before the database is opened.
      parseNewAccount({ email, password });
      const deps = await buildDeps(config, { log: createLogger("warn") });
      try {
        const account = await createAccount(deps, { email, password, operator: Boolean(values.admin) }, cliActor);
        console.log(`${account.id} ${account.email}${account.isOperator ? " (operator)" : ""}`);
      } finally {
        await deps.close();
      }
      return 0;
    }
    case "key": {
      const [sub, ...args] = rest;
      if (sub === "create") return keyCreate(config, args);
      if (sub === "revoke") return keyRevoke(config, args);
      throw new UsageError(sub ? `unknown key command "${sub}"` : "missing key command (create, revoke)");
    }
  }
  return 2;
}

function intFlag(value: unknown, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "string" || !/^\d+$/.test(value)) throw new UsageError(`--${name} must be a whole number, got ${JSON.stringify(value)}`);
  return Number(value);
}

function listFlag(value: unknown): string[] | undefined {
  if (typeof value !== "string") return undefined;
  return value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

async function keyCreate(config: Config, args: string[]): Promise<number> {
  const values = flags(args, {
    email: { type: "string" },
    name: { type: "string" },
    scopes: { type: "string" },
    env: { type: "string" },
    rate: { type: "string" },
    expires: { type: "string" },
    ips: { type: "string" },
    quota: { type: "string" },
  });
  const email = required(values, "email");
  const input = {
    name: required(values, "name"),
    scopes: listFlag(required(values, "scopes")),
    environment: values.env,
    rateLimit: intFlag(values.rate, "rate"),
    expiresAt: values.expires,
    ipAllowlist: listFlag(values.ips),
    monthlyQuota: intFlag(values.quota, "quota"),
  };
  // Bad values are refused before the database is opened.
  const data = parseInput(createKeySchema, input, "key");
  const deps = await buildDeps(config, { log: createLogger("warn") });
  try {
    const account = await findAccountByEmail(deps, email);
    if (!account) throw new UsageError(`no account with email ${email}`);
    const { secret } = await createKey(deps, account.id, data, cliActor);
    // The secret alone on stdout, so `$(keyport key create …)` captures it.
    console.log(secret);
  } finally {
    await deps.close();
  }
  return 0;
}

async function keyRevoke(config: Config, args: string[]): Promise<number> {
  const { positionals } = (() => {
    try {
      return parseArgs({ args, options: {}, strict: true, allowPositionals: true });
    } catch (err) {
      throw new UsageError((err as Error).message.split("\n")[0]);
    }
  })();
  if (positionals.length !== 1) throw new UsageError("key revoke takes one key id");
  const deps = await buildDeps(config, { log: createLogger("warn") });
  try {
    const key = await revokeKeyById(deps, positionals[0]!, cliActor);
    console.log(`${key.id} revoked`);
  } finally {
    await deps.close();
  }
  return 0;
}

/** Exit codes: 0 done, 1 configuration or infrastructure, 2 how the command was called. */
async function main() {
  try {
    const code = await run(process.argv.slice(2));
    if (code >= 0) process.exit(code);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`keyport: ${err.message}\n\n${USAGE}`);
      process.exit(2);
    }
    if (err instanceof DomainError) {
      const fields = err.errors?.map((e) => `${e.field} ${e.message}`).join("; ");
      console.error(`keyport: ${fields || err.detail}`);
      process.exit(STATUS[err.code] >= 500 ? 1 : 2);
    }
    if (err instanceof ConfigError || err instanceof DatabaseUnavailable || err instanceof RedisUnavailable || err instanceof DataDirLocked) {
      console.error(`keyport: ${err.message}`);
      process.exit(1);
    }
    console.error(`keyport: unexpected error: ${(err as Error).message}`);
    process.exit(1);
  }
}

if (import.meta.main) await main();

export { main };
