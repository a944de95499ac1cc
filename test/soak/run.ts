/**
 * `bun run soak [--minutes 10] [--rate 400]`: Keyport in service mode (Postgres + Redis on
 * loopback) under a steady load across 100 keys while keys are revoked, rolled and rotated.
 * Reports unexpected errors (must be 0), p99 latency per minute, RSS at start and end, and
 * whether the usage in the database equals the requests answered. Not part of `bun test`.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import postgres from "postgres";
import { Redis } from "ioredis";

const args = process.argv.slice(2);
const arg = (name: string, fallback: number) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : fallback;
};
const MINUTES = arg("minutes", 10);
const RATE = arg("rate", 400);
const KEYS = 100;
const PG = process.env.SOAK_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test";
const REDIS = process.env.SOAK_REDIS_URL ?? "redis://127.0.0.1:6379/7";
const root = join(import.meta.dir, "..", "..");
const main = join(root, "src", "main.ts");

const dbName = `kp_soak_${randomBytes(4).toString("hex")}`;
const admin = postgres(PG, { max: 1, onnotice: () => {} });
await admin.unsafe(`create database "${dbName}"`);
const dbUrl = new URL(PG);
dbUrl.pathname = `/${dbName}`;
const port = 40000 + Math.floor(Math.random() * 20000);
const env = {
  PATH: process.env.PATH ?? "",
  DATABASE_URL: dbUrl.toString(),
  REDIS_URL: REDIS,
  SECRET_KEY: randomBytes(32).toString("base64url"),
  PORT: String(port),
  LOG_LEVEL: "warn",
  USAGE_FLUSH_MS: "1000",
  ROTATION_SWEEP_MS: "5000",
  DATA_DIR: `/tmp/${dbName}`,
  // The plan's limits out of reach: the soak loads keys, not plans.
  PLANS_FILE: new URL("../support/unmetered-plans.json", import.meta.url).pathname,
};
const cli = (a: string[]) => Bun.spawnSync(["bun", main, ...a], { env, cwd: root, stdout: "pipe", stderr: "pipe" });
cli(["migrate"]);
// An account holds at most 25 active keys: 100 keys over 5 accounts of 20.
const ACCOUNTS = 5;
const adminKeys: string[] = [];
for (let a = 0; a < ACCOUNTS; a++) {
  cli(["account", "create", "--email", `soak${a}@example.com`, "--password", "soak test passphrase"]);
  adminKeys.push(cli(["key", "create", "--email", `soak${a}@example.com`, "--name", "admin", "--scopes", "keys:manage", "--rate", "100000"]).stdout.toString().trim());
}
const server = Bun.spawn(["bun", main, "serve"], { env, cwd: root, stdout: "inherit", stderr: "inherit" });
const base = `http://127.0.0.1:${port}`;
for (let i = 0; i < 200 && !(await fetch(`${base}/readyz`).then((r) => r.ok, () => false)); i++) await Bun.sleep(100);

const api = async (account: number, path: string, init: RequestInit = {}) => {
  const res = await fetch(base + path, { ...init, headers: { authorization: `Bearer ${adminKeys[account]}`, "content-type": "application/json", ...init.headers } });
  const body = (await res.json()) as Record<string, unknown>;
  if (res.status >= 400) throw new Error(`${init.method ?? "GET"} ${path} → ${res.status} ${JSON.stringify(body)}`);
  return body;
};

interface Live {
  account: number;
  id: string;
  secret: string;
}
const live: Live[] = [];
for (let i = 0; i < KEYS; i++) {
  const account = i % ACCOUNTS;
  const k = await api(account, "/api/keys", { method: "POST", body: JSON.stringify({ name: `soak ${i}`, scopes: ["email:read", "ip:read"], rateLimit: 100_000 }) });
  live.push({ account, id: String(k.id), secret: String(k.secret) });
}
const revoked: string[] = [];

const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.pid}/status`, "utf8"))?.[1] ?? 0) * 1024;
const counts = { ok: 0, meteredErrors: 0, expected401: 0, unexpected: 0 };
const unexpected: string[] = [];
const latencies = new Map<number, number[]>();
const started = Date.now();
const end = started + MINUTES * 60_000;
let rssStart = 0;
let inflight = 0;

async function one() {
  const useRevoked = revoked.length > 0 && Math.random() < 0.02;
  const k: Live = useRevoked ? { account: -1, id: "revoked", secret: revoked[Math.floor(Math.random() * revoked.length)]! } : live[Math.floor(Math.random() * live.length)]!;
  const path = Math.random() < 0.8 ? "/v1/email/someone@example.com" : "/v1/ip/8.8.8.8";
  const t0 = performance.now();
  inflight++;
  try {
    const res = await fetch(base + path, { headers: { authorization: `Bearer ${k.secret}` } });
    const text = await res.text();
    const ms = performance.now() - t0;
    const minute = Math.floor((Date.now() - started) / 60_000);
    (latencies.get(minute) ?? latencies.set(minute, []).get(minute)!).push(ms);
    if (res.status === 200) counts.ok++;
    // A key replaced by a roll or rotation may also have left `live` between the pick and the answer.
    // Failed authentications from one address are throttled (429) past 60 a minute: expected too.
    else if ((res.status === 401 || (res.status === 429 && text.includes("failed authentications"))) && (useRevoked || !live.includes(k))) counts.expected401++;
    else {
      counts.unexpected++;
      if (unexpected.length < 10) unexpected.push(`${res.status} ${path} ${text.slice(0, 200)}`);
    }
  } catch (err) {
    counts.unexpected++;
    if (unexpected.length < 10) unexpected.push(String(err));
  } finally {
    inflight--;
  }
}

/** Every few seconds one of: revoke a key and replace it, roll one (short grace), rotate one in an emergency. */
async function churn() {
  const i = Math.floor(Math.random() * live.length);
  const k = live[i]!;
  const action = ["revoke", "roll", "rotate"][Math.floor(Math.random() * 3)]!;
  if (action === "revoke") {
    live.splice(i, 1);
    await api(k.account, `/api/keys/${k.id}`, { method: "DELETE" });
    revoked.push(k.secret);
    const n = await api(k.account, "/api/keys", { method: "POST", body: JSON.stringify({ name: "soak replacement", scopes: ["email:read", "ip:read"], rateLimit: 100_000 }) });
    live.push({ account: k.account, id: String(n.id), secret: String(n.secret) });
  } else {
    const r =
      action === "roll"
        ? await api(k.account, `/api/keys/${k.id}/roll`, { method: "POST", body: JSON.stringify({ gracePeriodHours: 0 }) })
        : await api(k.account, `/api/keys/${k.id}/rotations/emergency`, { method: "POST", body: JSON.stringify({ reason: "soak" }) });
    if (typeof r.secret !== "string") return;
    const newId = String(action === "roll" ? r.id : r.newKeyId);
    live.splice(i, 1, { account: k.account, id: newId, secret: r.secret });
    // Grace is whole hours: a roll here has none, so the old key is revoked at once.
    if (action === "roll") revoked.push(k.secret);
  }
}

