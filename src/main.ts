import { readFileSync, statSync } from "node:fs";
import { connect } from "node:net";
import { basename, join } from "node:path";
import { ConfigError, ensureSecretKey, loadConfig, loadOfflineConfig, type Config } from "./config.ts";
import { createAccount, findAccountByEmail, listAccounts, newAccountSchema } from "./accounts/service.ts";
import { createKey, findKeyOwner, listKeys, revokeKey, rollKey } from "./keys/service.ts";
import { hashKey, parseKey } from "./keys/format.ts";
import { createKeySchema, rollKeySchema } from "./keys/model.ts";
import { monthSchema } from "./billing/model.ts";
import { DomainError, notFound, parseInput, type FieldError } from "./errors.ts";
import { cliActor } from "./audit/service.ts";
import { DataDirLocked, DatabaseUnavailable, openDatabase } from "./db/client.ts";
import { createLogger, flushLogs } from "./ops/log.ts";
import { STATUS } from "./plugins/problem.ts";
import { buildDeps, type OwnedDeps } from "./runtime.ts";
import { RedisUnavailable } from "./state/redis.ts";
import { isCompiled, projectRoot } from "./embedded.ts";
import type { Find, ScanResult, ScanStats } from "./leaks/scan.ts";
import { PROXY_BODY_CAP, registerProductSchema, updateProductSchema, type ProductView, type SpecSource } from "./products/model.ts";

const USAGE = `usage: keyport [command]

commands:
  serve                                        start the server (the default)
  migrate                                      apply database migrations and exit
  account create --email E --password P [--admin]
                                               create a portal account
  account list [--json]                        every account: id, email, operator, created
  key list --email E [--json]                  an account's keys: id, name, env, key, status, last use
  key create --email E --name N --scopes a,b [--env live|test] [--rate N]
             [--expires ISO] [--ips a,b] [--quota N] [--json]
                                               create a key: the secret alone on stdout,
                                               its id and name on stderr
  key revoke ID|KEY [--json]                   revoke a key, named by its id or the key itself
  key roll ID|KEY [--grace HOURS] [--json]     a new key with the same settings (its secret on
                                               stdout); the old one works HOURS more (24; 0-168)
  product add --id ID --spec FILE|URL --upstream URL [--sandbox URL] [--name N]
              [--description D] [--status active|beta|deprecated] [--timeout MS]
              [--max-body BYTES] [--validate] [--json]
                                               register an API from its OpenAPI spec: its
                                               Keyport-Gateway-Secret alone on stdout
  product list [--json]                        registered products: id, name, status, version,
                                               operations, upstream, sandbox
  product update --id ID [--spec FILE|URL [--no-activate]] [--activate-version N]
                 [--name N] [--description D] [--status S] [--upstream URL]
                 [--sandbox URL|none] [--timeout MS] [--max-body BYTES]
                 [--validate|--no-validate] [--rotate-secret] [--json]
                                               change a product: --spec uploads a new version
                                               (active unless --no-activate); --rotate-secret
                                               prints the new secret alone on stdout
  product remove --id ID [--json]              remove a product: /v1/ID answers 404 at once
  invoices export --month YYYY-MM              the month's invoices as CSV on stdout
  invoices close --month YYYY-MM [--force]     finalize the month's invoices (the sweep does at
                                               month end); run again, it makes only missing ones;
                                               --force: within 10 minutes of the month's end too
  scan [PATH…] [--no-ignore] [--git] [--check] [--report] [--format text|json|sarif]
                                               find keys (valid checksums only) in files, honouring
                                               .gitignore, or with --git in every blob of the
                                               repository's history; prints path:line:col and the
                                               masked key; exit 1 if any is found, 0 if none;
                                               --check: each key's status in the database;
                                               --report: the active ones filed as leaks and acted on
  rules gitleaks|secretlint                    a gitleaks rule (TOML) or a secretlint rule module
                                               that finds these keys
  hook pre-commit                              a pre-commit hook refusing staged files with a key
  help                                         show this text

In embedded mode a running server holds DATA_DIR: run these while it is stopped, or
use its management API (/api/keys) with a key holding keys:manage.
Configuration comes from the environment; see README.md or .env.example.`;


/** Mistakes in how a command was called, every one of them (one line each): exit 2. */
class UsageError extends Error {
  constructor(
    readonly lines: string[],
    /** A wrong command or flag (not a refused value): the usage text follows. */
    readonly showUsage = true,
  ) {
    super(lines.join("; "));
  }
}

/** The flag each API field is given by, so a refusal names what the user typed. */
const FLAG_OF: Record<string, string> = {
  email: "--email",
  password: "--password",
  name: "--name",
  environment: "--env",
  scopes: "--scopes",
  rateLimit: "--rate",
  expiresAt: "--expires",
  ipAllowlist: "--ips",
  monthlyQuota: "--quota",
  gracePeriodHours: "--grace",
  month: "--month",
  id: "--id",
  description: "--description",
  status: "--status",
  upstreamUrl: "--upstream",
  sandboxUrl: "--sandbox",
  timeoutMs: "--timeout",
  maxBodyBytes: "--max-body",
  validateRequests: "--validate",
  spec: "--spec",
  specUrl: "--spec",
  version: "--activate-version",
};

/** `--expires must be in the future`; a message that is not a predicate follows a colon. */
function flagLine({ field, message }: FieldError): string {
  const [head = field, index] = field.split(".");
  const flag = (FLAG_OF[head] ?? head) + (index && /^\d+$/.test(index) ? ` (entry ${Number(index) + 1})` : "");
  return /^(must|is|has|may|needs)\b/.test(message) ? `${flag} ${message}` : `${flag}: ${message}`;
}

