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
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { generateKey } from "../../src/keys/format.ts";
import { openPglite } from "../../src/db/client.ts";
import { sql } from "drizzle-orm";
import postgres from "postgres";
import { createBenchKeys, openServiceResources, registerBenchProduct, SECRET_KEY, type BenchKey, type ServiceResources } from "./fixtures.ts";
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
  statuses?: Record<string, number>;
}

const rows: Row[] = [];
const cleanups: (() => Promise<void>)[] = [];
const extras: {
  redisBytesPerKey?: Record<string, number | null>;
  inProcessBytesPerKey?: Record<string, number>;
  flush?: FlushResult[];
  twoInstanceLimit?: { limit: number; seconds: number; admitted: number; bound: number; largestExcess: number; largestSecond: number; perSecond: number; admittedBySecond: number[] };
  metering?: { scenario: string; answered: number; metered: number }[];
  proxy?: ProxyResult[];
  scan?: ScanBench;
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

/** `--only` names groups: frame, embedded, service, rejected, two, proxy, memory, flush, scan (the baseline always runs, except for scan alone). */
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
    statuses,
  };
  const base = rows.find((r) => r.id === "baseline-email");
  if (paired) row.ratio = row.rps / paired.rps;
  else if (base) row.ratio = row.rps / base.rps;
  const baseCpu = paired?.cpuUsPerRequest ?? base?.cpuUsPerRequest;
  if (baseCpu !== undefined && row.cpuUsPerRequest) row.cpuRatio = baseCpu / row.cpuUsPerRequest;
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

/** One baseline run (no warm-up: the server is warm) for the row measured next. */
async function baselineNow(): Promise<{ rps: number; cpuUsPerRequest: number; p99Ms: number }> {
  const { server, env } = reference!;
  const cpu = server.cpuUs();
  const [r] = await drive([server], env, DURATION);
  return { rps: rps(r!), cpuUsPerRequest: (server.cpuUs() - cpu) / r!.requests, p99Ms: r!.p99Us / 1000 };
}

