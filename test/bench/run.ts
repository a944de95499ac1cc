/**
 * `bun run bench`: the gateway's cost, side by side with bare Elysia, in one run.
 *
 * Every server is its own process on loopback, warmed up, then driven by wrk for a fixed
 * duration and connection count. Prints one table and the targets with pass/fail; `--json`
 * prints the same as one JSON document. test/bench/README.md explains the rows and keeps
 * the recorded figures.
 *
 * @example
 * bun run bench                                   # embedded rows; service rows too when
 *                                                 # TEST_DATABASE_URL and TEST_REDIS_URL are set
 * bun run bench -- --duration 5 --only baseline,embedded --json
 * bun run bench -- --cpu-prof /tmp/prof           # keyport servers write CPU profiles there
 * bun run bench -- --only proxy --proxy-rate 2000 # Keyport in front of a bare upstream vs the upstream alone
 * bun run bench -- --only limit,rate,gap,sweep    # the contract's limit row, the fixed-rate tail, the gaps during a flush and a rotation sweep
 * bun run bench -- --only cofree                  # checks that wrk/cofree.lua sees a stall that wrk's own clock hides
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { generateKey } from "../../src/keys/format.ts";
import { openPglite } from "../../src/db/client.ts";
import { sql } from "drizzle-orm";
import postgres from "postgres";
import { checkCoFree } from "./cofree-check.ts";
import { createBenchKeys, insertBenchKeys, openServiceResources, registerBenchProduct, SECRET_KEY, type BenchKey, type ServiceResources } from "./fixtures.ts";
import { benchFlush, rowsOf, type FlushResult } from "./flush.ts";
import { leaseBytesPerKey, memoryStateBytesPerKey } from "./memory.ts";
import { BASELINE, MAIN, UPSTREAM, metricValue, startServer, statusCounts, type Server } from "./procs.ts";
import { UPSTREAM_PATH } from "./upstream.ts";
import { rps, runWrk, wrkInstalled, type WrkResult } from "./wrk.ts";

const { values: opts } = parseArgs({
  args: process.argv.slice(2),
  options: {
    duration: { type: "string", default: "10" },
    warmup: { type: "string", default: "3" },
    connections: { type: "string", default: "50" },
    only: { type: "string" },
    json: { type: "boolean", default: false },
    "cpu-prof": { type: "string" },
    "database-url": { type: "string" },
    "redis-url": { type: "string" },
    "proxy-rate": { type: "string", default: "2000" },
    "proxy-connections": { type: "string", default: "50" },
    rate: { type: "string" },
  },
  strict: true,
});

const DURATION = Number(opts.duration);
const WARMUP = Number(opts.warmup);
const CONNECTIONS = Number(opts.connections);
const ONLY = opts.only ? new Set(opts.only.split(",")) : undefined;
const DATABASE_URL = opts["database-url"] ?? process.env.TEST_DATABASE_URL;
const REDIS_URL = opts["redis-url"] ?? process.env.TEST_REDIS_URL;
/** The proxy rows' fixed rate (requests/s) and connections: far below what either side can serve, so p99 is the request's own latency, not a queue. */
const PROXY_RATE = Number(opts["proxy-rate"]);
const PROXY_CONNECTIONS = Number(opts["proxy-connections"]);
/** The tail and gap rows' fixed rate: half the baseline's measured requests/s unless given. */
const TAIL_RATE = opts.rate === undefined ? undefined : Number(opts.rate);
/** The gap rows: 10,000 keys × 3 endpoints = 30,000 usage rows in every flush. */
const GAP_KEYS = 10_000;
const GAP_ENDPOINTS = ["email", "ip", "batch"];
const GAP_ROWS = GAP_KEYS * GAP_ENDPOINTS.length;
/** A flush's window: from a little before its ledger time (the rows are sorted first) to well after (the upserts). */
const GAP_WINDOW_BEFORE_MS = 500;
const GAP_WINDOW_AFTER_MS = 2000;
/** Gaps listed by cofree.lua: from this length. */
const GAP_LIST_MIN_US = 2000;
const GAP_TARGET_MS = 20;
/** The sweep rows: keys made 100 days ago (over the default maximum age of 90), all given a rotation, started, by one sweep (it starts at most 500 a pass). */
const SWEEP_KEYS = 500;
const SWEEP_MS = 5000;
/** No rotation or billing sweep in the tail and gap rows' servers: the aged keys would be rotated there. */
const NO_SWEEP = { ROTATION_SWEEP_MS: "86400000" };
/** The key cache's fill before a gap run: at most this long (its entries live 60 s). */
const WARM_LIMIT_MS = 40_000;
/** test/bench/upstream.ts registered under this id: `GET /v1/bench/things/{id}`, scope `bench:read`. */
const PROXY_PRODUCT = "bench";
const PROXY_PATH = `/v1/${PROXY_PRODUCT}${UPSTREAM_PATH}`;
/** The proxied operation's route label in Keyport's request metrics. */
const PROXY_ROUTE = `/v1/${PROXY_PRODUCT}/things/{id}`;
/** Keyport left without requests after the proxy row, for the share of its CPU its timers take. */
const IDLE_SECONDS = 5;
const EMAIL_ROUTE = "/v1/email/:address";
const EMAIL_PATH = "/v1/email/jane.doe@example.com";
const IP_ROUTE = "/v1/ip/:address";
const IP_PATH = "/v1/ip/8.8.8.8";
const HAPPY_KEYS = 64;
/** The highest limit a key may have; 64 keys × 1,667/s stay far from it at any load here. */
const HAPPY_RATE = 100_000;
const LIMITED_RATE = 10_000;
const ADMIT_RATE = 6_000;
/** Every bench key has a monthly quota, so the quota step runs (far from it: the maximum). */
const QUOTA = 1_000_000_000;

const say = (line: string) => {
  if (!opts.json) console.error(line);
};

interface Row {
  id: string;
  title: string;
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  ratio?: number;
  /**
   * Database statements per request: all of them (the query logger's count, background timers
   * included), and the request path's own (key lookups that missed the verification cache).
   */
  dbPerRequest?: number;
  hotDbPerRequest?: number;
  /** Of the statements, those of the usage flush timer, per request. */
  flushDbPerRequest?: number;
  /** Commands the Keyport processes sent to Redis per request (their own count). */
  redisPerRequest?: number;
  /** Commands Redis processed per request (INFO commandstats; script-internal calls included). */
  redisServerPerRequest?: number;
  rssMb?: number;
  /** Server CPU time per request (all its processes): robust where wall-clock rates are not. */
  cpuUsPerRequest?: number;
  /** The baseline's requests/s measured just before this row (paired rows), the ratio's denominator. */
  pairedBaselineRps?: number;
  /** The same run's p99, the reference for the added latency. */
  pairedBaselineP99Ms?: number;
  pairedBaselineCpuUs?: number;
  /** Baseline CPU per request ÷ this row's: the ratio an uncontended core would show. */
  cpuRatio?: number;
  /** The limit row (bare Elysia + the contract's key read and six headers) measured just before this row (paired rows). */
  pairedLimitRps?: number;
  pairedLimitCpuUs?: number;
  /** Requests/s ÷ the limit row's, and the limit's CPU per request ÷ this row's. */
  limitRatio?: number;
  limitCpuRatio?: number;
  statuses?: Record<string, number>;
}

const rows: Row[] = [];
const cleanups: (() => Promise<void>)[] = [];
const extras: {
  redisBytesPerKey?: Record<string, number | null>;
  inProcessBytesPerKey?: Record<string, number>;
  inProcess?: { variants: { name: string; rounds: number[]; medianUs: number }[]; failures: number; perRound: number };
  flush?: FlushResult[];
  twoInstanceLimit?: { limit: number; seconds: number; admitted: number; bound: number; largestExcess: number; largestSecond: number; perSecond: number; admittedBySecond: number[] };
  metering?: { scenario: string; answered: number; metered: number }[];
  proxy?: ProxyResult[];
  scan?: ScanBench;
  tail?: TailResult[];
  gaps?: GapResult[];
  sweep?: SweepResult[];
  cofreeCheck?: { pass: boolean; detail: string };
} = {};

/** One fixed-rate run as wrk saw it. */
interface RateRun {
  rps: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  /** Requests sent a millisecond or more after their slot: the schedule slipped, and p99 understates. */
  late: number;
  statuses: Record<string, number>;
  /** Connect, read and write errors and timeouts. */
  socketErrors: number;
}

/** The proxy rows of one mode: the upstream alone, Keyport answering its own route, then Keyport in front of the upstream, at the same rate. */
interface ProxyResult {
  mode: "embedded" | "service";
  rate: number;
  connections: number;
  direct: RateRun & { upstreamCpuSecPer1000: number };
  /** Keyport's own /v1/email (chain, handler, meter) at the same rate: the proxy row minus this is the forward's cost. */
  own: RateRun & { keyportCpuSecPer1000: number };
  proxied: RateRun & { keyportCpuSecPer1000: number; upstreamCpuSecPer1000: number };
  addedP50Ms: number;
  addedP99Ms: number;
  /** Keyport's process alone: the CPU the proxy adds in front of the upstream. */
  keyportCpuSecPer1000: number;
  /** Of it, what Keyport spends with no request at all (its timers: flush, polls, jobs), measured idle just after and spread over the run's requests. */
  keyportIdleCpuSecPer1000: number;
  /** Every process on the path through the proxy minus the upstream's alone (the upstream's own change included). */
  addedCpuSecPer1000: number;
  /** Keyport's CPU through the proxy minus on its own route: forwarding to the upstream and back (less the email handler's few µs). */
  forwardCpuSecPer1000: number;
}

/**
 * `--only` names groups: frame, embedded, service, rejected, two, limit, rate, gap, sweep,
 * proxy, memory, inprocess, flush, scan, cofree (the baseline and the limit always run, except for scan and
 * cofree alone; the limit's row is measured whenever the baseline's is, since every Keyport
 * row is reported against it).
 */
function wanted(group: string): boolean {
  return !ONLY || ONLY.has(group);
}

function keysFile(keys: string[]): string {
  const dir = mkdtempSync(join(tmpdir(), "kp-bench-keys-"));
  cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "keys.txt");
  writeFileSync(file, keys.join("\n") + "\n", { mode: 0o600 });
  return file;
}

async function drive(servers: Server[], env: Record<string, string>, seconds: number): Promise<WrkResult[]> {
  const per = Math.max(1, Math.floor(CONNECTIONS / servers.length));
  return Promise.all(servers.map((s) => runWrk({ url: s.url, script: "load.lua", seconds, connections: per, env })));
}

