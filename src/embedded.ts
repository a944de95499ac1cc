import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { PgliteAssetPaths } from "./db/pglite-protocol.ts";

/**
 * Files the single binary carries inside itself. From source they are read from the
 * project's folders; `bun run build` generates an entry that imports each one
 * `with { type: "file" }` and registers the embedded paths here before main runs.
 */
export interface EmbeddedFiles extends PgliteAssetPaths {
  /** How the compiled binary names the worker entry point (src/db/pglite-worker.ts). */
  pgliteWorker: string;
  /** `<tag>.sql` and `meta/_journal.json` relative names → embedded path. */
  migrations: Record<string, string>;
  /** static/ file name → embedded path. */
  static: Record<string, string>;
}

let embedded: EmbeddedFiles | undefined;

export const projectRoot = resolve(import.meta.dir, "..");

export function registerEmbedded(files: EmbeddedFiles): void {
  embedded = files;
}

export function isCompiled(): boolean {
  return embedded !== undefined;
}

export interface PgliteAssets {
  pgliteWasmModule: WebAssembly.Module;
  initdbWasmModule: WebAssembly.Module;
  fsBundle: Blob;
}

/** PGlite's own files inside the binary; undefined from source (PGlite finds them in node_modules). */
export function pgliteAssetPaths(): PgliteAssetPaths | undefined {
  if (!embedded) return undefined;
  return { pgliteWasm: embedded.pgliteWasm, initdbWasm: embedded.initdbWasm, pgliteData: embedded.pgliteData };
}

/** Compiles PGlite's files for PGlite.create (in the database's worker thread). */
export async function loadPgliteAssets(paths: PgliteAssetPaths): Promise<PgliteAssets> {
  return {
    pgliteWasmModule: await WebAssembly.compile(await Bun.file(paths.pgliteWasm).arrayBuffer()),
    initdbWasmModule: await WebAssembly.compile(await Bun.file(paths.initdbWasm).arrayBuffer()),
    fsBundle: new Blob([await Bun.file(paths.pgliteData).arrayBuffer()]),
  };
}

/** The embedded database's worker: an entry point of its own in the binary (see tasks/build.ts). */
export function pgliteWorkerUrl(): string | URL {
  return embedded ? embedded.pgliteWorker : new URL("./db/pglite-worker.ts", import.meta.url);
}

let migrationsDir: string | undefined;

/**
 * drizzle's migrator reads `meta/_journal.json` and `<tag>.sql` from a folder on disk, so the
 * binary writes its embedded copies to a private temporary folder once and points it there.
 */
export function migrationsFolder(): string {
  if (!embedded) return join(projectRoot, "drizzle");
  if (!migrationsDir) {
    const dir = mkdtempSync(join(tmpdir(), "keyport-migrations-"));
    mkdirSync(join(dir, "meta"));
    for (const [name, path] of Object.entries(embedded.migrations)) {
      writeFileSync(join(dir, name), readFileSync(path));
    }
    migrationsDir = dir;
  }
  return migrationsDir;
}

/** Path of a file in static/, or undefined when there is no such file. */
export function staticFile(name: string): string | undefined {
  if (embedded) return embedded.static[name];
  return join(projectRoot, "static", name);
}
