import { mkdtempSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/**
 * Files the single binary carries inside itself. From source they are read from the
 * project's folders; `bun run build` generates an entry that imports each one
 * `with { type: "file" }` and registers the embedded paths here before main runs.
 */
export interface EmbeddedFiles {
  pgliteWasm: string;
  initdbWasm: string;
  pgliteData: string;
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

let pgliteAssets: Promise<PgliteAssets> | undefined;

/** PGlite's own files when running as the binary; undefined lets PGlite find them in node_modules. */
export function embeddedPgliteAssets(): Promise<PgliteAssets | undefined> {
  if (!embedded) return Promise.resolve(undefined);
  const files = embedded;
  pgliteAssets ??= (async () => ({
    pgliteWasmModule: await WebAssembly.compile(await Bun.file(files.pgliteWasm).arrayBuffer()),
    initdbWasmModule: await WebAssembly.compile(await Bun.file(files.initdbWasm).arrayBuffer()),
    fsBundle: new Blob([await Bun.file(files.pgliteData).arrayBuffer()]),
  }))();
  return pgliteAssets;
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
