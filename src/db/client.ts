import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { PGlite } from "@electric-sql/pglite";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { migrate as migratePglite } from "drizzle-orm/pglite/migrator";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import { migrate as migratePostgres } from "drizzle-orm/postgres-js/migrator";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";
import { sql } from "drizzle-orm";
import postgres from "postgres";
import * as schema from "./schema.ts";
import { migrationsFolder } from "../embedded.ts";
import { PgliteWorkerClient, type OpenOptions, type PgliteConnection } from "./pglite-client.ts";

export type Schema = typeof schema;
/** One type for both drivers: services never know which one they run on. */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;
export type Tx = Parameters<Parameters<Db["transaction"]>[0]>[0];

export interface Database {
  db: Db;
  kind: "postgres" | "pglite";
  /** Throws when the database does not answer. */
  ping(): Promise<void>;
  migrate(): Promise<void>;
  close(): Promise<void>;
  /** Counts statements sent; the benchmark reads it to prove the hot path sends none. */
  queryCount(): number;
}

export class DatabaseUnavailable extends Error {
  override name = "DatabaseUnavailable";
}

export class DataDirLocked extends Error {
  override name = "DataDirLocked";
}

// Keyport takes pg_advisory_lock(MIGRATION_LOCK) around migrations so two instances starting
// together do not both apply them.
const MIGRATION_LOCK = 7_345_001;

function counter() {
  let n = 0;
  return {
    logger: { logQuery: () => void n++ },
    read: () => n,
  };
}

export async function openPostgres(url: string, opts: { max?: number } = {}): Promise<Database> {
  const client = postgres(url, {
    max: opts.max ?? 10,
    onnotice: () => {},
    connect_timeout: 5,
    idle_timeout: 30,
    connection: { application_name: "keyport" },
  });
  const count = counter();
  const db = drizzlePostgres(client, { schema, logger: count.logger }) as unknown as Db;
  try {
    await client`select 1`;
  } catch (err) {
    await client.end({ timeout: 1 }).catch(() => {});
    throw new DatabaseUnavailable(`cannot reach DATABASE_URL (${describe(err)})`);
  }
  return {
    db,
    kind: "postgres",
    async ping() {
      await client`select 1`;
    },
    async migrate() {
      const single = postgres(url, { max: 1, onnotice: () => {}, connect_timeout: 5 });
      try {
        await single`select pg_advisory_lock(${MIGRATION_LOCK})`;
        await migratePostgres(drizzlePostgres(single), { migrationsFolder: migrationsFolder() });
        await single`select pg_advisory_unlock(${MIGRATION_LOCK})`;
      } finally {
        await single.end({ timeout: 5 });
      }
    },
    async close() {
      await client.end({ timeout: 5 });
    },
    queryCount: count.read,
  };
}

/**
 * PGlite is single-process: a lock file in DATA_DIR holds the owner's pid, and a second
 * process gets DataDirLocked naming it instead of opening (and damaging) the same files.
 * The database itself runs in a worker thread (pglite-client.ts). `dataDir: undefined`
 * gives an in-memory database (tests); `loadDataDir` starts an empty one as a copy of a dump.
 */
export async function openPglite(dataDir: string | undefined, opts: OpenOptions = {}): Promise<Database> {
  let releaseLock = () => {};
  let pgDir: string | undefined;
  if (dataDir) {
    mkdirSync(dataDir, { recursive: true });
    releaseLock = lockDataDir(dataDir);
    pgDir = join(dataDir, "pgdata");
  }
  let client: PgliteWorkerClient;
  try {
    client = await PgliteWorkerClient.open(pgDir, opts);
  } catch (err) {
    releaseLock();
    throw new DatabaseUnavailable(`cannot open the embedded database in ${pgDir ?? "memory"} (${describe(err)})`);
  }
  return pgliteDatabase(client, async () => {
    try {
      await client.close();
    } finally {
      releaseLock();
    }
  });
}

/** A Database over an open PGlite connection; `close` is what closing it does. */
export function pgliteDatabase(client: PgliteConnection, close: () => Promise<void>): Database {
  const count = counter();
  // drizzle's PGlite driver calls only `query` and `transaction`, which the worker's client has.
  const asPglite = client as unknown as PGlite;
  const db = drizzlePglite(asPglite, { schema, logger: count.logger }) as unknown as Db;
  return {
    db,
    kind: "pglite",
    async ping() {
      await client.query("select 1");
    },
    async migrate() {
      await migratePglite(drizzlePglite(asPglite), { migrationsFolder: migrationsFolder() });
    },
    close,
    queryCount: count.read,
  };
}

function lockDataDir(dataDir: string): () => void {
  const file = join(dataDir, "keyport.lock");
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx", 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const holder = Number.parseInt(readFileSync(file, "utf8"), 10);
      if (Number.isInteger(holder) && holder > 0 && holder !== process.pid && isAlive(holder)) {
        throw new DataDirLocked(
          `DATA_DIR ${dataDir} is in use by another Keyport process (pid ${holder}); stop it first, or use a different DATA_DIR`,
        );
      }
      // The holder is gone (crash or kill -9): the lock is stale, take it over.
      rmSync(file, { force: true });
    }
  }
  throw new DataDirLocked(`DATA_DIR ${dataDir}: could not take the lock file ${file}`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function describe(err: unknown): string {
  const e = err as { code?: string; message?: string };
  return e.code ? `${e.code}${e.message ? ": " + e.message : ""}` : (e.message ?? String(err));
}

export async function openDatabase(opts: { databaseUrl?: string; dataDir?: string }): Promise<Database> {
  return opts.databaseUrl ? openPostgres(opts.databaseUrl) : openPglite(opts.dataDir);
}

export { sql };