function combine(results: WrkResult[]): { requests: number; rps: number; p50Ms: number; p99Ms: number } {
  return {
    requests: results.reduce((n, r) => n + r.requests, 0),
    rps: results.reduce((n, r) => n + rps(r), 0),
    // Two instances: the worse of the two (percentiles cannot be merged from summaries).
    p50Ms: Math.max(...results.map((r) => r.p50Us)) / 1000,
    p99Ms: Math.max(...results.map((r) => r.p99Us)) / 1000,
  };
}

/** Warm-up, then the measured run, with the servers' counters and Redis' read around it. */
async function measure(
  id: string,
  title: string,
  servers: Server[],
  env: Record<string, string>,
  opts: { service?: ServiceResources; route?: string; paired?: boolean } = {},
): Promise<Row> {
  const { service, route = EMAIL_ROUTE } = opts;
  say(`· ${title}`);
  // The baseline right before the row: the machine's state drifts (and it is shared), so the
  // ratio compares runs a few seconds apart rather than minutes apart.
  const paired = opts.paired && reference ? await baselineNow() : undefined;
  const pairedLimit = opts.paired && limitServer ? await limitNow() : undefined;
  await drive(servers, env, WARMUP);
  const before = await Promise.all(servers.map((s) => s.metrics()));
  const redisBefore = await service?.redisCalls();
  const cpuBefore = servers.map((s) => s.cpuUs());
  const results = await drive(servers, env, DURATION);
  const cpuAfter = servers.map((s) => s.cpuUs());
  const after = await Promise.all(servers.map((s) => s.metrics()));
  const redisAfter = await service?.redisCalls();
  const c = combine(results);
  const delta = (name: string) => after.reduce((n, t, i) => n + metricValue(t, name) - metricValue(before[i]!, name), 0);
  const statuses: Record<string, number> = {};
  after.forEach((t, i) => {
    const b = statusCounts(before[i]!, route);
    for (const [s, n] of Object.entries(statusCounts(t, route))) statuses[s] = (statuses[s] ?? 0) + n - (b[s] ?? 0);
  });
  // Requests the servers answered in the window (wrk's count misses those cut off at the end).
  const answered = Object.values(statuses).reduce((a, b) => a + b, 0) || c.requests;
  const db = delta("keyport_db_queries_total");
  const flushDb = delta("keyport_usage_flush_queries_total");
  const lookups = delta("keyport_key_lookups_total");
  const keyport = before.some((t) => t.includes("keyport_db_queries_total"));
  const row: Row = {
    id,
    title,
    requests: c.requests,
    rps: c.rps,
    p50Ms: c.p50Ms,
    p99Ms: c.p99Ms,
    dbPerRequest: keyport ? db / answered : undefined,
    hotDbPerRequest: keyport ? lookups / answered : undefined,
    flushDbPerRequest: keyport ? flushDb / answered : undefined,
    redisPerRequest: service ? delta("keyport_redis_commands_total") / answered : undefined,
    redisServerPerRequest: service && redisBefore && redisAfter ? (redisAfter.total - redisBefore.total) / answered : undefined,
    rssMb: Math.max(...servers.map((s) => s.rss().now)) / 2 ** 20,
    cpuUsPerRequest: cpuAfter.reduce((n, c, i) => n + c - cpuBefore[i]!, 0) / answered,
    pairedBaselineRps: paired?.rps,
    pairedBaselineP99Ms: paired?.p99Ms,
    pairedBaselineCpuUs: paired?.cpuUsPerRequest,
    pairedLimitRps: pairedLimit?.rps,
    pairedLimitCpuUs: pairedLimit?.cpuUsPerRequest,
    statuses,
  };
  const base = rows.find((r) => r.id === "baseline-email");
  if (paired) row.ratio = row.rps / paired.rps;
  else if (base) row.ratio = row.rps / base.rps;
  const baseCpu = paired?.cpuUsPerRequest ?? base?.cpuUsPerRequest;
  if (baseCpu !== undefined && row.cpuUsPerRequest) row.cpuRatio = baseCpu / row.cpuUsPerRequest;
  const limit = rows.find((r) => r.id === "limit");
  const limitRps = pairedLimit?.rps ?? limit?.rps;
  const limitCpu = pairedLimit?.cpuUsPerRequest ?? limit?.cpuUsPerRequest;
  if (limitRps !== undefined && id !== "limit" && !id.startsWith("baseline")) row.limitRatio = row.rps / limitRps;
  if (limitCpu !== undefined && row.cpuUsPerRequest && id !== "limit" && !id.startsWith("baseline")) row.limitCpuRatio = limitCpu / row.cpuUsPerRequest;
  rows.push(row);
  return row;
}

/** The plan's limits out of reach (test/support/unmetered-plans.json): the rows measure the chain, every key far from its limits. */
const PLANS_FILE = new URL("../support/unmetered-plans.json", import.meta.url).pathname;

function keyportEnv(extra: Record<string, string>): Record<string, string> {
  return { SECRET_KEY, LOG_LEVEL: "warn", PLANS_FILE, ...extra };
}