async function baseline(): Promise<void> {
  const server = await startServer({ name: "baseline", script: BASELINE, env: {}, readyPath: "/json" });
  cleanups.push(async () => void (await server.stop()));
  const file = keysFile([generateKey("kp", "live")]);
  reference = { server, env: { BENCH_PATH: EMAIL_PATH, KEYS_FILE: file } };
  await measure("baseline-json", "bare Elysia, JSON route", [server], { BENCH_PATH: "/json", KEYS_FILE: file });
  await measure("baseline-email", "bare Elysia, the data-API email handler (the baseline)", [server], reference.env);
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
    if (!wanted(id)) continue;
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
    }
    if (wanted("rejected")) {
      // On /v1/ip: answers without a key are not metered, so /v1/email's answers stay the
      // metering check's reference.
      const badChecksum = `kp_live_${"A".repeat(40)}${"zzzzzz"}`;
      await measure("rejected-checksum", "rejected: bad checksum (one client IP: 401, then 429)", [one], { BENCH_PATH: IP_PATH, KEYS_FILE: keysFile([badChecksum]) }, { service: res, route: IP_ROUTE });
      await measure("rejected-unknown", "rejected: well-formed unknown key", [one], { BENCH_PATH: IP_PATH, KEYS_FILE: keysFile([generateKey("kp", "live")]) }, { service: res, route: IP_ROUTE });
      await measure("rejected-limited", `rejected: over its limit (${LIMITED_RATE.toLocaleString("en")}/min, 429)`, [one], { BENCH_PATH: EMAIL_PATH, KEYS_FILE: keysFile([limited.secret]) }, { service: res });
      await memoryOf(`limit ${LIMITED_RATE}/min, under full load`, limited);
    }
    if (wanted("two")) {
      const two = await startKeyport("service-2", keyportEnv(base));
      servers.push(two);
      await measure("two-instances", "two service instances sharing Redis, load split", [one, two], happyEnv, { service: res, paired: true });
      await admittedAcrossTwo(one, two, admit);
      await memoryOf(`limit ${ADMIT_RATE}/min, two instances at it`, admit);
    }
    await stopAll();
    if (wanted("service")) {
      const logged = await startKeyport("service-log", keyportEnv({ ...base, LOG_LEVEL: "info" }));
      servers.push(logged);
      await measure("service-log", "  … the same with the access log on (LOG_LEVEL=info)", [logged], happyEnv, { service: res });
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

async function memory(): Promise<void> {
  if (!wanted("memory")) return;
  say("· in-process bytes per rate-limited key (100,000 keys)");
  extras.inProcessBytesPerKey = { "embedded (MemoryState)": await memoryStateBytesPerKey() };
  extras.inProcessBytesPerKey["service (RedisState's local lease state)"] = await leaseBytesPerKey();
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
  const emb = row("embedded");
  if (emb?.ratio !== undefined) out.push({ name: "embedded ≥ 80% of the baseline's requests/s", pass: emb.ratio >= 0.8, detail: pct(emb.ratio) });
  const svc = row("service");
  if (svc?.ratio !== undefined) out.push({ name: "service ≥ 70% of the baseline's requests/s", pass: svc.ratio >= 0.7, detail: pct(svc.ratio) });
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
    if (r && baseP99 !== undefined) out.push({ name: `p99 added latency of the chain < 1 ms at ${CONNECTIONS} connections (${id})`, pass: r.p99Ms - baseP99 < 1, detail: `${(r.p99Ms - baseP99).toFixed(2)} ms (p99 ${r.p99Ms.toFixed(2)} vs ${baseP99.toFixed(2)} ms)` });
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
      detail: `insert ${f.insertMs.toFixed(0)} ms, update ${f.updateMs.toFixed(0)} ms; counted ${f.counted.toLocaleString("en")} of ${f.expected.toLocaleString("en")}`,
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
  const head = ["scenario", "req/s", "p50 ms", "p99 ms", "ratio", "CPU µs/req", "CPU ratio", "db q/req", "redis/req", "redis srv/req", "RSS MB", "statuses"];
  const body = rows.map((r) => [
    r.title,
    Math.round(r.rps).toLocaleString("en"),
    r.p50Ms.toFixed(2),
    r.p99Ms.toFixed(2),
    r.ratio === undefined ? "" : `${(r.ratio * 100).toFixed(1)}%${r.pairedBaselineRps ? "*" : ""}`,
    r.cpuUsPerRequest === undefined ? "" : r.cpuUsPerRequest.toFixed(1),
    r.cpuRatio === undefined ? "" : `${(r.cpuRatio * 100).toFixed(1)}%`,
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
  if (extras.redisBytesPerKey) console.log(`Redis MEMORY USAGE per limiter key: ${Object.entries(extras.redisBytesPerKey).map(([k, v]) => `${k} → ${v ?? "-"} B`).join("; ")}`);
  if (extras.inProcessBytesPerKey) console.log(`In-process bytes per rate-limited key (100,000 keys): ${Object.entries(extras.inProcessBytesPerKey).map(([k, v]) => `${k} → ${v.toFixed(0)} B`).join("; ")}`);
  for (const f of extras.flush ?? []) {
    console.log(
      `Metering flush (${f.backend}): ${f.requests.toLocaleString("en")} requests × 2 over ${f.keys.toLocaleString("en")} keys × ${f.endpoints} endpoints → ${f.rows.toLocaleString("en")} rows; insert flush ${f.insertMs.toFixed(0)} ms, update flush ${f.updateMs.toFixed(0)} ms; counted ${f.counted.toLocaleString("en")} / ${f.expected.toLocaleString("en")}; record() ${f.recordNsPerRequest.toFixed(0)} ns`,
    );
  }
  console.log("");
  for (const t of ts) console.log(`${t.pass === undefined ? "  ?  " : t.pass ? "PASS " : "FAIL "} ${t.name}: ${t.detail}`);
}

async function main(): Promise<number> {
  // The scanner's row needs neither wrk nor the baseline.
  const scanOnly = ONLY?.size === 1 && ONLY.has("scan");
  if (!wrkInstalled() && !scanOnly) {
    console.error("bench: wrk is not installed. On Debian/Ubuntu: sudo apt-get install -y wrk (as root: apt-get update && apt-get install -y wrk)");
    return 1;
  }
  const started = new Date();
  say(`keyport bench: ${DURATION} s per row after ${WARMUP} s warm-up, ${CONNECTIONS} connections, wrk -t1; LOG_LEVEL=warn unless the row says otherwise`);
  try {
    if (!scanOnly) await baseline();
    if (wanted("embedded")) await embedded();
    if (["service", "rejected", "two"].some(wanted)) await service();
    await proxy();
    await memory();
    await flush();
    await scanTree();
  } finally {
    for (const c of cleanups.reverse()) await c().catch((err) => console.error(`bench cleanup: ${(err as Error).message}`));
  }
  const ts = targets();
  const order = ["baseline-json", "baseline-email", "frame", "embedded", "embedded-log", "service", "service-log", "rejected-checksum", "rejected-unknown", "rejected-limited", "two-instances", "proxy-direct-embedded", "proxy-own-embedded", "proxy-embedded", "proxy-direct-service", "proxy-own-service", "proxy-service"];
  rows.sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
  const machine = { cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), bun: Bun.version, platform: `${process.platform} ${process.arch}` };
  if (opts.json) {
    console.log(JSON.stringify({ date: started.toISOString(), machine, options: { duration: DURATION, warmup: WARMUP, connections: CONNECTIONS, proxyRate: PROXY_RATE, proxyConnections: PROXY_CONNECTIONS }, rows, ...extras, targets: ts }, null, 2));
  } else {
    console.log(`\nkeyport bench ${started.toISOString()} — ${machine.cpus} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, Bun ${machine.bun}\n`);
    printTable(ts);
  }
  return ts.every((t) => t.pass !== false) ? 0 : 1;
}

process.exit(await main());