/** Collects a command line's mistakes so one run reports all of them, not the first. */
class Mistakes {
  readonly lines: string[] = [];
  /** Flags whose value is already reported: the schema's view of them would repeat it. */
  readonly reported = new Set<string>();
  private usage = false;

  call(line: string): void {
    this.lines.push(line);
    this.usage = true;
  }

  value(flag: string, line: string): void {
    this.lines.push(line);
    this.reported.add(flag);
  }

  /** The input checked by `parseInput` (the one entry point services' inputs go through), its refusals kept. */
  parse<T>(check: () => T): T | undefined {
    try {
      return check();
    } catch (err) {
      if (!(err instanceof DomainError) || !err.errors) throw err;
      for (const e of err.errors) {
        const line = flagLine(e);
        if (!this.reported.has(line.split(/[ :]/)[0]!)) this.lines.push(line);
      }
      return undefined;
    }
  }

  /** Throws when anything was found. */
  check(): void {
    if (this.lines.length) throw new UsageError(this.lines, this.usage);
  }
}

type FlagSpec = Record<string, "string" | "boolean">;

/**
 * `--name value`, `--name=value`, booleans, positionals. Not node:util parseArgs: it stops
 * at the first mistake, and it refuses `--quota -5` as ambiguous, so the user never hears
 * that -5 is the problem. A value may start with "-" only when it is a number.
 */
function parseFlags(args: string[], spec: FlagSpec, m: Mistakes, maxPositionals = 0): { values: Record<string, string | true>; positionals: string[] } {
  const values: Record<string, string | true> = {};
  const positionals: string[] = [];
  const isValue = (a: string | undefined): a is string => a !== undefined && (!a.startsWith("-") || /^-\d/.test(a));
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--") {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || /^-\d/.test(arg) || arg === "-") {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = arg.slice(arg.startsWith("--") ? 2 : 1, eq < 0 ? undefined : eq);
    const inline = eq < 0 ? undefined : arg.slice(eq + 1);
    const type = Object.hasOwn(spec, name) && arg.startsWith("--") ? spec[name] : undefined;
    if (!type) {
      m.call(`unknown flag ${eq < 0 ? arg : arg.slice(0, eq)}`);
      // Its value, if it had one, is not a stray argument as well.
      if (inline === undefined && isValue(args[i + 1]) && positionals.length >= maxPositionals) i++;
      continue;
    }
    if (type === "boolean") {
      if (inline !== undefined) m.call(`--${name} takes no value`);
      else values[name] = true;
      continue;
    }
    if (inline !== undefined) values[name] = inline;
    else if (isValue(args[i + 1])) values[name] = args[++i]!;
    else {
      m.call(`--${name} needs a value`);
      m.reported.add(`--${name}`);
    }
  }
  if (positionals.length > maxPositionals) m.call(`unexpected argument${positionals.length - maxPositionals > 1 ? "s" : ""} ${positionals.slice(maxPositionals).map((p) => JSON.stringify(p)).join(" ")}`);
  return { values, positionals: positionals.slice(0, maxPositionals) };
}

function stringFlag(values: Record<string, string | true>, name: string): string | undefined {
  const v = values[name];
  return typeof v === "string" ? v : undefined;
}

function requiredFlag(values: Record<string, string | true>, name: string, m: Mistakes): string | undefined {
  const v = stringFlag(values, name);
  if (m.reported.has(`--${name}`)) return undefined;
  if (v === undefined || v === "") {
    m.call(`missing --${name}`);
    m.reported.add(`--${name}`);
    return undefined;
  }
  return v;
}

/** A number for the schema to judge (`-5` included: the schema says what the limits are). */
function numberFlag(values: Record<string, string | true>, name: string, m: Mistakes, what = "a whole number"): number | undefined {
  const v = stringFlag(values, name);
  if (v === undefined) return undefined;
  if (/^-?\d+(\.\d+)?$/.test(v.trim())) return Number(v);
  m.value(`--${name}`, `--${name} must be ${what}, got ${JSON.stringify(v)}`);
  return undefined;
}

function listFlag(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  return value
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
}

/** How long a SIGTERM waits for open connections to finish before closing them. */
const SHUTDOWN_GRACE_MS = 10_000;