async function startKeyport(name: string, env: Record<string, string>): Promise<Server> {
  const prof = opts["cpu-prof"];
  const server = await startServer({
    name,
    script: MAIN,
    args: ["serve"],
    env,
    bunFlags: prof ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${prof}`, `--cpu-prof-name=${name}-${Date.now()}`] : undefined,
  });
  return server;
}

async function stopChecked(server: Server): Promise<void> {
  const { code, stderr } = await server.stop();
  if (code !== 0) throw new Error(`${server.name} exited with ${code}: ${stderr.trim()}`);
}

// ---------------------------------------------------------------------------------------

/** The bare-Elysia baseline server, kept running for the paired measurements. */
let reference: { server: Server; env: Record<string, string> } | undefined;

/** The limit row's server (baseline.ts, BENCH_VARIANT=limit), kept running like the baseline for the paired measurements. */
let limitServer: Server | undefined;

/** One run (no warm-up: the server is warm) for the row measured next. */
async function runNow(server: Server, env: Record<string, string>): Promise<{ rps: number; cpuUsPerRequest: number; p99Ms: number }> {
  const cpu = server.cpuUs();
  const [r] = await drive([server], env, DURATION);
  return { rps: rps(r!), cpuUsPerRequest: (server.cpuUs() - cpu) / r!.requests, p99Ms: r!.p99Us / 1000 };
}

const baselineNow = () => runNow(reference!.server, reference!.env);
/** The limit row's server with the same keys, path and headers as the baseline. */
const limitNow = () => runNow(limitServer!, reference!.env);

async function baseline(): Promise<void> {
  const server = await startServer({ name: "baseline", script: BASELINE, env: {}, readyPath: "/json" });
  cleanups.push(async () => void (await server.stop()));
  const file = keysFile([generateKey("kp", "live")]);
  reference = { server, env: { BENCH_PATH: EMAIL_PATH, KEYS_FILE: file } };
  await measure("baseline-json", "bare Elysia, JSON route", [server], { BENCH_PATH: "/json", KEYS_FILE: file });
  await measure("baseline-email", "bare Elysia, the data-API email handler (the baseline)", [server], reference.env);
  // The contract's limit: always started (the Keyport rows are reported against it), its row measured next to the baseline's.
  const limit = await startServer({ name: "limit", script: BASELINE, env: { BENCH_VARIANT: "limit" }, readyPath: "/json" });
  cleanups.push(async () => void (await limit.stop()));
  limitServer = limit;
  await measure("limit", "the contract's limit: the same + the key read and the six headers, as cheap as they can be", [limit], reference.env);
  if (wanted("frame")) {
    const frame = await startServer({ name: "frame", script: BASELINE, env: { BENCH_VARIANT: "frame", SECRET_KEY }, readyPath: "/healthz" });
    try {
      await measure("frame", "Keyport's app around the same handler, no chain (reference)", [frame], { BENCH_PATH: "/frame/email/jane.doe@example.com", KEYS_FILE: file }, { route: "/frame/email/:address", paired: true });
    } finally {
      await frame.stop();
    }
  }
}

async function embedded(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "kp-bench-embedded-"));
  cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
  say("· embedded: creating keys");
  const keys = await createBenchKeys({ DATA_DIR: dataDir }, [{ name: "happy", count: HAPPY_KEYS, rateLimit: HAPPY_RATE, monthlyQuota: QUOTA }]);
  const happy = keys.happy!;
  const env = { BENCH_PATH: EMAIL_PATH, KEYS_FILE: keysFile(happy.map((k) => k.secret)) };
  let answered = 0;
  for (const [id, level, title] of [
    ["embedded", "warn", "Keyport embedded (PGlite, in-process state), live key, cache hit"],
    ["embedded-log", "info", "  … the same with the access log on (LOG_LEVEL=info)"],
  ] as const) {
    // The access log's row runs with its mode's (its target compares the two).
    if (!wanted(id) && !(id === "embedded-log" && wanted("embedded"))) continue;
    const server = await startKeyport(id, keyportEnv({ DATA_DIR: dataDir, LOG_LEVEL: level }));
    try {
      await measure(id, title, [server], env, { paired: id === "embedded" });
      const m = statusCounts(await server.metrics(), EMAIL_ROUTE);
      answered += Object.values(m).reduce((a, b) => a + b, 0);
    } finally {
      await stopChecked(server);
    }
  }
  if (answered > 0) {
    const database = await openPglite(dataDir);
    try {
      const ids = happy.map((k) => `'${k.id}'`).join(",");
      const [r] = rowsOf<{ n: string }>(await database.db.execute(sql.raw(`select coalesce(sum(successes + errors), 0)::bigint as n from key_usage where key_id in (${ids})`)));
      (extras.metering ??= []).push({ scenario: "embedded", answered, metered: Number(r?.n ?? 0) });
    } finally {
      await database.close();
    }
  }
}

async function service(): Promise<void> {
  if (!DATABASE_URL || !REDIS_URL) {
    say("· service rows skipped: set TEST_DATABASE_URL and TEST_REDIS_URL (or --database-url, --redis-url)");
    return;
  }
  const res = await openServiceResources(DATABASE_URL, REDIS_URL);
  cleanups.push(() => res.close());
  say(`· service: database ${new URL(res.databaseUrl).pathname.slice(1)}, Redis db ${res.redisDb}; creating keys`);
  const base = { DATABASE_URL: res.databaseUrl, REDIS_URL: res.redisUrl };
  const keys = await createBenchKeys(base, [
    { name: "happy", count: HAPPY_KEYS, rateLimit: HAPPY_RATE, monthlyQuota: QUOTA },
    { name: "limited", count: 1, rateLimit: LIMITED_RATE, monthlyQuota: QUOTA },
    { name: "admit", count: 1, rateLimit: ADMIT_RATE, monthlyQuota: QUOTA },
  ]);
  const happy = keys.happy!;
  const limited = keys.limited![0]!;
  const admit = keys.admit![0]!;
  const happyEnv = { BENCH_PATH: EMAIL_PATH, KEYS_FILE: keysFile(happy.map((k) => k.secret)) };
  const servers: Server[] = [];
  const answeredBy = new Map<Server, number>();
  const stopAll = async () => {
    for (const s of servers.splice(0)) {
      answeredBy.set(s, Object.values(statusCounts(await s.metrics(), EMAIL_ROUTE)).reduce((a, b) => a + b, 0));
      await stopChecked(s);
    }
  };
  const memoryOf = async (label: string, key: BenchKey) => {
    extras.redisBytesPerKey = { ...extras.redisBytesPerKey, [label]: await res.redisMemoryUsage(`keyport:rl:${key.id}`) };
  };
  try {
    const one = await startKeyport("service", keyportEnv(base));
    servers.push(one);
    if (wanted("service")) {
      await measure("service", "Keyport service (Postgres + Redis), live key, cache hit", [one], happyEnv, { service: res, paired: true });
      await memoryOf(`limit ${HAPPY_RATE}/min, far from it`, happy[0]!);
      // The access log's row right after the row without it (its target compares the two), on
      // a second instance while the first stays up (idle) for the rows after.
      const logged = await startKeyport("service-log", keyportEnv({ ...base, LOG_LEVEL: "info" }));
      try {
        await measure("service-log", "  … the same with the access log on (LOG_LEVEL=info)", [logged], happyEnv, { service: res });
      } finally {
        answeredBy.set(logged, Object.values(statusCounts(await logged.metrics(), EMAIL_ROUTE)).reduce((a, b) => a + b, 0));
        await stopChecked(logged);
      }
    }
    if (wanted("rejected")) {
      // The key over its limit first: after the rows of bad keys the client address is over
      // its failure budget, and a key not yet in the cache is then refused (429) before it is
      // looked up, so those answers name no key and cannot be metered to one. The bad keys go
      // to /v1/ip: answers without a key are not metered, so /v1/email's answers stay the
      // metering check's reference.
      const badChecksum = `kp_live_${"A".repeat(40)}${"zzzzzz"}`;
      await measure("rejected-limited", `rejected: over its limit (${LIMITED_RATE.toLocaleString("en")}/min, 429)`, [one], { BENCH_PATH: EMAIL_PATH, KEYS_FILE: keysFile([limited.secret]) }, { service: res });
      await memoryOf(`limit ${LIMITED_RATE}/min, under full load`, limited);
      await measure("rejected-checksum", "rejected: bad checksum (one client IP: 401, then 429)", [one], { BENCH_PATH: IP_PATH, KEYS_FILE: keysFile([badChecksum]) }, { service: res, route: IP_ROUTE });
      await measure("rejected-unknown", "rejected: well-formed unknown key", [one], { BENCH_PATH: IP_PATH, KEYS_FILE: keysFile([generateKey("kp", "live")]) }, { service: res, route: IP_ROUTE });
    }
    if (wanted("two")) {
      const two = await startKeyport("service-2", keyportEnv(base));
      servers.push(two);
      await measure("two-instances", "two service instances sharing Redis, load split", [one, two], happyEnv, { service: res, paired: true });
      await admittedAcrossTwo(one, two, admit);
      await memoryOf(`limit ${ADMIT_RATE}/min, two instances at it`, admit);
    }
  } finally {
    await stopAll();
  }
  const answered = [...answeredBy.values()].reduce((a, b) => a + b, 0);
  const sqlc = postgres(res.databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const ids = [...happy, limited, admit].map((k) => k.id);
    const [r] = await sqlc`select coalesce(sum(successes + errors), 0)::bigint as n from key_usage where key_id in ${sqlc(ids)}`;
    (extras.metering ??= []).push({ scenario: "service", answered, metered: Number(r?.n ?? 0) });
  } finally {
    await sqlc.end();
  }
}

/**
 * Both instances hammer one key whose limit is ADMIT_RATE/min, the key starting full. GCRA
 * admits at most `limit + elapsed × limit/60` in any span (the burst, then the rate), so
 * for every span of whole seconds (by the server's Date header) the 200s are compared with
 * that bound; the total comes from the servers' own counters.
 */
async function admittedAcrossTwo(a: Server, b: Server, key: BenchKey): Promise<void> {
  say(`· two instances, one key at ${ADMIT_RATE.toLocaleString("en")}/min: counting admissions`);
  const env = { BENCH_PATH: EMAIL_PATH, BENCH_KEY: key.secret };
  const before = await Promise.all([a.metrics(), b.metrics()]);
  const started = performance.now();
  const results = await Promise.all(
    [a, b].map((s) => runWrk({ url: s.url, script: "admitted.lua", seconds: DURATION, connections: Math.floor(CONNECTIONS / 2), env })),
  );
  const seconds = (performance.now() - started) / 1000;
  const after = await Promise.all([a.metrics(), b.metrics()]);
  const admitted = after.reduce((n, t, i) => n + (statusCounts(t, EMAIL_ROUTE)["200"] ?? 0) - (statusCounts(before[i]!, EMAIL_ROUTE)["200"] ?? 0), 0);
  const bySecond = new Map<number, number>();
  for (const r of results) {
    for (const [date, n] of Object.entries(r.admittedPerSecond ?? {})) {
      const t = Date.parse(date) / 1000;
      bySecond.set(t, (bySecond.get(t) ?? 0) + n);
    }
  }
  const times = [...bySecond.keys()].sort((x, y) => x - y);
  const first = times[0] ?? 0;
  const span = times.length ? times[times.length - 1]! - first + 1 : 0;
  const counts = Array.from({ length: span }, (_, i) => bySecond.get(first + i) ?? 0);
  const rate = ADMIT_RATE / 60;
  let largestExcess = -Infinity;
  for (let i = 0; i < counts.length; i++) {
    let sum = 0;
    for (let j = i; j < counts.length; j++) {
      sum += counts[j]!;
      // j - i + 1 whole seconds by the Date header span less than that many seconds of time.
      largestExcess = Math.max(largestExcess, sum - (ADMIT_RATE + (j - i + 1) * rate));
    }
  }
  // After the first two seconds the burst is spent: a second holds about limit/60.
  const largestSecond = Math.max(0, ...counts.slice(2));
  extras.twoInstanceLimit = {
    limit: ADMIT_RATE,
    seconds,
    admitted,
    bound: Math.floor(ADMIT_RATE + seconds * rate),
    largestExcess: Number.isFinite(largestExcess) ? largestExcess : 0,
    largestSecond,
    perSecond: rate,
    admittedBySecond: counts,
  };
}

/** A warm-up, then the measured run, both at PROXY_RATE; the CPU each of `watched` used in the measured run. */
async function atRate(target: Server, path: string, keys: string, watched: Server[]): Promise<{ run: RateRun; requests: number; cpuUs: number[] }> {
  const env = { BENCH_PATH: path, KEYS_FILE: keys, BENCH_RATE: String(PROXY_RATE) };
  const go = (seconds: number) => runWrk({ url: target.url, script: "rate.lua", seconds, connections: PROXY_CONNECTIONS, env });
  await go(WARMUP);
  const before = watched.map((s) => s.cpuUs());
  const r = await go(DURATION);
  const cpuUs = watched.map((s, i) => s.cpuUs() - before[i]!);
  return {
    run: { rps: rps(r), p50Ms: r.p50Us / 1000, p90Ms: r.p90Us / 1000, p99Ms: r.p99Us / 1000, late: r.late ?? 0, statuses: r.statuses ?? {}, socketErrors: r.connectErrors + r.readErrors + r.writeErrors + r.timeouts },
    requests: r.requests,
    cpuUs,
  };
}

/**
 * Keyport in front of a bare upstream (test/bench/upstream.ts, registered as a product) against
 * the upstream called directly, at the same fixed rate and with the same keys and headers: the
 * p99 and the CPU the proxy adds, per mode. The upstream is measured alone just before the
 * row, like the paired baseline.
 */
async function proxy(): Promise<void> {
  if (!wanted("proxy")) return;
  const upstream = await startServer({ name: "upstream", script: UPSTREAM, env: {} });
  cleanups.push(async () => void (await upstream.stop()));
  const modes: { mode: ProxyResult["mode"]; env: () => Promise<Record<string, string>> }[] = [
    {
      mode: "embedded",
      env: async () => {
        const dataDir = mkdtempSync(join(tmpdir(), "kp-bench-proxy-"));
        cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
        return { DATA_DIR: dataDir };
      },
    },
  ];
  if (DATABASE_URL && REDIS_URL) {
    modes.push({
      mode: "service",
      env: async () => {
        const res = await openServiceResources(DATABASE_URL, REDIS_URL);
        cleanups.push(() => res.close());
        return { DATABASE_URL: res.databaseUrl, REDIS_URL: res.redisUrl };
      },
    });
  } else say("· proxy, service mode skipped: set TEST_DATABASE_URL and TEST_REDIS_URL (or --database-url, --redis-url)");
  const rate = PROXY_RATE.toLocaleString("en");
  for (const { mode, env: open } of modes) {
    const env = await open();
    say(`· proxy (${mode}): the upstream registered as product "${PROXY_PRODUCT}", creating keys`);
    await registerBenchProduct(env, PROXY_PRODUCT, upstream.url);
    const keys = await createBenchKeys(env, [{ name: "proxy", count: HAPPY_KEYS, rateLimit: HAPPY_RATE, monthlyQuota: QUOTA, scopes: [`${PROXY_PRODUCT}:read`, "email:read"] }]);
    const file = keysFile(keys.proxy!.map((k) => k.secret));
    const keyport = await startKeyport(`proxy-${mode}`, keyportEnv(env));
    let answered = 0;
    try {
      const directTitle = `the upstream called directly, ${rate} req/s (for the ${mode} proxy row)`;
      say(`· ${directTitle}`);
      const direct = await atRate(upstream, UPSTREAM_PATH, file, [upstream]);
      const ownTitle = `  Keyport ${mode} answering its own /v1/email, ${rate} req/s (the chain, no upstream)`;
      say(`· ${ownTitle.trim()}`);
      const own = await atRate(keyport, EMAIL_PATH, file, [keyport]);
      const proxiedTitle = `Keyport ${mode} in front of the upstream, ${rate} req/s`;
      say(`· ${proxiedTitle}`);
      const proxied = await atRate(keyport, PROXY_PATH, file, [keyport, upstream]);
      const [keyportUs, upstreamUs] = proxied.cpuUs as [number, number];
      const idleFrom = keyport.cpuUs();
      await Bun.sleep(IDLE_SECONDS * 1000);
      const idleUsPerSecond = (keyport.cpuUs() - idleFrom) / IDLE_SECONDS;
      const perThousand = (us: number, n: number) => (us / 1e6 / n) * 1000;
      const result: ProxyResult = {
        mode,
        rate: PROXY_RATE,
        connections: PROXY_CONNECTIONS,
        direct: { ...direct.run, upstreamCpuSecPer1000: perThousand(direct.cpuUs[0]!, direct.requests) },
        own: { ...own.run, keyportCpuSecPer1000: perThousand(own.cpuUs[0]!, own.requests) },
        proxied: { ...proxied.run, keyportCpuSecPer1000: perThousand(keyportUs, proxied.requests), upstreamCpuSecPer1000: perThousand(upstreamUs, proxied.requests) },
        addedP50Ms: proxied.run.p50Ms - direct.run.p50Ms,
        addedP99Ms: proxied.run.p99Ms - direct.run.p99Ms,
        keyportCpuSecPer1000: perThousand(keyportUs, proxied.requests),
        keyportIdleCpuSecPer1000: perThousand(idleUsPerSecond * DURATION, proxied.requests),
        addedCpuSecPer1000: perThousand(keyportUs + upstreamUs, proxied.requests) - perThousand(direct.cpuUs[0]!, direct.requests),
        forwardCpuSecPer1000: perThousand(keyportUs, proxied.requests) - perThousand(own.cpuUs[0]!, own.requests),
      };
      (extras.proxy ??= []).push(result);
      rows.push(
        { id: `proxy-direct-${mode}`, title: directTitle, requests: direct.requests, rps: direct.run.rps, p50Ms: direct.run.p50Ms, p99Ms: direct.run.p99Ms, rssMb: upstream.rss().now / 2 ** 20, cpuUsPerRequest: direct.cpuUs[0]! / direct.requests, statuses: direct.run.statuses },
        { id: `proxy-own-${mode}`, title: ownTitle, requests: own.requests, rps: own.run.rps, p50Ms: own.run.p50Ms, p99Ms: own.run.p99Ms, cpuUsPerRequest: own.cpuUs[0]! / own.requests, statuses: own.run.statuses },
        // CPU of both processes on the path, so the column compares with the upstream's row.
        { id: `proxy-${mode}`, title: proxiedTitle, requests: proxied.requests, rps: proxied.run.rps, p50Ms: proxied.run.p50Ms, p99Ms: proxied.run.p99Ms, rssMb: keyport.rss().now / 2 ** 20, cpuUsPerRequest: (keyportUs + upstreamUs) / proxied.requests, statuses: proxied.run.statuses },
      );
      const text = await keyport.metrics();
      answered = [PROXY_ROUTE, EMAIL_ROUTE].reduce((n, route) => n + Object.values(statusCounts(text, route)).reduce((a, b) => a + b, 0), 0);
    } finally {
      await stopChecked(keyport);
    }
    (extras.metering ??= []).push({ scenario: `proxy, ${mode}`, answered, metered: await meteredOf(env, keys.proxy!) });
  }
}

/** Requests the usage table holds for `keys`, on the database `env` selects (its server stopped). */
async function meteredOf(env: Record<string, string>, keys: BenchKey[]): Promise<number> {
  const ids = keys.map((k) => k.id);
  if (env.DATA_DIR) {
    const database = await openPglite(env.DATA_DIR);
    try {
      const list = ids.map((id) => `'${id}'`).join(",");
      const [r] = rowsOf<{ n: string }>(await database.db.execute(sql.raw(`select coalesce(sum(successes + errors), 0)::bigint as n from key_usage where key_id in (${list})`)));
      return Number(r?.n ?? 0);
    } finally {
      await database.close();
    }
  }
  const sqlc = postgres(env.DATABASE_URL!, { max: 1, onnotice: () => {} });
  try {
    const [r] = await sqlc`select coalesce(sum(successes + errors), 0)::bigint as n from key_usage where key_id in ${sqlc(ids)}`;
    return Number(r?.n ?? 0);
  } finally {
    await sqlc.end();
  }
}

// ---------------------------------------------------------------------------------------
// The fixed-rate tail and the gaps between answers during a flush (issue 22)

interface Percentiles {
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

/** One fixed-rate run through wrk/cofree.lua. */
interface TailRun {
  target: string;
  rate: number;
  connections: number;
  seconds: number;
  rps: number;
  requests: number;
  /** Requests sent a millisecond or more after their slot: the schedule slipped (the latency from the slot still counts them whole). */
  late: number;
  statuses: Record<string, number>;
  /** Connect, read and write errors and timeouts. */
  socketErrors: number;
  /** From each request's slot on the schedule: free of coordinated omission. */
  cofree: Percentiles;
  /** The same answers from their actual send (wrk's own measure, before its correction). */
  fromSend: Percentiles;
  /** wrk's own figures: from the send, then "corrected" by its guess from the run's mean rate. */
  wrk: { p99Ms: number; p999Ms: number; maxMs: number };
  /** The server's CPU (all its processes) per request in the measured run. */
  cpuUsPerRequest: number;
  longestGapMs: number;
}

/** The tail rows of one mode: the baseline, the limit and Keyport at the same rate, one after the other. */
interface TailResult {
  mode: "embedded" | "service";
  rate: number;
  connections: number;
  baseline: TailRun;
  limit: TailRun;
  keyport: TailRun;
  addedP99Ms: number;
  addedP999Ms: number;
  /** Over the limit row's at the same rate. */
  addedP99VsLimitMs: number;
  addedP999VsLimitMs: number;
}

/** One usage flush seen in the server's ledger (usage_flushes) during a gap run. */
interface GapFlush {
  /** The ledger's time (the flush's first transaction began), ISO and ms since the epoch. */
  at: string;
  atMs: number;
  rows: number;
  parts: number;
  /** The longest gap between answers overlapping the flush's window, and where it ended (ms after the ledger time). */
  longestGapMs: number;
  longestGapEndMs: number | undefined;
}

/** A Keyport server holding 30,000 unflushed usage rows at every flush, driven at the fixed rate across its flushes. */
interface GapResult {
  mode: "embedded" | "service";
  rate: number;
  connections: number;
  seconds: number;
  keys: number;
  endpoints: string[];
  flushMs: number;
  window: { beforeMs: number; afterMs: number };
  /** Gaps of this length or more are listed (and so placed in or out of a window). */
  listedFromMs: number;
  run: TailRun;
  flushes: GapFlush[];
  /** The flushes of GAP_ROWS rows, and the longest gap in their windows. */
  fullFlushes: number;
  longestInFlushMs: number;
  /** Outside every flush's window (the cache fill of the first seconds included): the machine's and the client's own pauses. */
  longestOutsideMs: number;
  longestOverallMs: number;
  /** The key cache filled before the run (warmKeyCache), and the lookups during the run (0 unless entries went stale). */
  cacheWarmSeconds: number;
  lookupsBefore: number;
  lookupsDuring: number;
}

/** The fixed rate of the tail and gap rows: half the baseline's capacity measured in this run (or --rate). */
function tailRate(): number {
  if (TAIL_RATE !== undefined) return TAIL_RATE;
  const base = rows.find((r) => r.id === "baseline-email");
  if (!base) throw new Error("the tail rows need the baseline row (it always runs)");
  return Math.max(100, Math.round(base.rps / 2 / 100) * 100);
}

const msOf = (us: number) => us / 1000;

function toTailRun(target: string, r: WrkResult, rate: number, seconds: number, cpuUs: number): TailRun {
  const c = r.cofree!;
  const f = r.fromSend!;
  return {
    target,
    rate,
    connections: CONNECTIONS,
    seconds,
    rps: rps(r),
    requests: r.requests,
    late: r.late ?? 0,
    statuses: r.statuses ?? {},
    socketErrors: r.connectErrors + r.readErrors + r.writeErrors + r.timeouts,
    cofree: { p50Ms: msOf(c.p50Us), p90Ms: msOf(c.p90Us), p99Ms: msOf(c.p99Us), p999Ms: msOf(c.p999Us), maxMs: msOf(c.maxUs) },
    fromSend: { p50Ms: msOf(f.p50Us), p90Ms: msOf(f.p90Us), p99Ms: msOf(f.p99Us), p999Ms: msOf(f.p999Us), maxMs: msOf(f.maxUs) },
    wrk: { p99Ms: msOf(r.p99Us), p999Ms: msOf(r.p999Us ?? 0), maxMs: msOf(r.maxUs) },
    cpuUsPerRequest: cpuUs / Math.max(1, r.requests),
    longestGapMs: msOf(r.gaps?.maxUs ?? 0),
  };
}

/** A warm-up at `rate` (unless `warm` is false), then the measured run, through cofree.lua. */
async function atTailRate(server: Server, target: string, env: Record<string, string>, rate: number, seconds: number, warm = true): Promise<{ run: TailRun; raw: WrkResult }> {
  const go = (s: number) => runWrk({ url: server.url, script: "cofree.lua", seconds: s, connections: CONNECTIONS, env: { ...env, BENCH_RATE: String(rate) } });
  if (warm) await go(WARMUP);
  const cpu = server.cpuUs();
  const raw = await go(seconds);
  return { run: toTailRun(target, raw, rate, seconds, server.cpuUs() - cpu), raw };
}

/** Where a mode's Keyport servers keep their data: a fresh PGlite directory, or a fresh Postgres database and Redis logical database. */
function modesForTail(): { mode: "embedded" | "service"; open: () => Promise<Record<string, string>> }[] {
  const modes: { mode: "embedded" | "service"; open: () => Promise<Record<string, string>> }[] = [
    {
      mode: "embedded",
      open: async () => {
        const dataDir = mkdtempSync(join(tmpdir(), "kp-bench-tail-"));
        cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
        return { DATA_DIR: dataDir };
      },
    },
  ];
  if (DATABASE_URL && REDIS_URL) {
    modes.push({
      mode: "service",
      open: async () => {
        const res = await openServiceResources(DATABASE_URL, REDIS_URL);
        cleanups.push(() => res.close());
        return { DATABASE_URL: res.databaseUrl, REDIS_URL: res.redisUrl };
      },
    });
  } else say("· tail and gap rows, service mode skipped: set TEST_DATABASE_URL and TEST_REDIS_URL (or --database-url, --redis-url)");
  return modes;
}

/**
 * The tail at a fixed rate (group `rate`) and the gaps during a flush (group `gap`), per mode
 * on one set of keys: GAP_KEYS keys with the three endpoints' scopes, of which the first
 * HAPPY_KEYS drive the tail rows.
 */
async function tailAndGaps(): Promise<void> {
  if (!wanted("rate") && !wanted("gap") && !wanted("sweep")) return;
  const rate = tailRate();
  for (const { mode, open } of modesForTail()) {
    const env = await open();
    const fresh = wanted("gap") ? GAP_KEYS : HAPPY_KEYS;
    const aged = wanted("sweep") ? SWEEP_KEYS : 0;
    say(`· tail/gap/sweep (${mode}): writing ${(fresh + aged).toLocaleString("en")} keys`);
    const keys = await insertBenchKeys(env, { count: fresh + aged, rateLimit: HAPPY_RATE, monthlyQuota: QUOTA, scopes: ["email:read", "ip:read", "batch:write"] }, { count: aged, days: 100 });
    if (wanted("rate")) await tail(mode, env, keys.slice(0, HAPPY_KEYS), rate);
    if (wanted("gap")) await gaps(mode, env, keys.slice(0, fresh), rate);
    if (wanted("sweep")) await sweepGaps(mode, env, keys.slice(0, HAPPY_KEYS), aged, rate);
  }
}

/** A rotation sweep with work (SWEEP_KEYS rotations scheduled and started) during a run at the fixed rate. */
interface SweepResult {
  mode: "embedded" | "service";
  rate: number;
  seconds: number;
  sweepMs: number;
  /** Rotations the sweep made and started, and the span from the first made to the last started (ms). */
  rotations: number;
  started: number;
  spanMs: number;
  /** The window: [first made − 100 ms, last started + 500 ms], ms since the epoch. */
  windowFromMs: number;
  windowToMs: number;
  longestInSweepMs: number;
  longestOutsideMs: number;
  longestOverallMs: number;
  run: TailRun;
}

/**
 * The rotation sweep's pause: a Keyport server whose database holds SWEEP_KEYS keys made 100
 * days ago, its sweep every SWEEP_MS, driven at the fixed rate on the 64 tail keys from its
 * start for at least 2.5 sweep intervals. The first sweep schedules a rotation for each old key
 * (one transaction: the insert, an audit row and an event each), then starts them (a new key,
 * its sealed secret, a transaction each) and announces the old keys to the cache. When, comes
 * from the rotations' own rows (created_at, started_at), read after SIGTERM.
 */
async function sweepGaps(mode: "embedded" | "service", env: Record<string, string>, keys: BenchKey[], aged: number, rate: number): Promise<void> {
  const seconds = Math.max(DURATION, Math.ceil((2.5 * SWEEP_MS) / 1000));
  say(`· sweep (${mode}): ${aged} keys due for rotation, ROTATION_SWEEP_MS=${SWEEP_MS}, ${rate.toLocaleString("en")} req/s for ${seconds} s`);
  const file = keysFile(keys.map((k) => k.secret));
  const server = await startKeyport(`sweep-${mode}`, keyportEnv({ ...env, ROTATION_SWEEP_MS: String(SWEEP_MS) }));
  let measured: { run: TailRun; raw: WrkResult };
  try {
    measured = await atTailRate(server, `keyport-${mode}, a sweep of ${aged} rotations`, { KEYS_FILE: file, BENCH_GAP_MIN_US: String(GAP_LIST_MIN_US) }, rate, seconds, false);
  } finally {
    await stopChecked(server);
  }
  const query = "select (extract(epoch from created_at) * 1000)::float8 as made, (extract(epoch from started_at) * 1000)::float8 as started from key_rotations";
  let raw: { made: number; started: number | null }[];
  if (env.DATA_DIR) {
    const database = await openPglite(env.DATA_DIR);
    try {
      raw = rowsOf<{ made: number; started: number | null }>(await database.db.execute(sql.raw(query)));
    } finally {
      await database.close();
    }
  } else {
    const sqlc = postgres(env.DATABASE_URL!, { max: 1, onnotice: () => {} });
    try {
      raw = (await sqlc.unsafe(query)) as unknown as { made: number; started: number | null }[];
    } finally {
      await sqlc.end();
    }
  }
  const made = raw.map((r) => Number(r.made));
  const started = raw.filter((r) => r.started !== null).map((r) => Number(r.started));
  const g = measured.raw.gaps!;
  const from = made.length ? Math.min(...made) - 100 : Infinity;
  const to = started.length ? Math.max(...started) + 500 : made.length ? Math.max(...made) + 500 : -Infinity;
  let inside = 0;
  let outside = 0;
  for (const [end, us] of g.list) {
    if (end >= from && end - us / 1000 <= to) inside = Math.max(inside, us / 1000);
    else outside = Math.max(outside, us / 1000);
  }
  (extras.sweep ??= []).push({
    mode,
    rate,
    seconds,
    sweepMs: SWEEP_MS,
    rotations: made.length,
    started: started.length,
    spanMs: made.length ? Math.max(...(started.length ? started : made)) - Math.min(...made) : 0,
    windowFromMs: from,
    windowToMs: to,
    longestInSweepMs: inside,
    longestOutsideMs: outside,
    longestOverallMs: g.maxUs / 1000,
    run: measured.run,
  });
}

/** The baseline, the limit and Keyport driven one after the other at `rate` with the same keys and paths (/v1/email/s<slot>@example.com). */
async function tail(mode: "embedded" | "service", env: Record<string, string>, keys: BenchKey[], rate: number): Promise<void> {
  const file = keysFile(keys.map((k) => k.secret));
  const keyport = await startKeyport(`tail-${mode}`, keyportEnv({ ...env, ...NO_SWEEP }));
  try {
    const at = `${rate.toLocaleString("en")} req/s`;
    say(`· tail (${mode}) at ${at}: the baseline`);
    const baseline = await atTailRate(reference!.server, "baseline", { KEYS_FILE: file }, rate, DURATION);
    say(`· tail (${mode}) at ${at}: the limit`);
    const limit = await atTailRate(limitServer!, "limit", { KEYS_FILE: file }, rate, DURATION);
    say(`· tail (${mode}) at ${at}: Keyport ${mode}`);
    const own = await atTailRate(keyport, `keyport-${mode}`, { KEYS_FILE: file }, rate, DURATION);
    (extras.tail ??= []).push({
      mode,
      rate,
      connections: CONNECTIONS,
      baseline: baseline.run,
      limit: limit.run,
      keyport: own.run,
      addedP99Ms: own.run.cofree.p99Ms - baseline.run.cofree.p99Ms,
      addedP999Ms: own.run.cofree.p999Ms - baseline.run.cofree.p999Ms,
      addedP99VsLimitMs: own.run.cofree.p99Ms - limit.run.cofree.p99Ms,
      addedP999VsLimitMs: own.run.cofree.p999Ms - limit.run.cofree.p999Ms,
    });
  } finally {
    await stopChecked(keyport);
  }
}

/** The ledger of applied flushes (one row per part: `<flush id>.<part>`), on the database `env` selects (its server stopped). */
async function flushLedger(env: Record<string, string>): Promise<{ id: string; rows: number; atMs: number }[]> {
  const query = "select flush_id as id, rows, (extract(epoch from applied_at) * 1000)::float8 as at from usage_flushes";
  let raw: { id: string; rows: number; at: number }[];
  if (env.DATA_DIR) {
    const database = await openPglite(env.DATA_DIR);
    try {
      raw = rowsOf<{ id: string; rows: number; at: number }>(await database.db.execute(sql.raw(query)));
    } finally {
      await database.close();
    }
  } else {
    const sqlc = postgres(env.DATABASE_URL!, { max: 1, onnotice: () => {} });
    try {
      raw = (await sqlc.unsafe(query)) as unknown as { id: string; rows: number; at: number }[];
    } finally {
      await sqlc.end();
    }
  }
  return raw.map((r) => ({ id: String(r.id), rows: Number(r.rows), atMs: Number(r.at) }));
}

/**
 * GAP_KEYS keys × the three endpoints at the fixed rate, with USAGE_FLUSH_MS such that every
 * interval sends each of the 30,000 (key, endpoint) pairs at least twice: every timer flush
 * writes GAP_ROWS rows (the first inserts them, the next add to them). cofree.lua stamps every
 * answer; the flushes' times come from the server's ledger, read after it stops; a gap
 * counts for a flush when it overlaps [ledger time − GAP_WINDOW_BEFORE_MS, + GAP_WINDOW_AFTER_MS].
 */
async function gaps(mode: "embedded" | "service", env: Record<string, string>, keys: BenchKey[], rate: number): Promise<void> {
  const flushMs = Math.max(5000, Math.ceil((2 * GAP_ROWS) / rate) * 1000);
  const seconds = Math.max(DURATION, Math.ceil((2.2 * flushMs) / 1000) + 1);
  const file = keysFile(keys.map((k) => k.secret));
  say(`· gaps (${mode}): ${keys.length.toLocaleString("en")} keys × ${GAP_ENDPOINTS.length} endpoints at ${rate.toLocaleString("en")} req/s for ${seconds} s, USAGE_FLUSH_MS=${flushMs}`);
  const server = await startKeyport(`gap-${mode}`, keyportEnv({ ...env, ...NO_SWEEP, USAGE_FLUSH_MS: String(flushMs) }));
  let measured: { run: TailRun; raw: WrkResult };
  let warm: { seconds: number; lookups: number };
  let lookupsDuring: number;
  try {
    warm = await warmKeyCache(server, file, keys.length);
    const before = metricValue(await server.metrics(), "keyport_key_lookups_total");
    measured = await atTailRate(server, `keyport-${mode}, ${GAP_ROWS.toLocaleString("en")} usage rows a flush`, { KEYS_FILE: file, BENCH_ENDPOINTS: GAP_ENDPOINTS.join(","), BENCH_GAP_MIN_US: String(GAP_LIST_MIN_US) }, rate, seconds, false);
    lookupsDuring = metricValue(await server.metrics(), "keyport_key_lookups_total") - before;
  } finally {
    await stopChecked(server);
  }
  const g = measured.raw.gaps!;
  const byFlush = new Map<string, { rows: number; parts: number; atMs: number }>();
  for (const part of await flushLedger(env)) {
    const id = part.id.replace(/\.\d+$/, "");
    const f = byFlush.get(id) ?? { rows: 0, parts: 0, atMs: Infinity };
    f.rows += part.rows;
    f.parts++;
    f.atMs = Math.min(f.atMs, part.atMs);
    byFlush.set(id, f);
  }
  // The flushes during the run (not the one at SIGTERM, after the last answer).
  const during = [...byFlush.values()].filter((f) => f.atMs >= g.firstAnswerMs - GAP_WINDOW_BEFORE_MS && f.atMs <= g.lastAnswerMs).sort((a, b) => a.atMs - b.atMs);
  const overlaps = (end: number, us: number, f: { atMs: number }) => end >= f.atMs - GAP_WINDOW_BEFORE_MS && end - us / 1000 <= f.atMs + GAP_WINDOW_AFTER_MS;
  const flushes: GapFlush[] = during.map((f) => {
    let longest = 0;
    let endMs: number | undefined;
    for (const [end, us] of g.list) {
      if (overlaps(end, us, f) && us / 1000 > longest) {
        longest = us / 1000;
        endMs = end - f.atMs;
      }
    }
    return { at: new Date(f.atMs).toISOString(), atMs: f.atMs, rows: f.rows, parts: f.parts, longestGapMs: longest, longestGapEndMs: endMs };
  });
  const full = flushes.filter((f) => f.rows >= GAP_ROWS);
  let outside = 0;
  for (const [end, us] of g.list) if (!during.some((f) => overlaps(end, us, f))) outside = Math.max(outside, us / 1000);
  (extras.gaps ??= []).push({
    mode,
    rate,
    connections: CONNECTIONS,
    seconds,
    keys: keys.length,
    endpoints: GAP_ENDPOINTS,
    flushMs,
    window: { beforeMs: GAP_WINDOW_BEFORE_MS, afterMs: GAP_WINDOW_AFTER_MS },
    listedFromMs: GAP_LIST_MIN_US / 1000,
    run: measured.run,
    flushes,
    fullFlushes: full.length,
    longestInFlushMs: Math.max(0, ...full.map((f) => f.longestGapMs)),
    longestOutsideMs: outside,
    longestOverallMs: g.maxUs / 1000,
    cacheWarmSeconds: warm.seconds,
    lookupsBefore: warm.lookups,
    lookupsDuring,
  });
}

/**
 * Every key of `file` looked up once before the gap run, so that its gaps are the flush's and
 * not 10,000 cache misses': GET /v1/email flat out (load.lua cycles through the keys) in
 * 2-second runs until the server's key lookups reach `count` (at most WARM_LIMIT_MS: the cache
 * keeps an entry 60 s, so a slower fill would expire its first keys during the run). Its email rows
 * are flushed by the timer meanwhile or merged into the run's first flush, which writes the
 * same 30,000 rows either way.
 */
async function warmKeyCache(server: Server, file: string, count: number): Promise<{ seconds: number; lookups: number }> {
  const started = performance.now();
  const secrets = (await Bun.file(file).text()).split("\n").filter(Boolean);
  let lookups = 0;
  let offset = 0;
  while (performance.now() - started < WARM_LIMIT_MS) {
    // load.lua starts from its file's first key: each run starts where the last one stopped.
    const rotated = keysFile([...secrets.slice(offset), ...secrets.slice(0, offset)]);
    const r = await runWrk({ url: server.url, script: "load.lua", seconds: 2, connections: CONNECTIONS, env: { BENCH_PATH: EMAIL_PATH, KEYS_FILE: rotated } });
    offset = (offset + r.requests) % secrets.length;
    lookups = metricValue(await server.metrics(), "keyport_key_lookups_total");
    if (lookups >= count) break;
  }
  const seconds = (performance.now() - started) / 1000;
  say(`  key cache: ${lookups.toLocaleString("en")} lookups in ${seconds.toFixed(1)} s`);
  return { seconds, lookups };
}

async function cofreeSelfTest(): Promise<void> {
  if (!wanted("cofree")) return;
  say("· cofree.lua against a server that stalls 50 ms every 2 s, and without the stall");
  const r = await checkCoFree();
  extras.cofreeCheck = { pass: r.pass, detail: r.detail };
}

async function memory(): Promise<void> {
  if (!wanted("memory")) return;
  say("· in-process bytes per rate-limited key (100,000 keys)");
  extras.inProcessBytesPerKey = { "embedded (MemoryState)": await memoryStateBytesPerKey() };
  extras.inProcessBytesPerKey["service (RedisState's local lease state)"] = await leaseBytesPerKey();
}

/**
 * The request path in process, without sockets (test/bench/inprocess.ts): Keyport embedded,
 * the limit's handler bare and inside Keyport's app, the app alone around the email handler,
 * and the access log, in interleaved rounds in one process. Reported, not judged.
 */
async function inProcess(): Promise<void> {
  if (!wanted("inprocess")) return;
  const dataDir = mkdtempSync(join(tmpdir(), "kp-bench-inprocess-"));
  cleanups.push(async () => rmSync(dataDir, { recursive: true, force: true }));
  say("· in process (app.fetch, no sockets): creating keys");
  const keys = await createBenchKeys({ DATA_DIR: dataDir, PLANS_FILE }, [{ name: "happy", count: HAPPY_KEYS, rateLimit: HAPPY_RATE, monthlyQuota: QUOTA }]);
  say("· in process: the limit's handler, Keyport's app around it, Keyport, the access log");
  const proc = Bun.spawn(["bun", join(import.meta.dir, "inprocess.ts"), dataDir, keysFile(keys.happy!.map((k) => k.secret)), PLANS_FILE, SECRET_KEY], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "" },
    stdout: "ignore",
    stderr: "pipe",
  });
  const [err, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  const line = err.split("\n").find((l) => l.startsWith("BENCH "));
  if (code !== 0 || !line) throw new Error(`the in-process bench exited with ${code}: ${err.trim()}`);
  extras.inProcess = JSON.parse(line.slice("BENCH ".length));
}

async function flush(): Promise<void> {
  if (!wanted("flush")) return;
  extras.flush = [];
  if (DATABASE_URL) {
    say("· metering flush on Postgres: 1,000,000 requests over 10,000 keys × 3 endpoints");
    extras.flush.push(await benchFlush({ databaseUrl: DATABASE_URL }));
  }
  say("· metering flush on PGlite (for reference)");
  extras.flush.push(await benchFlush({}));
}

/** `keyport scan` over a generated tree: its wall time as a user sees it, the process's start included. */
interface ScanBench {
  files: number;
  mb: number;
  planted: number;
  found: number;
  /** The first run, files freshly written (in the page cache all the same), and the second. */
  firstSeconds: number;
  seconds: number;
  mbPerSecond: number;
}

/**
 * A ~100 MB tree like a monorepo's: 2,000 source files of 40-60 KB in 40 packages, a 20 MB
 * log, binaries, node_modules and an ignored build folder (both skipped, so not counted), one
 * live key in every 50th file and a look-alike in every file. Deterministic text (an LCG).
 */
function writeScanTree(root: string): { files: number; bytes: number; planted: number } {
  const words = ["const", "function", "return", "import", "export", "value", "config", "=", "{", "}", "(", ")", '"string"', "42", "await", "async", "let", "if", "else", "kp"];
  let seed = 1;
  const next = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const text = (bytes: number) => {
    const lines: string[] = [];
    for (let n = 0; n < bytes; ) {
      let line = "  ";
      for (let i = 3 + Math.floor(next() * 12); i > 0; i--) line += words[Math.floor(next() * words.length)] + " ";
      lines.push(line);
      n += line.length + 1;
    }
    return lines.join("\n") + "\n";
  };
  let files = 0;
  let bytes = 0;
  let planted = 0;
  const put = (path: string, content: string | Uint8Array, counted = true) => {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), content);
    if (counted) {
      files++;
      bytes += content.length;
    }
  };
  for (let p = 0; p < 40; p++) {
    for (let f = 0; f < 50; f++) {
      let t = text(40_000 + Math.floor(next() * 20_000)) + `// kp_live_${"x".repeat(46)}\n`;
      if (f === 7) {
        t += `export const key = "${generateKey("kp", "live")}";\n`;
        planted++;
      }
      put(`packages/p${p}/src/file${f}.ts`, t);
    }
  }
  put("logs/app.log", text(20_000_000));
  for (let b = 0; b < 10; b++) put(`assets/img${b}.png`, new Uint8Array(100_000).fill(7, 1));
  put(".gitignore", "build/\n");
  put("build/bundle.js", text(5_000_000), false);
  put("node_modules/dep/index.js", text(5_000_000), false);
  return { files, bytes, planted };
}

