import { randomBytes } from "node:crypto";
import postgres from "postgres";
import { parseConfig, type Config } from "../../src/config.ts";
import { openPostgres, type Database } from "../../src/db/client.ts";
import { embeddedDatabase } from "./embedded.ts";
import { MemoryState } from "../../src/state/memory.ts";
import { RedisState } from "../../src/state/redis.ts";
import type { SharedState } from "../../src/state/types.ts";
import type { Clock } from "../../src/ops/clock.ts";

/**
 * The two storage backends every storage test runs on: embedded (PGlite in memory +
 * in-process state) always; service (Postgres + Redis) when TEST_DATABASE_URL and
 * TEST_REDIS_URL are set (.ci/run sets them). Test code reads them here and nowhere else.
 */
export interface Backend {
  name: "embedded" | "service";
  databaseUrl?: string;
  redisUrl?: string;
}

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL || undefined;
export const TEST_REDIS_URL = process.env.TEST_REDIS_URL || undefined;

export const backends: Backend[] = [
  { name: "embedded" },
  ...(TEST_DATABASE_URL && TEST_REDIS_URL ? [{ name: "service" as const, databaseUrl: TEST_DATABASE_URL, redisUrl: TEST_REDIS_URL }] : []),
];

/**
 * A plans file whose one plan, `free`, puts the plan's limits out of reach: for the suites
 * that test something else (the key's own limits, the meter, shutdown) and would otherwise
 * meet the shipped free plan's 2 requests a second and 500 calls a month. The plans
 * themselves are tested on the shipped file (test/gateway/plans.test.ts).
 */
export const UNMETERED_PLANS = new URL("./unmetered-plans.json", import.meta.url).pathname;

export function testConfig(overrides: Record<string, string> = {}): Config {
  return { ...parseConfig({ LOG_LEVEL: "silent", SECRET_KEY: "test-secret-key-0123456789abcdefghijklmnop", ...overrides }) };
}

function withDatabase(url: string, name: string): string {
  const u = new URL(url);
  u.pathname = `/${name}`;
  return u.toString();
}

/** A fresh database with the real migrations applied: Postgres (dropped at close) or PGlite in memory (a copy of the migrated template). */
export async function freshDatabase(backend: Backend): Promise<Database & { url?: string }> {
  if (!backend.databaseUrl) return embeddedDatabase();
  const name = `kp_t_${randomBytes(6).toString("hex")}`;
  const admin = postgres(backend.databaseUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  const url = withDatabase(backend.databaseUrl, name);
  const db = await openPostgres(url, { max: 10 });
  await db.migrate();
  return {
    ...db,
    url,
    async close() {
      await db.close();
      const a = postgres(backend.databaseUrl!, { max: 1, onnotice: () => {} });
      try {
        await a.unsafe(`drop database if exists "${name}" with (force)`);
      } finally {
        await a.end();
      }
    },
  };
}

/** Fresh shared state: in-process, or Redis under a prefix of its own (purged at close). */
export async function freshState(backend: Backend, clock?: Clock, prefix = `kptest:${randomBytes(5).toString("hex")}:`): Promise<SharedState> {
  if (!backend.redisUrl) return new MemoryState(clock);
  const state = await RedisState.connect(backend.redisUrl, { prefix });
  const close = state.close.bind(state);
  state.close = async () => {
    await state.purge().catch(() => {});
    await close();
  };
  return state;
}
