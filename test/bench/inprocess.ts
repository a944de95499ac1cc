import { Elysia } from "elysia";
import { createApp } from "../../src/app.ts";
import { parseConfig } from "../../src/config.ts";
import { openPglite } from "../../src/db/client.ts";
import { createLogger, flushLogs } from "../../src/ops/log.ts";
import { errorsPlugin } from "../../src/plugins/errors.ts";
import { errorPage } from "../../src/portal/respond.ts";
import { assembleDeps } from "../../src/runtime.ts";
import { MemoryState } from "../../src/state/memory.ts";
import { emailAnswer, limitAnswer } from "./handlers.ts";

/**
 * The request path without sockets (`bun test/bench/inprocess.ts <data dir> <keys file>
 * <plans file> <secret>`, run by `bun run bench -- --only inprocess`): each variant's
 * `app.fetch` called in a loop on one core, in interleaved rounds, CPU time a request. It
 * leaves out what every row pays alike (HTTP parsing, the socket, the kernel: most of a
 * request on this host) and most of the host's noise, so it splits the distance between
 * Keyport and the limit row into the app around a handler, the contract's headers, the chain
 * and the meter, and the access log.
 *
 * Variants, all answering `GET …/email/jane.doe@example.com` with the 64 keys:
 * - `limit (bare app)`: the limit row's handler in a bare Elysia app (limitAnswer, test/bench/handlers.ts);
 * - `limit in Keyport's app`: the same handler mounted where the data API sits in createApp;
 * - `no headers in Keyport's app`: the email handler alone there (the frame row);
 * - `Keyport`: /v1/email, the whole chain and meter (embedded: PGlite, in-process state);
 * - `Keyport, access log on`: the same app with LOG_LEVEL=info, its lines to this process's
 *   stdout (the bench points it at /dev/null).
 * Prints one JSON line: per variant the rounds' µs a request and their median.
 */
const [dataDir, keysFile, plansFile, secret] = process.argv.slice(2);
if (!dataDir || !keysFile || !plansFile || !secret) {
  console.error("usage: bun test/bench/inprocess.ts <data dir> <keys file> <plans file> <secret>");
  process.exit(2);
}
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
const PER_ROUND = Number(process.env.BENCH_REQUESTS ?? 40_000);
const WARMUP = 20_000;

const database = await openPglite(dataDir);
const keyport = async (level: "warn" | "info") => {
  const config = parseConfig({ LOG_LEVEL: level, SECRET_KEY: secret, PLANS_FILE: plansFile, DATA_DIR: dataDir });
  const deps = await assembleDeps(config, database, new MemoryState(), { log: createLogger(level) });
  return { deps, app: createApp(deps) };
};
const quiet = await keyport("warn");
const logged = await keyport("info");

const bare = new Elysia().get("/limit/email/:address", limitAnswer("req_bare"));
// Mounted as in test/bench/baseline.ts's frame: after the error hook, before createApp's routes.
const inApp = new Elysia()
  .use(errorsPlugin(quiet.deps, errorPage))
  .get("/limit/email/:address", limitAnswer("req_inapp"))
  .get("/frame/email/:address", emailAnswer)
  .use(quiet.app);

type Fetch = (r: Request) => Response | Promise<Response>;
const keys = (await Bun.file(keysFile).text()).split("\n").filter(Boolean);
const requestsFor = (prefix: string) =>
  keys.map((k) => new Request(`http://127.0.0.1:3000${prefix}/email/jane.doe@example.com`, { headers: { authorization: `Bearer ${k}`, host: "127.0.0.1:3000" } }));
const variants: { name: string; fetch: Fetch; requests: Request[] }[] = [
  { name: "limit (bare app)", fetch: (r) => bare.fetch(r), requests: requestsFor("/limit") },
  { name: "limit in Keyport's app", fetch: (r) => inApp.fetch(r), requests: requestsFor("/limit") },
  { name: "no headers in Keyport's app", fetch: (r) => inApp.fetch(r), requests: requestsFor("/frame") },
  { name: "Keyport", fetch: (r) => quiet.app.fetch(r), requests: requestsFor("/v1") },
  { name: "Keyport, access log on", fetch: (r) => logged.app.fetch(r), requests: requestsFor("/v1") },
];

let failures = 0;
async function run(v: (typeof variants)[number], n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    // A Request's headers are read once; a clone per call is what each variant pays alike.
    let res = v.fetch(v.requests[i & 63]!.clone());
    if (res instanceof Promise) res = await res;
    if (res.status !== 200) failures++;
    // Let the meter's and the log's timers run, as between a server's requests.
    if ((i & 63) === 0) await new Promise((resolve) => setImmediate(resolve));
  }
}

for (const v of variants) await run(v, WARMUP);
const rounds = new Map<string, number[]>(variants.map((v) => [v.name, []]));
for (let r = 0; r < ROUNDS; r++) {
  for (const v of variants) {
    const before = process.cpuUsage();
    await run(v, PER_ROUND);
    const used = process.cpuUsage(before);
    rounds.get(v.name)!.push((used.user + used.system) / PER_ROUND);
  }
}
await flushLogs();
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const out = variants.map((v) => ({ name: v.name, rounds: rounds.get(v.name)!, medianUs: median(rounds.get(v.name)!) }));
process.stderr.write(`BENCH ${JSON.stringify({ variants: out, failures, perRound: PER_ROUND })}\n`);
process.exit(0);