async function scanTree(): Promise<void> {
  if (!wanted("scan")) return;
  const root = mkdtempSync(join(tmpdir(), "kp-bench-scan-"));
  cleanups.push(async () => rmSync(root, { recursive: true, force: true }));
  say("· keyport scan: writing a ~100 MB tree");
  const tree = writeScanTree(root);
  const run = () => {
    const t = performance.now();
    const r = Bun.spawnSync(["bun", MAIN, "scan", "--format", "json", "."], { cwd: root, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "" }, stdout: "pipe", stderr: "pipe" });
    const seconds = (performance.now() - t) / 1000;
    if (r.exitCode !== 1) throw new Error(`keyport scan exited ${r.exitCode}: ${r.stderr.toString()}`);
    const doc = JSON.parse(r.stdout.toString()) as { files: number; bytes: number; finds: unknown[] };
    return { seconds, doc };
  };
  say(`· keyport scan: ${tree.files} files, ${(tree.bytes / 1e6).toFixed(1)} MB`);
  const first = run();
  const second = run();
  extras.scan = {
    files: second.doc.files,
    mb: second.doc.bytes / 1e6,
    planted: tree.planted,
    found: second.doc.finds.length,
    firstSeconds: first.seconds,
    seconds: second.seconds,
    mbPerSecond: second.doc.bytes / 1e6 / second.seconds,
  };
}

