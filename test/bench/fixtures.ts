import { randomBytes } from "node:crypto";
import { Redis } from "ioredis";
import postgres from "postgres";
import { createAccount } from "../../src/accounts/service.ts";
import { cliActor } from "../../src/audit/service.ts";
import { parseConfig } from "../../src/config.ts";
import { createKeySchema } from "../../src/keys/model.ts";
import { parseInput } from "../../src/errors.ts";
import { createKey } from "../../src/keys/service.ts";
import { buildDeps } from "../../src/runtime.ts";
import { createLogger } from "../../src/ops/log.ts";
import { MAX_ACTIVE_KEYS } from "../../src/keys/model.ts";
import { generateKey, hashKey, keyParts } from "../../src/keys/format.ts";
import { accounts } from "../../src/accounts/accounts.sql.ts";
import { apiKeys } from "../../src/keys/keys.sql.ts";
import { newId } from "../../src/ids.ts";
import { registerProduct } from "../../src/products/service.ts";
import { UPSTREAM_SPEC } from "./upstream.ts";

export const SECRET_KEY = "bench-secret-key-0123456789abcdefghijklmnopq";

export interface KeySpec {
  name: string;
  count: number;
  rateLimit: number;
  monthlyQuota?: number;
  /** The data API's read scopes unless given (a registered product's, for the proxy rows). */
  scopes?: string[];
}

export interface BenchKey {
  id: string;
  secret: string;
}

/**
 * Makes accounts and keys through the services, as `keyport account/key create` would, on
 * the database and state `env` selects (the server must not be running: PGlite is
 * single-process). Accounts hold at most MAX_ACTIVE_KEYS keys, so specs spread over several.
 */
export async function createBenchKeys(env: Record<string, string>, specs: KeySpec[]): Promise<Record<string, BenchKey[]>> {
  const deps = await buildDeps(parseConfig({ SECRET_KEY, LOG_LEVEL: "silent", ...env }), { log: createLogger("silent") });
  const out: Record<string, BenchKey[]> = {};
  try {
    let account: { id: string } | undefined;
    let held = 0;
    for (const spec of specs) {
      out[spec.name] = [];
      for (let i = 0; i < spec.count; i++) {
        if (!account || held === MAX_ACTIVE_KEYS) {
          account = await createAccount(deps, { email: `bench-${randomBytes(5).toString("hex")}@example.com`, password: "bench password 1234" }, cliActor);
          held = 0;
        }
        const { key, secret } = await createKey(
          deps,
          account.id,
          parseInput(createKeySchema, { name: `${spec.name} ${i}`, scopes: spec.scopes ?? ["email:read", "ip:read"], rateLimit: spec.rateLimit, monthlyQuota: spec.monthlyQuota ?? null }, "key"),
          cliActor,
        );
        held++;
        out[spec.name]!.push({ id: key.id, secret });
      }
    }
  } finally {
    await deps.close();
  }
  return out;
}

/**
 * Many keys at once, for the gap rows (10,000 keys × 3 endpoints = 30,000 usage rows): through
 * the services a key costs ~0.2 s on PGlite (an account per MAX_ACTIVE_KEYS keys, its
 * password hashed; a transaction, an audit row and an event per key), so here the rows are
 * written as createKey writes them (the same id, secret, hash and display parts) in batches of
 * 1,000, MAX_ACTIVE_KEYS to an account (no password: nobody signs in), without the audit
 * trail. The last `agedDays.count` keys were made `agedDays.days` ago (the rotation sweep
 * gives keys over their account's maximum age, 90 days by default, a rotation). The server
 * must not be running (PGlite is single-process).
 */
