import { createHash } from "node:crypto";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pgliteDatabase, type Database } from "../../src/db/client.ts";
import { PgliteWorkerClient, type PgliteConnection, type PgliteQueryable } from "../../src/db/pglite-client.ts";
import { projectRoot } from "../../src/embedded.ts";

/**
 * Embedded databases for tests in tens of milliseconds instead of seconds.
 *
 * A new PGlite runs initdb (3.5-8 s on 2 cores) and then the migrations; that was most of the
 * suite's time. Instead:
 * - the migrated empty database is made once and kept as a dump (a tar file) in
 *   node_modules/.cache, named by the hash of the migrations and PGlite's version, so a run
 *   after the first pays nothing and a changed migration makes a new one;
 * - a harness leases a worker that already has it open and gives it back at close emptied —
 *   every table truncated, which is the migrated template again. A new worker loads the
 *   dump (1.2-2 s, no initdb): two are started by the preload, and another in the
 *   background whenever a harness takes the last idle one;
 * - a process under test (the CLI, a server) gets a copy of the template's files as its
 *   DATA_DIR's pgdata.
 */
const CACHE = join(projectRoot, "node_modules", ".cache", "keyport-test");
/** Idle workers kept for the next harness; a few suites hold two or three harnesses at once. */
const MAX_IDLE = 3;
/**
 * Test databases hold a few hundred rows: 4 MB of shared buffers instead of 128 halves a
 * worker's start (PGlite grows its WebAssembly heap to hold them) and its memory.
 */
const SETTINGS = ["shared_buffers=4MB"];

/** A new worker with a copy of the migrated template open (in memory, or in an empty `dataDir`). */
export async function openTemplateCopy(dataDir?: string): Promise<PgliteWorkerClient> {
  return PgliteWorkerClient.open(dataDir, { loadDataDir: (await migratedTemplate()).dump, settings: SETTINGS });
}

function templateName(): string {
  const hash = createHash("sha256");
  const folder = join(projectRoot, "drizzle");
  const files = [...readdirSync(folder).filter((f) => f.endsWith(".sql")), "meta/_journal.json"].sort();
  for (const file of files) hash.update(file).update(readFileSync(join(folder, file)));
  hash.update(JSON.parse(readFileSync(join(projectRoot, "node_modules", "@electric-sql", "pglite", "package.json"), "utf8")).version);
  return `template-${hash.digest("hex").slice(0, 16)}`;
}

/** Writes `path` whole or not at all: two test processes may make the same file at once. */
async function writeAtomically(path: string, make: (tmp: string) => Promise<void>): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  await make(tmp);
  try {
    renameSync(tmp, path);
  } catch (err) {
    // The other process won: its copy is the same.
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(path)) throw err;
  }
}

interface Template {
  dump: Blob;
  dataDir: string;
  /** Its tables, as `truncate` takes them: a copy is emptied back to the template with these. */
  tables: string;
}

let template: Promise<Template> | undefined;

/** The migrated empty database: as a dump for in-memory databases, as files for processes. */
export function migratedTemplate(): Promise<Template> {
  template ??= (async () => {
    mkdirSync(CACHE, { recursive: true });
    const name = templateName();
    const tarPath = join(CACHE, `${name}.tar`);
    const tablesPath = join(CACHE, `${name}.tables`);
    const dataDir = join(CACHE, `${name}.pgdata`);
    if (!existsSync(tarPath) || !existsSync(tablesPath)) {
      const client = await PgliteWorkerClient.open(undefined, { settings: SETTINGS });
      try {
        await pgliteDatabase(client, async () => {}).migrate();
        const { rows } = await client.query<{ list: string }>(
          "select string_agg(format('%I.%I', schemaname, tablename), ', ' order by tablename) as list from pg_tables where schemaname = 'public'",
        );
        const bytes = new Uint8Array(await (await client.dump()).arrayBuffer());
        await writeAtomically(tablesPath, async (tmp) => writeFileSync(tmp, rows[0]!.list));
        await writeAtomically(tarPath, async (tmp) => writeFileSync(tmp, bytes));
      } finally {
        await client.close();
      }
    }
    const dump = new Blob([readFileSync(tarPath)]);
    if (!existsSync(dataDir)) {
      await writeAtomically(dataDir, async (tmp) => {
        const client = await PgliteWorkerClient.open(tmp, { loadDataDir: dump, settings: SETTINGS });
        await client.close();
      });
    }
    return { dump, dataDir, tables: readFileSync(tablesPath, "utf8") };
  })();
  return template;
}

/** Makes `dataDir` (a DATA_DIR) hold the migrated template, as a process under test would find it. */
export async function seedDataDir(dataDir: string): Promise<void> {
  const { dataDir: files } = await migratedTemplate();
  mkdirSync(dataDir, { recursive: true });
  cpSync(files, join(dataDir, "pgdata"), { recursive: true });
}

const idle: PgliteWorkerClient[] = [];

/** Empties every table of the template: the template again. */
async function reset(client: PgliteWorkerClient): Promise<void> {
  await client.query(`truncate ${(await migratedTemplate()).tables} restart identity cascade`);
  await client.query("select pg_advisory_unlock_all()");
}

/** The harness's side of a leased worker: refuses everything once closed, as a closed database does. */
class Lease implements PgliteConnection {
  ended = false;
  constructor(private readonly client: PgliteWorkerClient) {}
  query<T>(...args: Parameters<PgliteQueryable["query"]>) {
    return this.ended ? Promise.reject(new Error("the embedded database is closed")) : this.client.query<T>(...args);
  }
  transaction<T>(fn: (tx: PgliteQueryable) => Promise<T>): Promise<T> {
    return this.ended ? Promise.reject(new Error("the embedded database is closed")) : this.client.transaction(fn);
  }
}

async function giveBack(client: PgliteWorkerClient): Promise<void> {
  try {
    // Queued behind whatever the harness still had in flight (the client runs one thing at a time).
    await reset(client);
  } catch {
    // The worker failed or was closed under the test: it is not reused.
    await client.close().catch(() => {});
    return;
  }
  if (idle.length < MAX_IDLE) idle.push(client);
  else await client.close();
}

/** A worker being started for the pool, so that a harness rarely waits for one. */
let starting: Promise<void> | undefined;

function startSpare(): Promise<void> {
  starting ??= openTemplateCopy()
    .then((client) => void idle.push(client))
    .finally(() => (starting = undefined));
  return starting;
}

/** Starts `n` workers at once (the preload does, where no test's timeout runs). */
export async function prewarm(n: number): Promise<void> {
  const clients = await Promise.all(Array.from({ length: n }, () => openTemplateCopy()));
  idle.push(...clients);
}

/**
 * A pooled worker's connection, holding the migrated template; `release` empties it and hands
 * the worker to the next lease (after it, the connection refuses everything, as a closed one).
 */
export async function leaseConnection(): Promise<{ connection: PgliteConnection; release(): Promise<void> }> {
  while (idle.length === 0) await startSpare();
  const client = idle.pop()!;
  // The pool ran dry: the next lease's worker starts now, while this one is used.
  if (idle.length === 0) void startSpare().catch(() => {});
  const lease = new Lease(client);
  let released: Promise<void> | undefined;
  return {
    connection: lease,
    release() {
      lease.ended = true;
      return (released ??= giveBack(client));
    },
  };
}

/** A migrated, empty in-memory database; closing it hands its worker to the next one. */
export async function embeddedDatabase(): Promise<Database> {
  const { connection, release } = await leaseConnection();
  return pgliteDatabase(connection, release);
}