// ---------------------------------------------------------------------------------------

interface Target {
  name: string;
  pass: boolean | undefined;
  detail: string;
}

function targets(): Target[] {
  const row = (id: string) => rows.find((r) => r.id === id);
  const base = row("baseline-email");
  const out: Target[] = [];
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  for (const id of ["embedded", "service", "two-instances"]) {
    const r = row(id);
    if (r) out.push({ name: `0 database queries per request on the hot path (${id})`, pass: r.hotDbPerRequest === 0, detail: `${r.hotDbPerRequest?.toFixed(5)} key lookups; all statements incl. background timers ${r.dbPerRequest?.toFixed(5)}, of which the usage flush ${r.flushDbPerRequest?.toFixed(5)}` });
  }
  // Issue 22: against the contract's limit (the baseline's ratios stay in the table for information).
  const vsLimit = (r: Row) =>
    `${pct(r.limitRatio!)} of the limit's requests/s (${Math.round(r.rps).toLocaleString("en")} vs ${Math.round(r.pairedLimitRps ?? row("limit")!.rps).toLocaleString("en")}${r.pairedLimitRps ? ", measured just before" : ""}); CPU ratio ${r.limitCpuRatio === undefined ? "-" : pct(r.limitCpuRatio)}; of the baseline ${r.ratio === undefined ? "-" : pct(r.ratio)}`;
  const emb = row("embedded");
  if (emb?.limitRatio !== undefined) out.push({ name: "embedded ≥ 90% of the limit row's requests/s", pass: emb.limitRatio >= 0.9, detail: vsLimit(emb) });
  const svc = row("service");
  if (svc?.limitRatio !== undefined) out.push({ name: "service ≥ 85% of the limit row's requests/s", pass: svc.limitRatio >= 0.85, detail: vsLimit(svc) });
  for (const id of ["embedded", "service"]) {
    const plain = row(id);
    const logged = row(`${id}-log`);
    if (plain && logged) {
      const ratio = logged.rps / plain.rps;
      const cpu = plain.cpuUsPerRequest && logged.cpuUsPerRequest ? pct(plain.cpuUsPerRequest / logged.cpuUsPerRequest) : "-";
      out.push({ name: `${id} with the access log on (LOG_LEVEL=info) ≥ 92% of the same without it`, pass: ratio >= 0.92, detail: `${pct(ratio)} (${Math.round(logged.rps).toLocaleString("en")} vs ${Math.round(plain.rps).toLocaleString("en")} req/s); CPU ratio ${cpu}` });
    }
  }
  if (svc?.redisPerRequest !== undefined) out.push({ name: "service: ≤ 0.1 Redis round trips per request, keys far from their limit", pass: svc.redisPerRequest <= 0.1, detail: `${svc.redisPerRequest.toFixed(4)} (Redis-side commands incl. script internals: ${svc.redisServerPerRequest?.toFixed(4)})` });
  const two = extras.twoInstanceLimit;
  if (two) {
    out.push({
      name: "never more than the limit admitted across two instances",
      pass: two.admitted <= two.bound && two.largestExcess <= 1,
      detail: `${two.admitted} admitted in ${two.seconds.toFixed(1)} s, GCRA bound ${two.bound} (burst ${two.limit} + ${two.perSecond}/s); largest excess over the bound in any span of seconds ${two.largestExcess.toFixed(1)}; busiest second after the burst ${two.largestSecond}`,
    });
  }
  for (const id of ["embedded", "service"]) {
    const r = row(id);
    // Against the baseline measured just before the row, like the ratio.
    const baseP99 = r?.pairedBaselineP99Ms ?? base?.p99Ms;
    // Superseded by the fixed-rate tail (issue 22): at full load p99 is mostly queueing. Reported, not judged.
    if (r && baseP99 !== undefined) out.push({ name: `p99 added at full load, ${CONNECTIONS} connections (${id}; the fixed-rate tail below is the target)`, pass: undefined, detail: `${(r.p99Ms - baseP99).toFixed(2)} ms (p99 ${r.p99Ms.toFixed(2)} vs ${baseP99.toFixed(2)} ms)` });
  }
  if (extras.redisBytesPerKey) {
    const sizes = Object.values(extras.redisBytesPerKey).filter((v): v is number => v !== null);
    out.push({
      name: "rate limiter memory per key in Redis: constant, < 200 bytes at any limit",
      pass: sizes.length > 0 && sizes.every((v) => v < 200) && new Set(sizes).size === 1,
      detail: Object.entries(extras.redisBytesPerKey).map(([k, v]) => `${k}: ${v ?? "no key"} B`).join("; "),
    });
  }
  for (const f of extras.flush ?? []) {
    if (f.backend !== "postgres") continue;
    out.push({
      name: `flush of ${f.rows.toLocaleString("en")} aggregate rows < 250 ms on Postgres, counts exact`,
      pass: Math.max(f.insertMs, f.updateMs) < 250 && f.counted === f.expected,
      detail: `insert ${f.insertMs.toFixed(0)} ms, update ${f.updateMs.toFixed(0)} ms (the first flush after start, on new connections, ${f.firstMs.toFixed(0)} ms: not judged); counted ${f.counted.toLocaleString("en")} of ${f.expected.toLocaleString("en")}`,
    });
  }
  for (const p of extras.proxy ?? []) {
    // The figures are reported, not judged; what is judged is that they were measured as meant.
    const held = (r: RateRun) => r.rps >= 0.97 * p.rate && r.rps <= 1.03 * p.rate;
    const clean = (r: RateRun) => r.socketErrors === 0 && Object.keys(r.statuses).every((s) => s === "200");
    const runs = [p.direct, p.own, p.proxied];
    out.push({
      name: `proxy rows (${p.mode}): every run held ${p.rate.toLocaleString("en")} req/s, every answer 200`,
      pass: runs.every(held) && runs.every(clean),
      detail: `direct ${Math.round(p.direct.rps)} req/s ${JSON.stringify(p.direct.statuses)}, ${p.direct.late} late; Keyport's own route ${Math.round(p.own.rps)} req/s ${JSON.stringify(p.own.statuses)}, ${p.own.late} late; through Keyport ${Math.round(p.proxied.rps)} req/s ${JSON.stringify(p.proxied.statuses)}, ${p.proxied.late} late; p99 added ${p.addedP99Ms.toFixed(2)} ms, Keyport's CPU ${p.keyportCpuSecPer1000.toFixed(3)} s per 1,000 requests`,
    });
  }
  const ms2 = (x: number) => x.toFixed(2);
  const heldTail = (r: TailRun) => r.rps >= 0.97 * r.rate && r.rps <= 1.03 * r.rate;
  const cleanTail = (r: TailRun) => r.socketErrors === 0 && Object.keys(r.statuses).every((s) => s === "200");
  const tailLine = (r: TailRun) => `${Math.round(r.rps).toLocaleString("en")} req/s ${JSON.stringify(r.statuses)}, ${r.late} late`;
  for (const t of extras.tail ?? []) {
    const at = `${t.rate.toLocaleString("en")} req/s, ${t.connections} connections`;
    out.push({
      name: `fixed rate (${t.mode}): p99 added ≤ 1 ms over the baseline at ${at}, free of coordinated omission`,
      pass: t.addedP99Ms <= 1,
      detail: `${ms2(t.addedP99Ms)} ms (p99 ${ms2(t.keyport.cofree.p99Ms)} vs ${ms2(t.baseline.cofree.p99Ms)} ms; the limit ${ms2(t.limit.cofree.p99Ms)} ms)`,
    });
    out.push({
      name: `fixed rate (${t.mode}): p99.9 added ≤ 3 ms over the baseline`,
      pass: t.addedP999Ms <= 3,
      detail: `${ms2(t.addedP999Ms)} ms (p99.9 ${ms2(t.keyport.cofree.p999Ms)} vs ${ms2(t.baseline.cofree.p999Ms)} ms; the limit ${ms2(t.limit.cofree.p999Ms)} ms; max ${ms2(t.keyport.cofree.maxMs)} vs ${ms2(t.baseline.cofree.maxMs)} ms)`,
    });
    const runs = [t.baseline, t.limit, t.keyport];
    out.push({
      name: `fixed rate (${t.mode}): every run held ${t.rate.toLocaleString("en")} req/s, every answer 200`,
      pass: runs.every(heldTail) && runs.every(cleanTail),
      detail: `baseline ${tailLine(t.baseline)}; limit ${tailLine(t.limit)}; Keyport ${tailLine(t.keyport)}`,
    });
  }
  for (const g of extras.gaps ?? []) {
    out.push({
      name: `no gap over ${GAP_TARGET_MS} ms between answers during a flush of ${GAP_ROWS.toLocaleString("en")} rows (${g.mode}, ${g.rate.toLocaleString("en")} req/s)`,
      pass: g.fullFlushes > 0 && g.longestInFlushMs <= GAP_TARGET_MS && cleanTail(g.run) && g.lookupsBefore >= g.keys,
      detail:
        `${g.fullFlushes} such flush(es) in ${g.seconds} s: longest gap in their windows ${ms2(g.longestInFlushMs)} ms${g.longestInFlushMs === 0 ? ` (none over ${g.listedFromMs} ms)` : ""}; ` +
        `outside every flush ${ms2(g.longestOutsideMs)} ms, overall ${ms2(g.longestOverallMs)} ms; ${tailLine(g.run)}; key cache filled in ${g.cacheWarmSeconds.toFixed(1)} s (${g.lookupsBefore.toLocaleString("en")} lookups${g.lookupsBefore < g.keys ? `, short of ${g.keys.toLocaleString("en")}: not warm` : ""}), ${g.lookupsDuring} during the run`,
    });
  }
  for (const w of extras.sweep ?? []) {
    out.push({
      name: `no gap over ${GAP_TARGET_MS} ms between answers during a rotation sweep of ${SWEEP_KEYS} rotations (${w.mode}, ${w.rate.toLocaleString("en")} req/s)`,
      pass: w.rotations >= SWEEP_KEYS && w.started >= SWEEP_KEYS && w.longestInSweepMs <= GAP_TARGET_MS && cleanTail(w.run),
      detail:
        `${w.rotations} rotations made, ${w.started} started, over ${w.spanMs.toFixed(0)} ms: longest gap in the sweep's window ${ms2(w.longestInSweepMs)} ms${w.longestInSweepMs === 0 ? " (none over 2 ms)" : ""}; ` +
        `outside it ${ms2(w.longestOutsideMs)} ms, overall ${ms2(w.longestOverallMs)} ms; ${tailLine(w.run)}`,
    });
  }
  if (extras.cofreeCheck) out.push({ name: "wrk/cofree.lua shows a server's stall that wrk's clock from the send hides", pass: extras.cofreeCheck.pass, detail: extras.cofreeCheck.detail });
  if (extras.scan) {
    const sc = extras.scan;
    out.push({
      name: "keyport scan reads a ~100 MB tree in seconds (< 5 s, the process's start included), finding every planted key",
      pass: sc.seconds < 5 && sc.found === sc.planted,
      detail: `${sc.seconds.toFixed(2)} s (first run ${sc.firstSeconds.toFixed(2)} s) for ${sc.files} files, ${sc.mb.toFixed(1)} MB: ${sc.mbPerSecond.toFixed(0)} MB/s; ${sc.found} of ${sc.planted} keys found`,
    });
  }
  for (const m of extras.metering ?? []) {
    out.push({ name: `every answered /v1 request metered (${m.scenario}, after SIGTERM)`, pass: m.metered === m.answered, detail: `${m.metered} metered, ${m.answered} answered` });
  }
  return out;
}

