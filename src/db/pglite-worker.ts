/**
 * The worker thread that owns the embedded database (see pglite-client.ts for why). PGlite's
 * own lock runs the queries one at a time in the order they arrive; the main side decides
 * which may be in flight together.
 */
import { PGlite, type ParserOptions } from "@electric-sql/pglite";
import { loadPgliteAssets } from "../embedded.ts";
import type { WorkerReply, WorkerRequest } from "./pglite-protocol.ts";

declare const self: Worker;

let pg: PGlite | undefined;
/** Parser sets by the type ids they keep as text (drizzle asks for the same few each time). */
const parserSets = new Map<string, ParserOptions>();

function textParsers(oids: number[]): ParserOptions {
  const key = oids.join(",");
  let parsers = parserSets.get(key);
  if (!parsers) {
    parsers = Object.fromEntries(oids.map((oid) => [oid, (value: string) => value]));
    parserSets.set(key, parsers);
  }
  return parsers;
}

async function handle(req: WorkerRequest): Promise<unknown> {
  switch (req.op) {
    case "open": {
      const assets = req.assets ? await loadPgliteAssets(req.assets) : undefined;
      pg = await PGlite.create({ dataDir: req.dataDir, loadDataDir: req.loadDataDir, postgresqlconf: req.settings, ...assets });
      return null;
    }
    case "dump": {
      if (!pg) throw new Error("the embedded database is not open");
      // Uncompressed: a copy is loaded far more often than it is made, and gunzip costs more than the bytes.
      return await pg.dumpDataDir("none");
    }
    case "query": {
      if (!pg) throw new Error("the embedded database is not open");
      return await pg.query(req.sql, req.params, { rowMode: req.rowMode, parsers: textParsers(req.textTypes) });
    }
    case "close": {
      await pg?.close();
      pg = undefined;
      return null;
    }
  }
}

/**
 * A database error crosses as its own fields (SQLSTATE `code`, `constraint`, `detail` …):
 * structured cloning keeps only an Error's message. Functions and objects (the query's
 * options) stay behind.
 */
function serializeError(err: unknown): Record<string, unknown> {
  const e = err instanceof Error ? err : new Error(String(err));
  const fields: Record<string, unknown> = { name: e.name, message: e.message };
  for (const [k, v] of Object.entries(e)) {
    if (v === null || ["string", "number", "boolean"].includes(typeof v)) fields[k] = v;
  }
  return fields;
}

self.onmessage = async (event: MessageEvent<WorkerRequest>) => {
  const req = event.data;
  let reply: WorkerReply;
  try {
    reply = { id: req.id, result: await handle(req) };
  } catch (err) {
    reply = { id: req.id, error: serializeError(err) };
  }
  self.postMessage(reply);
};