const tick = 20;
const perTick = (RATE * tick) / 1000;
let carry = 0;
let lastChurn = Date.now();
while (Date.now() < end) {
  carry += perTick;
  while (carry >= 1) {
    carry--;
    void one();
  }
  if (!rssStart && Date.now() - started > Math.min(60_000, MINUTES * 60_000 * 0.2)) rssStart = rss();
  if (Date.now() - lastChurn > 3000) {
    lastChurn = Date.now();
    void churn().catch((e) => unexpected.push(`churn: ${e}`));
  }
  await Bun.sleep(tick);
}
while (inflight > 0) await Bun.sleep(10);
const rssEnd = rss();
server.kill("SIGTERM");
await server.exited;

const db = postgres(dbUrl.toString(), { max: 1, onnotice: () => {} });
const [usage] = await db`select coalesce(sum(successes), 0)::bigint as s, coalesce(sum(errors), 0)::bigint as e from key_usage`;
await db.end();
await admin.unsafe(`drop database "${dbName}" with (force)`);
await admin.end();
const redis = new Redis(REDIS);
let cursor = "0";
do {
  const [next, keys] = await redis.scan(cursor, "MATCH", "keyport:*", "COUNT", 1000);
  if (keys.length) await redis.del(...keys);
  cursor = next;
} while (cursor !== "0");
redis.disconnect();

const p = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))] ?? 0;
console.log(`\nsoak: ${MINUTES} min at ${RATE} req/s over ${KEYS} keys, service mode`);
console.log("minute  requests  p50 ms  p99 ms");
for (const [m, xs] of [...latencies].sort((a, b) => a[0] - b[0])) console.log(`${String(m).padStart(6)}  ${String(xs.length).padStart(8)}  ${p(xs, 0.5).toFixed(2).padStart(6)}  ${p(xs, 0.99).toFixed(2).padStart(6)}`);
console.log(`answered 200: ${counts.ok}, expected 401/429 (revoked or past grace): ${counts.expected401}, unexpected: ${counts.unexpected}`);
for (const u of unexpected) console.log(`  unexpected: ${u}`);
console.log(`RSS after warm-up ${(rssStart / 2 ** 20).toFixed(1)} MiB, at end ${(rssEnd / 2 ** 20).toFixed(1)} MiB`);
const countsMatch = Number(usage!.s) === counts.ok;
console.log(`usage in the database: ${usage!.s} successes, ${usage!.e} errors; equals the 200s answered: ${countsMatch ? "yes" : "NO"}`);
process.exit(counts.unexpected === 0 && countsMatch ? 0 : 1);