export async function insertBenchKeys(env: Record<string, string>, spec: Omit<KeySpec, "name">, aged?: { count: number; days: number }): Promise<BenchKey[]> {
  const config = parseConfig({ SECRET_KEY, LOG_LEVEL: "silent", ...env });
  const deps = await buildDeps(config, { log: createLogger("silent") });
  const out: BenchKey[] = [];
  try {
    const now = new Date();
    const old = new Date(now.getTime() - (aged?.days ?? 0) * 86_400_000);
    const accountIds = Array.from({ length: Math.ceil(spec.count / MAX_ACTIVE_KEYS) }, () => newId("acct"));
    for (let i = 0; i < accountIds.length; i += 1000) {
      await deps.db.insert(accounts).values(
        accountIds.slice(i, i + 1000).map((id) => ({ id, email: `bench-${id}@example.com`, passwordHash: "-", emailVerifiedAt: now })),
      );
    }
    const rows: (typeof apiKeys.$inferInsert)[] = [];
    for (let i = 0; i < spec.count; i++) {
      const secret = generateKey(config.keyPrefix, "live");
      const { start, end } = keyParts(secret, config.keyPrefix);
      const id = newId("key");
      rows.push({
        id,
        accountId: accountIds[Math.floor(i / MAX_ACTIVE_KEYS)]!,
        name: `bulk ${i}`,
        environment: "live",
        hash: hashKey(secret),
        start,
        end,
        scopes: spec.scopes ?? ["email:read", "ip:read"],
        rateLimit: spec.rateLimit,
        monthlyQuota: spec.monthlyQuota ?? null,
        createdAt: i >= spec.count - (aged?.count ?? 0) ? old : now,
        updatedAt: now,
      });
      out.push({ id, secret });
    }
    for (let i = 0; i < rows.length; i += 1000) await deps.db.insert(apiKeys).values(rows.slice(i, i + 1000));
  } finally {
    await deps.close();
  }
  return out;
}

/**
 * Registers test/bench/upstream.ts as product `id` (its one operation, `GET /things/{id}`,
 * needs `<id>:read`) through the products service, as the admin pages would, on the
 * database and state `env` selects (the server not running, as for createBenchKeys).
 */
export async function registerBenchProduct(env: Record<string, string>, id: string, upstreamUrl: string): Promise<void> {
  const deps = await buildDeps(parseConfig({ SECRET_KEY, LOG_LEVEL: "silent", ...env }), { log: createLogger("silent") });
  try {
    await registerProduct(deps, { id, name: "Bench upstream", upstreamUrl }, { text: JSON.stringify(UPSTREAM_SPEC), name: "upstream.ts" }, cliActor);
  } finally {
    await deps.close();
  }
}

export interface ServiceResources {
  databaseUrl: string;
  redisUrl: string;
  redisDb: number;
  /** Commands Redis has processed, summed over `INFO commandstats` (the bench's own INFO excluded). */
  redisCalls(): Promise<{ total: number; scripts: number }>;
  redisMemoryUsage(key: string): Promise<number | null>;
  close(): Promise<void>;
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/**
 * A fresh Postgres database (`kp_bench_<random>`, dropped at close) and an empty Redis
 * logical database (its `keyport:` keys deleted at close): the bench never touches data it did
 * not make, and never flushes anything.
 */
export async function openServiceResources(databaseUrl: string, redisUrl: string): Promise<ServiceResources> {
  const name = `kp_bench_${randomBytes(5).toString("hex")}`;
  const admin = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database "${name}"`);
  await admin.end();

  const probe = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await probe.connect();
  const [, count] = (await probe.config("GET", "databases")) as [string, string];
  let redisDb = -1;
  for (let db = Number(count) - 1; db >= 1; db--) {
    await probe.select(db);
    if ((await probe.dbsize()) === 0) {
      redisDb = db;
      break;
    }
  }
  if (redisDb < 0) {
    await probe.quit();
    throw new Error("no empty Redis logical database to run the bench in");
  }
  const u = new URL(redisUrl);
  u.pathname = `/${redisDb}`;
  let infoCalls = 0;
  return {
    databaseUrl: withDatabase(databaseUrl, name),
    redisUrl: u.toString(),
    redisDb,
    async redisCalls() {
      const text = await probe.info("commandstats");
      infoCalls++;
      let total = 0;
      let scripts = 0;
      for (const m of text.matchAll(/^cmdstat_(\w+(?:\|\w+)?):calls=(\d+)/gm)) {
        const calls = Number(m[2]);
        total += calls;
        if (m[1] === "evalsha" || m[1] === "eval") scripts += calls;
      }
      // Our own INFO calls (this one included) are not the servers' work.
      return { total: total - infoCalls, scripts };
    },
    async redisMemoryUsage(key: string) {
      const n = await probe.memory("USAGE", key, "SAMPLES", "0");
      return n === null ? null : Number(n);
    },
    async close() {
      let cursor = "0";
      do {
        const [next, keys] = await probe.scan(cursor, "MATCH", "keyport:*", "COUNT", 1000);
        if (keys.length) await probe.del(...keys);
        cursor = next;
      } while (cursor !== "0");
      await probe.quit();
      const a = postgres(databaseUrl, { max: 1, onnotice: () => {} });
      await a.unsafe(`drop database if exists "${name}" with (force)`);
      await a.end();
    },
  };
}