async function serve(config: Config): Promise<void> {
  const log = createLogger(config.logLevel, undefined, config.logBufferBytes);
  if (config.databaseUrl && config.secretKeySource === "file") {
    log.warn("SECRET_KEY is not set: using one generated in DATA_DIR; instances that share a database must share SECRET_KEY");
  }
  // The server's modules (the app, its pages, the data API's tables) are loaded only to
  // serve: the other commands start in half the time without them.
  const [{ createApp }, { startJobs }, { loadIpCountries }] = await Promise.all([import("./app.ts"), import("./jobs.ts"), import("./data-api/ip.ts")]);
  const deps = await buildDeps(config, { log });
  // Load the IP-to-country table now rather than on the first /v1/ip request.
  loadIpCountries();
  // Bodies over the products' cap are refused by Bun before any parsing (413); Keyport's own
  // routes refuse more than 1 MiB (src/plugins/body-limit.ts): memory stays bounded.
  const app = createApp(deps).listen({ port: config.port, hostname: config.host, maxRequestBodySize: PROXY_BODY_CAP, development: false });
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
    // Stop accepting; requests already in flight are answered before the hooks run. A
    // connection that never settles (a client still sending a body nobody reads, a stalled
    // upload) does not hold the shutdown and its usage flush: after the grace the rest close.
    const server = app.server;
    const settled = await Promise.race([app.stop(false).then(() => true), Bun.sleep(SHUTDOWN_GRACE_MS).then(() => false)]);
    if (!settled) {
      log.warn("shutdown: connections still open after the grace period, closing them", { graceMs: SHUTDOWN_GRACE_MS, pending: server?.pendingRequests ?? 0 });
      await server?.stop(true);
    }
    // Answers already sent still run their after-response hooks (the meter): wait for them.
    for (let waited = 0; app.inflight.n > 0 && waited < 5000; waited += 5) await Bun.sleep(5);
    log.info("shutdown step done", { step: "http server stopped", unfinished: app.inflight.n });
    await deps.close();
    log.info("shutdown step done", { step: "database and shared state closed" });
    log.info("shutdown complete");
    await flushLogs();
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

/** What run() learned before failing, for main() to say what to do. */
interface RunContext {
  config?: Config;
}

async function run(argv: string[], ctx: RunContext): Promise<number> {
  const [command = "serve", ...rest] = argv;
  if (command === "help" || command === "--help" || command === "-h") {
    console.log(USAGE);
    return 0;
  }
  const known = ["serve", "migrate", "account", "key", "invoices", "product", "scan", "rules", "hook"];
  if (!known.includes(command)) throw new UsageError([`unknown command "${command}"`]);

  const m = new Mistakes();
  const [sub, ...args] = rest;
  const pick = (subs: string[]) => {
    if (sub && subs.includes(sub)) return;
    throw new UsageError([sub ? `unknown ${command} command "${sub}"` : `missing ${command} command (${subs.join(", ")})`]);
  };
  // Every command line is checked before the configuration and the database are touched.
  let todo: (config: Config) => Promise<number>;
  /** Needs the prefix alone (and PUBLIC_URL): no SECRET_KEY file, no database — it runs anywhere. */
  let offline = false;
  switch (command) {
    case "serve":
      parseFlags(rest, {}, m);
      todo = async (config) => (await serve(config), -1);
      break;
    case "migrate":
      parseFlags(rest, {}, m);
      todo = migrate;
      break;
    case "account":
      pick(["create", "list"]);
      todo = sub === "create" ? accountCreate(args, m) : accountList(args, m);
      break;
    case "invoices":
      pick(["export", "close"]);
      todo = sub === "export" ? invoicesExport(args, m) : invoicesClose(args, m);
      break;
    case "product":
      pick(["add", "list", "update", "remove"]);
      // Async: a spec file is read and checked with the other flags, before the database opens.
      todo = sub === "add" ? await productAdd(args, m) : sub === "list" ? productList(args, m) : sub === "update" ? await productUpdate(args, m) : productRemove(args, m);
      break;
    case "scan": {
      // Paths are checked with the other flags, before anything is read.
      const scan = scanCommand(rest, m);
      offline = !scan.online;
      todo = scan.todo;
      break;
    }
    case "rules":
      pick(["gitleaks", "secretlint"]);
      parseFlags(args, {}, m);
      offline = true;
      todo = async (config) => {
        const { gitleaksRule, secretlintRule } = await import("./leaks/rules.ts");
        await Bun.write(Bun.stdout, sub === "gitleaks" ? gitleaksRule(config.keyPrefix) : secretlintRule(config.keyPrefix));
        return 0;
      };
      break;
    case "hook":
      pick(["pre-commit"]);
      parseFlags(args, {}, m);
      offline = true;
      todo = async (config) => {
        const { preCommitHook } = await import("./leaks/rules.ts");
        // The hook runs this keyport: the binary itself, or bun with this source.
        const self = isCompiled() ? [process.execPath] : [process.execPath, join(projectRoot, "src", "main.ts")];
        await Bun.write(Bun.stdout, preCommitHook(config.keyPrefix, self));
        return 0;
      };
      break;
    default:
      pick(["create", "list", "revoke", "roll"]);
      todo = sub === "create" ? keyCreate(args, m) : sub === "list" ? keyList(args, m) : sub === "revoke" ? keyRevoke(args, m) : keyRoll(args, m);
  }
  m.check();
  if (offline) return todo((ctx.config = loadOfflineConfig()));
  const config = (ctx.config = ensureSecretKey(loadConfig()));
  return todo(config);
}


async function migrate(config: Config): Promise<number> {
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  try {
    await database.migrate();
  } finally {
    await database.close();
  }
  console.log(`migrations applied (${database.kind})`);
  return 0;
}

/** Deps for one command, closed when it is done (the usage flush and the database with them). */
async function withDeps<T>(config: Config, work: (deps: OwnedDeps) => Promise<T>): Promise<T> {
  const deps = await buildDeps(config, { log: createLogger("warn") });
  try {
    return await work(deps);
  } finally {
    await deps.close();
  }
}

const json = (value: unknown) => console.log(JSON.stringify(value, null, 2));
const when = (iso: string | null, none = "never") => (iso ? `${iso.slice(0, 16).replace("T", " ")} UTC` : none);

/** Columns padded to their widest cell; control characters shown as "?" (names are user text). */
function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows.map((r) => r.map((c) => c.replace(/[\u0000-\u001f\u007f-\u009f]/g, "?")))];
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i]!.length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n");
}

async function accountOf(deps: OwnedDeps, email: string) {
  const account = await findAccountByEmail(deps, email);
  if (!account) throw new UsageError([`no account with email ${email} (see: keyport account list)`], false);
  return account;
}

