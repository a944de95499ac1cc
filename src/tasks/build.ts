import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { projectRoot } from "../embedded.ts";

/**
 * `bun run build` → dist/keyport: one file that starts from an empty folder. A generated
 * entry imports every file the process reads at run time `with { type: "file" }` (PGlite's
 * wasm and data bundle, the migrations, static/), registers their embedded paths, then
 * runs the CLI. The embedded database's worker is a second entry point beside it (Bun
 * bundles each entry point of a compiled binary separately; `new Worker` finds it by name).
 */
const dist = join(projectRoot, "dist");
const work = join(dist, ".entry");
rmSync(work, { recursive: true, force: true });
mkdirSync(work, { recursive: true });

const rel = (p: string) => JSON.stringify(relative(work, p));
const pglite = join(projectRoot, "node_modules", "@electric-sql", "pglite", "dist");
const imports: string[] = [];
let n = 0;
const fileImport = (path: string) => {
  const name = `f${n++}`;
  imports.push(`import ${name} from ${rel(path)} with { type: "file" };`);
  return name;
};

const pgliteWasm = fileImport(join(pglite, "pglite.wasm"));
const initdbWasm = fileImport(join(pglite, "initdb.wasm"));
const pgliteData = fileImport(join(pglite, "pglite.data"));

const migrations: string[] = [];
const drizzleDir = join(projectRoot, "drizzle");
for (const f of readdirSync(drizzleDir).sort()) {
  if (f.endsWith(".sql")) migrations.push(`${JSON.stringify(f)}: ${fileImport(join(drizzleDir, f))}`);
}
migrations.push(`"meta/_journal.json": ${fileImport(join(drizzleDir, "meta", "_journal.json"))}`);

const statics: string[] = [];
const staticDir = join(projectRoot, "static");
for (const f of readdirSync(staticDir).sort()) {
  statics.push(`${JSON.stringify(f)}: ${fileImport(join(staticDir, f))}`);
}

const worker = join(work, "pglite-worker.ts");
writeFileSync(worker, `import ${rel(join(projectRoot, "src", "db", "pglite-worker.ts"))};\n`);

const entry = join(work, "entry.ts");
writeFileSync(
  entry,
  `${imports.join("\n")}
import { registerEmbedded } from ${rel(join(projectRoot, "src", "embedded.ts"))};
registerEmbedded({
  pgliteWasm: ${pgliteWasm},
  initdbWasm: ${initdbWasm},
  pgliteData: ${pgliteData},
  pgliteWorker: new URL("./pglite-worker.ts", import.meta.url).href,
  migrations: { ${migrations.join(", ")} },
  static: { ${statics.join(", ")} },
});
const { main } = await import(${rel(join(projectRoot, "src", "main.ts"))});
await main();
`,
);

const outfile = join(dist, "keyport");
const proc = Bun.spawnSync(["bun", "build", "--compile", entry, worker, "--outfile", outfile], {
  cwd: projectRoot,
  stdout: "inherit",
  stderr: "inherit",
});
if (proc.exitCode !== 0) process.exit(proc.exitCode ?? 1);
rmSync(work, { recursive: true, force: true });
console.log(`built ${relative(projectRoot, outfile)}`);
