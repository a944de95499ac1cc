import { afterAll } from "bun:test";
import { mkdtempSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { projectRoot } from "../../src/embedded.ts";
import { seedDataDir } from "./embedded.ts";

/** The CLI's entry, run as `bun src/main.ts …`. */
export const CLI_MAIN = join(projectRoot, "src", "main.ts");

/**
 * Every command is a new Bun process, and most open the embedded database in a worker of
 * their own: 0.3-0.5 s, and about 1 s more to open it, on 2 cores (2-3 s each under load). A
 * test's timeout is this for each process it starts or database it opens.
 */
export const PER_PROCESS_MS = 10_000;

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The CLI for one test file: temporary data folders (removed together after the file — a
 * dozen folders of a few thousand files each take seconds on a loaded machine, so the hook is
 * given a process's time), seeded ones holding a migrated database as after a first start,
 * and the CLI run with the environment of a clean machine: PATH and the variables under test.
 * `cliAsync` does not block the test process (a spec URL it serves, say).
 */
export function cliHarness(prefix: string, baseEnv: Record<string, string> = {}) {
  const dirs: string[] = [];
  afterAll(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))), PER_PROCESS_MS);
  const tempDir = () => {
    const d = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(d);
    return d;
  };
  const envOf = (env: Record<string, string>) => ({ PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", LOG_LEVEL: "warn", DATA_DIR: tempDir(), ...baseEnv, ...env });
  return {
    tempDir,
    async seededDir() {
      const d = tempDir();
      await seedDataDir(d);
      return d;
    },
    cli(args: string[], env: Record<string, string> = {}): CliRun {
      const proc = Bun.spawnSync(["bun", CLI_MAIN, ...args], { env: envOf(env), stdout: "pipe", stderr: "pipe" });
      return { code: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
    },
    async cliAsync(args: string[], env: Record<string, string> = {}): Promise<CliRun> {
      const proc = Bun.spawn(["bun", CLI_MAIN, ...args], { env: envOf(env), stdout: "pipe", stderr: "pipe" });
      const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      return { code, stdout, stderr };
    },
  };
}