function accountCreate(args: string[], m: Mistakes) {
  const { values } = parseFlags(args, { email: "string", password: "string", admin: "boolean" }, m);
  const email = requiredFlag(values, "email", m);
  const password = requiredFlag(values, "password", m);
  // The same rules as the portal's sign-up (length, common passwords, not the email).
  m.parse(() => parseInput(newAccountSchema, { email, password }, "account"));
  return (config: Config) =>
    withDeps(config, async (deps) => {
      const account = await createAccount(deps, { email: email!, password: password!, operator: values.admin === true }, cliActor);
      console.log(`${account.id} ${account.email}${account.isOperator ? " (operator)" : ""}`);
      return 0;
    });
}

function accountList(args: string[], m: Mistakes) {
  const { values } = parseFlags(args, { json: "boolean" }, m);
  return (config: Config) =>
    withDeps(config, async (deps) => {
      const list = await listAccounts(deps);
      if (values.json) json(list);
      else console.log(table(["ID", "EMAIL", "OPERATOR", "CREATED"], list.map((a) => [a.id, a.email, a.operator ? "yes" : "no", when(a.createdAt)])));
      return 0;
    });
}

function keyList(args: string[], m: Mistakes) {
  const { values } = parseFlags(args, { email: "string", json: "boolean" }, m);
  const email = requiredFlag(values, "email", m);
  return (config: Config) =>
    withDeps(config, async (deps) => {
      const keys = await listKeys(deps, (await accountOf(deps, email!)).id);
      if (values.json) json(keys);
      else console.log(table(["ID", "NAME", "ENV", "KEY", "STATUS", "LAST USED"], keys.map((k) => [k.id, k.name, k.environment, k.display, k.status, when(k.lastUsedAt)])));
      return 0;
    });
}

function keyCreate(args: string[], m: Mistakes) {
  const { values } = parseFlags(
    args,
    { email: "string", name: "string", scopes: "string", env: "string", rate: "string", expires: "string", ips: "string", quota: "string", json: "boolean" },
    m,
  );
  const email = requiredFlag(values, "email", m);
  const input = {
    name: requiredFlag(values, "name", m),
    scopes: listFlag(requiredFlag(values, "scopes", m)),
    environment: stringFlag(values, "env"),
    rateLimit: numberFlag(values, "rate", m),
    expiresAt: stringFlag(values, "expires"),
    ipAllowlist: listFlag(stringFlag(values, "ips")),
    monthlyQuota: numberFlag(values, "quota", m),
  };
  const data = m.parse(() => parseInput(createKeySchema, input, "key"));
  // createKey refuses a past expiry too; said here, it is reported with the other mistakes.
  const expires = input.expiresAt === undefined ? Number.NaN : Date.parse(input.expiresAt);
  if (expires <= Date.now() && !m.lines.some((l) => l.startsWith("--expires"))) m.value("--expires", "--expires must be in the future");
  return (config: Config) =>
    withDeps(config, async (deps) => {
      const account = await accountOf(deps, email!);
      const { key, secret } = await createKey(deps, account.id, data!, cliActor);
      if (values.json) {
        json({ ...key, secret });
      } else {
        // The secret alone on stdout, so `KEY=$(keyport key create …)` captures it.
        console.log(secret);
        console.error(`created ${key.id} "${key.name}" (${key.environment})`);
      }
      return 0;
    });
}

/**
 * A key named by its id (`key_…`) or by the key itself, recognised by its format and
 * checksum and looked up by its SHA-256 hash (how it is stored). The secret is never echoed.
 */
function keyRef(raw: string, prefix: string, m: Mistakes): { id: string } | { hash: string } | undefined {
  if (raw.startsWith("key_")) return { id: raw };
  if (parseKey(raw, prefix).ok) return { hash: hashKey(raw) };
  if (raw.startsWith(`${prefix}_`)) return void m.value("key", `that is not a whole ${prefix}_… key (its length or checksum is wrong): was it copied in full?`);
  return void m.value("key", `expected a key id (key_…) or a key (${prefix}_live_… / ${prefix}_test_…)`);
}

/**
 * A command on the key named by its id or by the key itself. The key's prefix is
 * configuration, read after the command line is checked: the key's format is checked when
 * the command runs.
 */
function withKeyArgument(raw: string, work: (deps: OwnedDeps, owner: Awaited<ReturnType<typeof findKey>>) => Promise<number>) {
  return async (config: Config) => {
    const later = new Mistakes();
    const ref = keyRef(raw, config.keyPrefix, later);
    later.check();
    return withDeps(config, async (deps) => work(deps, await findKey(deps, ref!)));
  };
}

async function findKey(deps: OwnedDeps, ref: { id: string } | { hash: string }) {
  const owner = await findKeyOwner(deps, ref);
  if (!owner) throw notFound("key");
  return owner;
}

/** The id or key a command names, or a mistake when it names none. */
function keyArgument(positionals: string[], m: Mistakes): string {
  if (positionals[0] === undefined || positionals[0] === "") m.call("missing the key: its id (key_…) or the key itself");
  return positionals[0] ?? "";
}

function keyRevoke(args: string[], m: Mistakes) {
  const { values, positionals } = parseFlags(args, { json: "boolean" }, m, 1);
  const raw = keyArgument(positionals, m);
  return withKeyArgument(raw, async (deps, owner) => {
    const key = await revokeKey(deps, owner.accountId, owner.id, cliActor);
    if (values.json) json(key);
    else console.log(`${key.id} revoked`);
    return 0;
  });
}