function printTable(ts: Target[]): void {
  const head = ["scenario", "req/s", "p50 ms", "p99 ms", "ratio", "CPU µs/req", "CPU ratio", "vs limit", "CPU vs limit", "db q/req", "redis/req", "redis srv/req", "RSS MB", "statuses"];
  const body = rows.map((r) => [
    r.title,
    Math.round(r.rps).toLocaleString("en"),
    r.p50Ms.toFixed(2),
    r.p99Ms.toFixed(2),
    r.ratio === undefined ? "" : `${(r.ratio * 100).toFixed(1)}%${r.pairedBaselineRps ? "*" : ""}`,
    r.cpuUsPerRequest === undefined ? "" : r.cpuUsPerRequest.toFixed(1),
    r.cpuRatio === undefined ? "" : `${(r.cpuRatio * 100).toFixed(1)}%`,
    r.limitRatio === undefined ? "" : `${(r.limitRatio * 100).toFixed(1)}%${r.pairedLimitRps ? "*" : ""}`,
    r.limitCpuRatio === undefined ? "" : `${(r.limitCpuRatio * 100).toFixed(1)}%`,
    r.hotDbPerRequest === undefined ? "" : r.hotDbPerRequest.toFixed(4),
    r.redisPerRequest === undefined ? "" : r.redisPerRequest.toFixed(4),
    r.redisServerPerRequest === undefined ? "" : r.redisServerPerRequest.toFixed(4),
    r.rssMb === undefined ? "" : r.rssMb.toFixed(0),
    Object.entries(r.statuses ?? {})
      .filter(([, n]) => n > 0)
      .map(([s, n]) => `${s}:${n}`)
      .join(" "),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  console.log(line(head));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const b of body) console.log(line(b));
  console.log("");
  console.log("ratio: requests/s ÷ the baseline's (* = the baseline measured just before the row); CPU ratio: the baseline's server CPU per request ÷ the row's.");
  console.log("vs limit, CPU vs limit: the same against the limit row (bare Elysia + the key read and the contract's six headers; * = measured just before the row, after the baseline).");
  console.log("db q/req: the request path's statements (key lookups missing the cache) per request; redis/req: commands the Keyport processes sent; redis srv/req: commands Redis ran (INFO commandstats, script-internal ones included).");
  console.log("");
  const frame = rows.find((r) => r.id === "frame");
  const base = rows.find((r) => r.id === "baseline-email");
  if (frame?.cpuUsPerRequest && base?.cpuUsPerRequest) {
    const own = (id: string) => {
      const r = rows.find((x) => x.id === id);
      return r?.cpuUsPerRequest ? `${id} ${(r.cpuUsPerRequest - frame.cpuUsPerRequest!).toFixed(1)} µs` : undefined;
    };
    console.log(
      `Server CPU per request above the baseline: the app around the handler (frame) ${(frame.cpuUsPerRequest - (frame.pairedBaselineCpuUs ?? base.cpuUsPerRequest)).toFixed(1)} µs; the chain on top of it: ${["embedded", "service"].map(own).filter(Boolean).join(", ")}.`,
    );
  }
  console.log("The two-instance row runs two server processes (both cores) against a one-process baseline: its ratio is not the chain's cost; it is there for Redis per request and the admitted count.");
  const signed = (ms: number) => `${ms < 0 ? "−" : "+"}${Math.abs(ms).toFixed(2)}`;
  for (const p of extras.proxy ?? []) {
    console.log(
      `Proxy (${p.mode}) at ${p.rate.toLocaleString("en")} req/s, ${p.connections} connections: p99 ${p.direct.p99Ms.toFixed(2)} ms direct, ${p.proxied.p99Ms.toFixed(2)} ms through Keyport → ${signed(p.addedP99Ms)} ms (p50 ${signed(p.addedP50Ms)}, p90 ${signed(p.proxied.p90Ms - p.direct.p90Ms)} ms); ` +
        `CPU s per 1,000 requests: Keyport ${p.keyportCpuSecPer1000.toFixed(3)} (of which idle timers ${p.keyportIdleCpuSecPer1000.toFixed(3)}; on its own /v1/email ${p.own.keyportCpuSecPer1000.toFixed(3)}, so the forward ${p.forwardCpuSecPer1000.toFixed(3)}), ` +
        `the upstream ${p.direct.upstreamCpuSecPer1000.toFixed(3)} alone / ${p.proxied.upstreamCpuSecPer1000.toFixed(3)} behind Keyport; added in all ${p.addedCpuSecPer1000.toFixed(3)}.`,
    );
  }
  const pcts = (p: Percentiles) => `${p.p50Ms.toFixed(2)} / ${p.p99Ms.toFixed(2)} / ${p.p999Ms.toFixed(2)} / ${p.maxMs.toFixed(2)}`;
  for (const t of extras.tail ?? []) {
    console.log(`Fixed rate (${t.mode}), ${t.rate.toLocaleString("en")} req/s over ${t.connections} connections, latency from each request's slot (p50 / p99 / p99.9 / max ms; from the send; wrk's own p99 / p99.9):`);
    for (const r of [t.baseline, t.limit, t.keyport]) {
      console.log(`  ${r.target.padEnd(18)} ${pcts(r.cofree)}  (from the send ${pcts(r.fromSend)}; wrk ${r.wrk.p99Ms.toFixed(2)} / ${r.wrk.p999Ms.toFixed(2)}); ${Math.round(r.rps).toLocaleString("en")} req/s, ${r.late} late, CPU ${r.cpuUsPerRequest.toFixed(1)} µs/req, longest gap ${r.longestGapMs.toFixed(2)} ms`);
    }
    console.log(`  added by Keyport: p99 ${signed(t.addedP99Ms)} ms, p99.9 ${signed(t.addedP999Ms)} ms over the baseline; ${signed(t.addedP99VsLimitMs)} / ${signed(t.addedP999VsLimitMs)} ms over the limit`);
  }
  for (const g of extras.gaps ?? []) {
    console.log(
      `Gaps between answers (${g.mode}): ${g.keys.toLocaleString("en")} keys × ${g.endpoints.length} endpoints at ${g.rate.toLocaleString("en")} req/s for ${g.seconds} s, USAGE_FLUSH_MS=${g.flushMs}; window [−${g.window.beforeMs}, +${g.window.afterMs}] ms around each flush's ledger time: ` +
        `longest in a ${GAP_ROWS.toLocaleString("en")}-row flush ${g.longestInFlushMs.toFixed(2)} ms, outside the flushes ${g.longestOutsideMs.toFixed(2)} ms, overall ${g.longestOverallMs.toFixed(2)} ms; email latency from the slot ${pcts(g.run.cofree)} ms`,
    );
    for (const f of g.flushes) console.log(`  flush at ${f.at}: ${f.rows.toLocaleString("en")} rows in ${f.parts} part(s), longest gap ${f.longestGapMs.toFixed(2)} ms${f.longestGapEndMs === undefined ? "" : ` (ending ${f.longestGapEndMs.toFixed(0)} ms after the ledger time)`}`);
  }
  for (const w of extras.sweep ?? []) {
    console.log(
      `Rotation sweep (${w.mode}): ${w.rotations} rotations made and ${w.started} started in ${w.spanMs.toFixed(0)} ms at ${w.rate.toLocaleString("en")} req/s: longest gap between answers in the sweep's window ${w.longestInSweepMs.toFixed(2)} ms, outside it ${w.longestOutsideMs.toFixed(2)} ms; email latency from the slot ${pcts(w.run.cofree)} ms`,
    );
  }
  if (extras.inProcess) {
    const p = extras.inProcess;
    const us = (name: string) => p.variants.find((v) => v.name === name)?.medianUs ?? Number.NaN;
    console.log(`In process (app.fetch on one core, no sockets; medians of ${p.variants[0]?.rounds.length ?? 0} interleaved rounds of ${p.perRound.toLocaleString("en")} requests, CPU µs a request${p.failures ? `; ${p.failures} answers not 200` : ""}):`);
    for (const v of p.variants) console.log(`  ${v.name.padEnd(28)} ${v.medianUs.toFixed(2)} µs  (rounds ${v.rounds.map((x) => x.toFixed(2)).join(" ")})`);
    console.log(
      `  so: Keyport's app around a handler ${(us("limit in Keyport's app") - us("limit (bare app)")).toFixed(2)} µs, the contract's headers (as the limit writes them) ${(us("limit in Keyport's app") - us("no headers in Keyport's app")).toFixed(2)} µs, the chain and the meter over the limit's handler ${(us("Keyport") - us("limit in Keyport's app")).toFixed(2)} µs, an access line ${(us("Keyport, access log on") - us("Keyport")).toFixed(2)} µs`,
    );
  }
  if (extras.redisBytesPerKey) console.log(`Redis MEMORY USAGE per limiter key: ${Object.entries(extras.redisBytesPerKey).map(([k, v]) => `${k} → ${v ?? "-"} B`).join("; ")}`);
  if (extras.inProcessBytesPerKey) console.log(`In-process bytes per rate-limited key (100,000 keys): ${Object.entries(extras.inProcessBytesPerKey).map(([k, v]) => `${k} → ${v.toFixed(0)} B`).join("; ")}`);
  for (const f of extras.flush ?? []) {
    console.log(
      `Metering flush (${f.backend}): ${f.requests.toLocaleString("en")} requests × 3 over ${f.keys.toLocaleString("en")} keys × ${f.endpoints} endpoints → ${f.rows.toLocaleString("en")} rows a day; the first flush after start (yesterday's rows, new connections) ${f.firstMs.toFixed(0)} ms; then insert flush ${f.insertMs.toFixed(0)} ms, update flush ${f.updateMs.toFixed(0)} ms; counted ${f.counted.toLocaleString("en")} / ${f.expected.toLocaleString("en")}; record() ${f.recordNsPerRequest.toFixed(0)} ns`,
    );
  }
  console.log("");
  for (const t of ts) console.log(`${t.pass === undefined ? "info " : t.pass ? "PASS " : "FAIL "} ${t.name}: ${t.detail}`);
}

async function main(): Promise<number> {
  // The scanner's row needs neither wrk nor the baseline; cofree.lua's check needs no baseline.
  const scanOnly = ONLY?.size === 1 && ONLY.has("scan");
  const noBaseline = ONLY !== undefined && [...ONLY].every((g) => g === "scan" || g === "cofree" || g === "inprocess");
  if (!wrkInstalled() && !scanOnly) {
    console.error("bench: wrk is not installed. On Debian/Ubuntu: sudo apt-get install -y wrk (as root: apt-get update && apt-get install -y wrk)");
    return 1;
  }
  const started = new Date();
  say(`keyport bench: ${DURATION} s per row after ${WARMUP} s warm-up, ${CONNECTIONS} connections, wrk -t1; LOG_LEVEL=warn unless the row says otherwise`);
  try {
    await cofreeSelfTest();
    if (!noBaseline) await baseline();
    if (wanted("embedded")) await embedded();
    if (["service", "rejected", "two"].some(wanted)) await service();
    if (!noBaseline) await tailAndGaps();
    await proxy();
    await memory();
    await inProcess();
    await flush();
    await scanTree();
  } finally {
    for (const c of cleanups.reverse()) await c().catch((err) => console.error(`bench cleanup: ${(err as Error).message}`));
  }
  const ts = targets();
  const order = ["baseline-json", "baseline-email", "limit", "frame", "embedded", "embedded-log", "service", "service-log", "rejected-checksum", "rejected-unknown", "rejected-limited", "two-instances", "proxy-direct-embedded", "proxy-own-embedded", "proxy-embedded", "proxy-direct-service", "proxy-own-service", "proxy-service"];
  rows.sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), bun: Bun.version, platform: `${process.platform} ${process.arch}` };
  if (opts.json) {
    console.log(JSON.stringify({ date: started.toISOString(), machine, options: { duration: DURATION, warmup: WARMUP, connections: CONNECTIONS, proxyRate: PROXY_RATE, proxyConnections: PROXY_CONNECTIONS, rate: TAIL_RATE ?? null }, rows, ...extras, targets: ts.map((t) => ({ ...t, pass: t.pass ?? null })) }, null, 2));
  } else {
    console.log(`\nkeyport bench ${started.toISOString()} — ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Bun ${machine.bun}\n`);
    printTable(ts);
  }
  return ts.every((t) => t.pass !== false) ? 0 : 1;
}

process.exit(await main());
