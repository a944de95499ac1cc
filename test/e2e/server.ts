import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { projectRoot } from "../../src/embedded.ts";
import { seedDataDir } from "../support/embedded.ts";

export interface ServerProcess {
  origin: string;
  /** Everything the process wrote so far (stdout and stderr), for failure messages. */
  output(): string;
  /** SIGTERM, then the exit code; SIGKILL if it has not exited within `graceMs`. */
  stop(graceMs?: number): Promise<number>;
}

/** A port nothing listens on right now: bind port 0, read what the kernel gave, release it. */
function freePort(): number {
  const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response(null) });
  const port = probe.port;
  probe.stop(true);
  if (!port) throw new Error("the kernel gave no free port");
  return port;
}

function drain(stream: ReadableStream<Uint8Array>, into: string[]): void {
  const decoder = new TextDecoder();
  const reader = stream.getReader();
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      into.push(decoder.decode(value, { stream: true }));
    }
  })();
}

/**
 * `keyport serve` as its own process on a free port and a fresh DATA_DIR (embedded PGlite,
 * in-process state), with the environment of a clean machine plus `env`. Resolves once
 * /readyz answers 200; rejects with the process's output if it exits or never gets ready.
 *
 * @example
 * const server = await startServer({ USAGE_FLUSH_MS: "200" });
 * await fetch(`${server.origin}/healthz`);
 * await server.stop();
 */
export async function startServer(env: Record<string, string> = {}): Promise<ServerProcess> {
  const dataDir = mkdtempSync(join(tmpdir(), "kp-e2e-data-"));
  // A migrated database, as after a first start: initdb alone takes seconds.
  await seedDataDir(dataDir);
  const port = freePort();
  const origin = `http://127.0.0.1:${port}`;
  const proc = Bun.spawn(["bun", "run", join(projectRoot, "src", "main.ts"), "serve"], {
    cwd: projectRoot,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      PORT: String(port),
      HOST: "127.0.0.1",
      DATA_DIR: dataDir,
      LOG_LEVEL: "warn",
      ...env,
    },
    stdout: "pipe",
    stderr: "pipe",
  });
  const out: string[] = [];
  drain(proc.stdout, out);
  drain(proc.stderr, out);
  const output = () => out.join("");
  const cleanUp = () => rmSync(dataDir, { recursive: true, force: true });

  let ready = false;
  for (let attempt = 0; attempt < 300 && proc.exitCode === null; attempt++) {
    try {
      const res = await fetch(`${origin}/readyz`);
      await res.arrayBuffer();
      if (res.status === 200) {
        ready = true;
        break;
      }
    } catch {
      // Not listening yet.
    }
    await Bun.sleep(100);
  }
  if (!ready) {
    proc.kill("SIGKILL");
    await proc.exited;
    cleanUp();
    throw new Error(`keyport serve did not get ready on ${origin} (exit code ${proc.exitCode}). Its output:\n${output()}`);
  }

  return {
    origin,
    output,
    async stop(graceMs = 10_000) {
      proc.kill("SIGTERM");
      const code = await Promise.race([proc.exited, Bun.sleep(graceMs).then(() => null)]);
      if (code === null) proc.kill("SIGKILL");
      const final = code ?? (await proc.exited);
      cleanUp();
      return final;
    },
  };
}