function keyRoll(args: string[], m: Mistakes) {
  const { values, positionals } = parseFlags(args, { grace: "string", json: "boolean" }, m, 1);
  const gracePeriodHours = numberFlag(values, "grace", m, "a number of hours");
  const roll = m.parse(() => parseInput(rollKeySchema, { gracePeriodHours }, "roll"));
  const raw = keyArgument(positionals, m);
  return withKeyArgument(raw, async (deps, owner) => {
    const { key, secret, previous } = await rollKey(deps, owner.accountId, owner.id, roll!, cliActor);
    if (values.json) {
      json({ ...key, secret, previous });
    } else {
      console.log(secret);
      console.error(`created ${key.id} "${key.name}" replacing ${previous.id}, ${previous.graceEndsAt ? `which works until ${when(previous.graceEndsAt)}` : "revoked now"}`);
    }
    return 0;
  });
}

/** `--month YYYY-MM`, required and checked with the other flags. */
function monthFlag(args: string[], m: Mistakes, extra: FlagSpec = {}): string {
  const { values } = parseFlags(args, { month: "string", ...extra }, m);
  const month = requiredFlag(values, "month", m);
  if (month === undefined) return "";
  const r = monthSchema.safeParse(month);
  if (!r.success) {
    m.value("--month", `--month ${r.error.issues[0]!.message}, got ${JSON.stringify(month)}`);
    return "";
  }
  return r.data;
}

function invoicesExport(args: string[], m: Mistakes) {
  const month = monthFlag(args, m);
  return (config: Config) =>
    withDeps(config, async (deps) => {
      const [{ monthInvoices }, { invoicesCsv }] = await Promise.all([import("./billing/service.ts"), import("./billing/csv.ts")]);
      await Bun.write(Bun.stdout, invoicesCsv(await monthInvoices(deps, month)));
      return 0;
    });
}

function invoicesClose(args: string[], m: Mistakes) {
  const month = monthFlag(args, m, { force: "boolean" });
  const force = args.includes("--force");
  return (config: Config) =>
    withDeps(config, async (deps) => {
      const { closeMonth, closeDelayMs } = await import("./billing/service.ts");
      // Like the sweep, wait until every instance has flushed the month's last calls: a close
      // made before that would leave them off invoices that never change again.
      const r = await closeMonth(deps, month, force ? 0 : closeDelayMs(deps.config));
      console.log(`${r.month}: ${r.created} invoice${r.created === 1 ? "" : "s"} made${r.existing ? ` (${r.existing} already finalized)` : ""}`);
      return 0;
    });
}

/** Why a spec file could not be read, in words (the errno codes a mistyped path gives). */
const UNREADABLE: Record<string, string> = {
  ENOENT: "no such file or directory",
  ENOTDIR: "no such file or directory",
  EISDIR: "it is a directory",
  EACCES: "permission denied",
  EPERM: "permission denied",
};

/**
 * `--spec FILE|URL`. A URL is fetched once by the service; a file is read now and checked
 * against the product id, so its problems are reported with the other mistakes, one line
 * each, before the database is opened.
 */
async function specFlag(value: string | undefined, productId: string | undefined, m: Mistakes): Promise<SpecSource | undefined> {
  if (value === undefined || m.reported.has("--spec")) return undefined;
  if (/^https?:\/\//i.test(value)) return { url: value };
  if (value === "" || /^[a-z][a-z0-9+.-]*:\/\//i.test(value)) return void m.value("--spec", `--spec must be a file or an http(s) URL, got ${JSON.stringify(value)}`);
  // Loaded only here: the validator is not needed by the other commands' command lines.
  const { MAX_SPEC_BYTES, checkSpec, parseSpecText } = await import("./products/spec.ts");
  let text: string;
  try {
    if (statSync(value).size > MAX_SPEC_BYTES) return void m.value("--spec", flagLine({ field: "spec", message: `is larger than ${MAX_SPEC_BYTES / 1024 / 1024} MB` }));
    text = readFileSync(value, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "";
    return void m.value("--spec", `--spec: cannot read ${JSON.stringify(value)}: ${UNREADABLE[code] ?? (err as Error).message}`);
  }
  const parsed = parseSpecText(text);
  const checked = parsed.ok ? await checkSpec(parsed.value, productId || "product") : { ok: false as const, errors: [{ field: "spec", message: parsed.message }] };
  if (!checked.ok) {
    for (const e of checked.errors) m.value("--spec", flagLine(e));
    return undefined;
  }
  return { text, name: basename(value) };
}

/** `--sandbox none` clears it. */
const sandboxFlag = (values: Record<string, string | true>) => {
  const v = stringFlag(values, "sandbox");
  return v === "none" ? null : v;
};

/** The service's refusals that name the product, said as the CLI would say them. */
function productRefusal(id: string) {
  return (err: unknown): never => {
    if (err instanceof DomainError && err.code === "not_found") throw new UsageError([`no product ${JSON.stringify(id)} (see: keyport product list)`], false);
    if (err instanceof DomainError && err.code === "product_exists") {
      throw new UsageError([`--id: a product "${id}" is already registered (a new spec version: keyport product update --id ${id} --spec FILE)`], false);
    }
    throw err;
  };
}

const operationCount = (p: ProductView) => `${p.operations.length} operation${p.operations.length === 1 ? "" : "s"}`;

async function productAdd(args: string[], m: Mistakes) {
  const { values } = parseFlags(
    args,
    {
      id: "string",
      spec: "string",
      upstream: "string",
      sandbox: "string",
      name: "string",
      description: "string",
      status: "string",
      timeout: "string",
      "max-body": "string",
      validate: "boolean",
      json: "boolean",
    },
    m,
  );
  const id = requiredFlag(values, "id", m);
  const spec = requiredFlag(values, "spec", m);
  const input = {
    id,
    name: stringFlag(values, "name"),
    description: stringFlag(values, "description"),
    status: stringFlag(values, "status"),
    upstreamUrl: requiredFlag(values, "upstream", m),
    sandboxUrl: sandboxFlag(values),
    timeoutMs: numberFlag(values, "timeout", m, "a whole number of milliseconds"),
    maxBodyBytes: numberFlag(values, "max-body", m, "a whole number of bytes"),
    validateRequests: values.validate === true ? true : undefined,
  };
  m.parse(() => parseInput(registerProductSchema, input, "product"));
  const source = await specFlag(spec, id, m);
  return (config: Config) =>
    withDeps(config, async (deps) => {
      const { registerProduct } = await import("./products/service.ts");
      const { product, secret } = await registerProduct(deps, input, source!, cliActor).catch(productRefusal(id!));
      if (values.json) {
        json({ ...product, secret });
      } else {
        // The secret alone on stdout, so `SECRET=$(keyport product add …)` captures it.
        console.log(secret);
        console.error(`registered ${product.id} ${JSON.stringify(product.name)}: version 1, ${operationCount(product)}, scopes ${product.scopes.join(", ")}`);
        console.error("the upstream receives that secret as Keyport-Gateway-Secret; it is not shown again (a new one: --rotate-secret)");
      }
      return 0;
    });
}

function productList(args: string[], m: Mistakes) {
  const { values } = parseFlags(args, { json: "boolean" }, m);
  return (config: Config) =>
    withDeps(config, async (deps) => {
      const { listProducts } = await import("./products/service.ts");
      const list = await listProducts(deps);
      if (values.json) json(list);
      else
        console.log(
          table(
            ["ID", "NAME", "STATUS", "VERSION", "OPERATIONS", "UPSTREAM", "SANDBOX"],
            list.map((p) => [p.id, p.name, p.status, String(p.activeVersion), String(p.operations.length), p.upstreamUrl, p.sandboxUrl ?? "none"]),
          ),
        );
      return 0;
    });
}

/** What an update's settings are called in its report. */
const SETTING_WORDS: Record<string, string> = {
  name: "name",
  description: "description",
  status: "status",
  upstreamUrl: "upstream",
  sandboxUrl: "sandbox",
  timeoutMs: "timeout",
  maxBodyBytes: "max body",
  validateRequests: "request validation",
};

async function productUpdate(args: string[], m: Mistakes) {
  const { values } = parseFlags(
    args,
    {
      id: "string",
      spec: "string",
      "no-activate": "boolean",
      "activate-version": "string",
      name: "string",
      description: "string",
      status: "string",
      upstream: "string",
      sandbox: "string",
      timeout: "string",
      "max-body": "string",
      validate: "boolean",
      "no-validate": "boolean",
      "rotate-secret": "boolean",
      json: "boolean",
    },
    m,
  );
  const id = requiredFlag(values, "id", m);
  const spec = stringFlag(values, "spec");
  const activate = values["no-activate"] !== true;
  const rotate = values["rotate-secret"] === true;
  if (!activate && spec === undefined) m.call("--no-activate needs --spec (the version it uploads is not made active)");
  if (values.validate && values["no-validate"]) m.call("--validate and --no-validate cannot be used together");
  const version = numberFlag(values, "activate-version", m, "a version number");
  if (version !== undefined && (!Number.isInteger(version) || version < 1)) m.value("--activate-version", `--activate-version must be a version number (1, 2, …), got ${JSON.stringify(values["activate-version"])}`);
  if (version !== undefined && spec !== undefined) m.call("--spec and --activate-version cannot be used together (upload with --spec … --no-activate, then activate)");
  const given = {
    name: stringFlag(values, "name"),
    description: stringFlag(values, "description"),
    status: stringFlag(values, "status"),
    upstreamUrl: stringFlag(values, "upstream"),
    sandboxUrl: sandboxFlag(values),
    timeoutMs: numberFlag(values, "timeout", m, "a whole number of milliseconds"),
    maxBodyBytes: numberFlag(values, "max-body", m, "a whole number of bytes"),
    validateRequests: values.validate ? true : values["no-validate"] ? false : undefined,
  };
  const settings = Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined));
  // Checked whole before anything is written: a refused setting never follows an uploaded spec.
  m.parse(() => parseInput(updateProductSchema, settings, "product change"));
  const changesSettings = Object.keys(settings).length > 0;
  // A flag given without its value is already reported: "nothing to change" would only add noise.
  const flagsGiven = args.some((a) => a.startsWith("--") && !/^--(id|json)(=|$)/.test(a));
  if (spec === undefined && version === undefined && !rotate && !changesSettings && !flagsGiven) {
    m.call("nothing to change: give --spec, --activate-version, --rotate-secret or a setting (--name, --upstream, …)");
  }
  const source = await specFlag(spec, id, m);
  return (config: Config) =>
    withDeps(config, async (deps) => {
      const service = await import("./products/service.ts");
      const done: string[] = [];
      let product: ProductView | undefined;
      let uploaded: number | undefined;
      let secret: string | undefined;
      // The spec (or version) first: refused, it leaves the product as it was.
      try {
        if (source) {
          const r = await service.uploadSpec(deps, id!, source, cliActor, activate);
          product = r.product;
          uploaded = r.version;
          done.push(activate ? `version ${r.version} uploaded and active (${operationCount(r.product)})` : `version ${r.version} uploaded; version ${r.product.activeVersion} still active`);
        }
        if (version !== undefined) {
          product = await service.activateVersion(deps, id!, version, cliActor);
          done.push(`version ${version} active (${operationCount(product)})`);
        }
        if (changesSettings) {
          product = await service.updateProduct(deps, id!, settings, cliActor);
          done.push(`${Object.keys(settings).map((k) => SETTING_WORDS[k] ?? k).join(", ")} updated`);
        }
        if (rotate) {
          secret = await service.rotateGatewaySecret(deps, id!, cliActor);
          done.push("a new Keyport-Gateway-Secret, sent from the next request: give it to the upstream");
        }
        product ??= (await service.getProduct(deps, id!)).product;
      } catch (err) {
        productRefusal(id!)(err);
      }
      if (values.json) {
        json({ ...product!, ...(uploaded === undefined ? {} : { uploadedVersion: uploaded }), ...(secret === undefined ? {} : { secret }) });
      } else if (secret !== undefined) {
        // As at registration: the secret alone on stdout, what was done on stderr.
        console.log(secret);
        console.error(done.map((d) => `${id}: ${d}`).join("\n"));
      } else {
        console.log(done.map((d) => `${id}: ${d}`).join("\n"));
      }
      return 0;
    });
}

function productRemove(args: string[], m: Mistakes) {
  const { values } = parseFlags(args, { id: "string", json: "boolean" }, m);
  const id = requiredFlag(values, "id", m);
  return (config: Config) =>
    withDeps(config, async (deps) => {
      const { getProduct, removeProduct } = await import("./products/service.ts");
      const removed = await getProduct(deps, id!)
        .then(async ({ product }) => (await removeProduct(deps, id!, cliActor), product))
        .catch(productRefusal(id!));
      if (values.json) json(removed);
      else console.log(`${removed.id} removed`);
      return 0;
    });
}

const SCAN_FORMATS = ["text", "json", "sarif"] as const;

/** `--check`'s word for a key, and `--report`'s outcome for one it filed. */
interface Checked {
  status: string;
  report?: string;
}

/**
 * Writes "scanning: N files, M MB read" over itself on a terminal, once the walk has taken
 * more than a second; `done` clears it. Nothing when stderr is a file or a pipe (CI, a hook).
 */
function progressLine() {
  if (!process.stderr.isTTY) return { update: undefined, done() {} };
  const started = Date.now();
  let last = 0;
  let shown = false;
  return {
    update(stats: Readonly<ScanStats>) {
      const now = Date.now();
      if (now - started < 1000 || now - last < 100) return;
      last = now;
      shown = true;
      process.stderr.write(`\r\x1b[Kscanning: ${stats.files} files, ${(stats.bytes / 1e6).toFixed(1)} MB read`);
    },
    done() {
      if (shown) process.stderr.write("\r\x1b[K");
    },
  };
}

/** The place a find is reported as in the leak log: the file and line, or for history the commit. */
const leakUrl = (f: Find) => (f.commits?.length ? `git:${f.commits[0]}:${f.path}:${f.line}` : `file:${f.path}:${f.line}`);

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/**
 * `keyport scan`. Without --check or --report it needs no database and no configuration
 * but KEY_PREFIX (`online` false), so it runs in CI and in a hook.
 */
function scanCommand(args: string[], m: Mistakes): { online: boolean; todo: (config: Config) => Promise<number> } {
  const { values, positionals } = parseFlags(
    args,
    { git: "boolean", "no-ignore": "boolean", check: "boolean", report: "boolean", format: "string" },
    m,
    Number.MAX_SAFE_INTEGER,
  );
  const format = stringFlag(values, "format") ?? "text";
  if (!(SCAN_FORMATS as readonly string[]).includes(format) && !m.reported.has("--format")) m.value("--format", `--format must be text, json or sarif, got ${JSON.stringify(format)}`);
  const history = values.git === true;
  const report = values.report === true;
  // A report is made of the keys' statuses: --report looks them up as --check does.
  const check = values.check === true || report;
  if (history && values["no-ignore"]) m.call("--no-ignore does not apply to --git: every blob of the history is read");
  if (history && positionals.length > 1) m.call("--git reads one repository: give at most one PATH");
  const paths = positionals.length ? positionals : ["."];
  for (const p of paths) {
    try {
      const info = statSync(p);
      if (history && !info.isDirectory()) m.value(p, `--git needs a repository's folder, and ${JSON.stringify(p)} is a file`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? "";
      m.value(p, `cannot read ${JSON.stringify(p)}: ${UNREADABLE[code] ?? (err as Error).message}`);
    }
  }

  const todo = async (config: Config) => {
    const { ScanError, findJson, findLine, scanHistory, scanPaths } = await import("./leaks/scan.ts");
    const progress = progressLine();
    let scan: ScanResult;
    try {
      const options = { prefix: config.keyPrefix, onProgress: progress.update };
      scan = history ? await scanHistory(paths[0]!, options) : await scanPaths(paths, { ...options, noIgnore: values["no-ignore"] === true });
    } catch (err) {
      if (err instanceof ScanError) throw new UsageError([err.message], false);
      throw err;
    } finally {
      progress.done();
    }
    for (const u of scan.unreadable) console.error(`keyport: cannot read ${u.path}: ${u.reason}`);

    const checked = new Map<Find, Checked>();
    if (check && scan.finds.length) {
      await withDeps(config, async (deps) => {
        const { checkTokens, reportLeaks } = await import("./leaks/service.ts");
        const statuses = await checkTokens(deps, scan.finds.map((f) => f.token));
        for (const f of scan.finds) checked.set(f, { status: statuses.get(f.token) ?? "unknown" });
        if (!report) return;
        // A key in a roll's grace still works: it is as leaked as an active one.
        const working = scan.finds.filter((f) => ["active", "expiring"].includes(checked.get(f)!.status));
        if (!working.length) return;
        const outcomes = await reportLeaks(deps, working.map((f) => ({ token: f.token, url: leakUrl(f), source: "scan" as const })), cliActor);
        working.forEach((f, i) => {
          const o = outcomes[i]!;
          checked.get(f)!.report = o.action ?? o.outcome.replace("_", " ");
        });
      });
    }

    if (format === "sarif") {
      const { sarifLog } = await import("./leaks/sarif.ts");
      json(sarifLog(scan, { prefix: config.keyPrefix, informationUri: `${config.publicUrl}/docs`, status: (f) => checked.get(f)?.status }));
    } else if (format === "json") {
      const { root, files, bytes, binary, unreadable } = scan;
      json({ root, files, bytes, binary, unreadable, finds: scan.finds.map((f) => ({ ...findJson(f), ...checked.get(f) })) });
    } else {
      for (const f of scan.finds) {
        const c = checked.get(f);
        console.log(findLine(f) + (c ? `  ${c.status}${c.report ? `, reported: ${c.report}` : ""}` : ""));
      }
      const read = `${plural(scan.files, history ? "blob" : "file")}, ${(scan.bytes / 1e6).toFixed(1)} MB read${scan.binary ? `, ${scan.binary} binary skipped` : ""}`;
      const keys = new Set(scan.finds.map((f) => f.hash)).size;
      console.error(scan.finds.length ? `keyport: ${plural(keys, "key")} found in ${plural(scan.finds.length, "place")} (${read})` : `keyport: no keys found (${read})`);
    }
    return scan.finds.length ? 1 : 0;
  };
  return { online: check, todo };
}

/** Why a TCP connection to REDIS_URL's host fails: ioredis reports only "Connection is closed.". */
function redisReason(url: string): Promise<string | undefined> {
  let target: { host: string; port: number };
  try {
    const u = new URL(url);
    target = { host: u.hostname.replace(/^\[|\]$/g, "") || "127.0.0.1", port: Number(u.port) || 6379 };
  } catch {
    return Promise.resolve(undefined);
  }
  return new Promise((resolve) => {
    const socket = connect({ ...target, timeout: 2000 });
    const done = (why: string | undefined) => {
      socket.destroy();
      resolve(why);
    };
    socket.once("connect", () => done(undefined));
    socket.once("timeout", () => done("no answer within 2 s (a firewall, or the wrong host?)"));
    socket.once("error", (err: NodeJS.ErrnoException) => {
      const why: Record<string, string> = {
        ECONNREFUSED: "connection refused (is Redis running and listening there?)",
        ENOTFOUND: "no such host",
        EAI_AGAIN: "the host name could not be resolved",
        EHOSTUNREACH: "the host is unreachable",
        ENETUNREACH: "the network is unreachable",
      };
      done(why[err.code ?? ""] ?? err.message);
    });
  });
}

/** The one line an infrastructure failure is reported with, saying what to do where that is known. */
async function infrastructureLine(err: Error, ctx: RunContext): Promise<string> {
  if (err instanceof DataDirLocked && err.message.includes("in use by another Keyport process")) {
    const held = err.message.replace(/; stop it first.*$/, "");
    const port = ctx.config?.port ?? 3000;
    return `${held}. Stop it and run this again, or, while it runs, use its management API with a key holding keys:manage (curl -H "Authorization: Bearer $KEY" http://localhost:${port}/api/keys)`;
  }
  if (err instanceof RedisUnavailable && ctx.config?.redisUrl) {
    const u = new URL(ctx.config.redisUrl);
    const where = `${u.protocol}//${u.host}`;
    const reported = /\((.*)\)$/.exec(err.message)?.[1];
    const why = (await redisReason(ctx.config.redisUrl)) ?? (reported && reported !== "Connection is closed." ? reported : "it accepted the connection but did not answer as Redis (TLS, password or protocol?)");
    return `cannot reach REDIS_URL ${where}: ${why}`;
  }
  return err.message;
}

/** Exit codes: 0 done, 1 configuration or infrastructure, 2 how the command was called. */
async function main() {
  const ctx: RunContext = {};
  // The log lines still buffered are written before the process ends.
  const exit = async (code: number): Promise<never> => {
    await flushLogs();
    process.exit(code);
  };
  try {
    const code = await run(process.argv.slice(2), ctx);
    if (code >= 0) await exit(code);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(err.lines.map((l) => `keyport: ${l}`).join("\n") + (err.showUsage ? `\n\n${USAGE}` : ""));
      await exit(2);
    }
    if (err instanceof DomainError) {
      const lines = err.errors?.length ? err.errors.map(flagLine) : [err.detail];
      console.error(lines.map((l) => `keyport: ${l}`).join("\n"));
      await exit(STATUS[err.code] >= 500 ? 1 : 2);
    }
    if (err instanceof ConfigError || err instanceof DatabaseUnavailable || err instanceof RedisUnavailable || err instanceof DataDirLocked) {
      console.error(`keyport: ${await infrastructureLine(err, ctx)}`);
      await exit(1);
    }
    console.error(`keyport: unexpected error: ${(err as Error).message}`);
    await exit(1);
  }
}

if (import.meta.main) await main();

export { main };
