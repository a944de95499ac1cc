import { afterAll, describe, expect, it } from "bun:test";
import { closeSync, constants, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CLI_MAIN, PER_PROCESS_MS } from "../support/cli.ts";
import { seedDataDir } from "../support/embedded.ts";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** `keyport serve` at LOG_LEVEL=info in embedded mode with `stdout`, once /healthz answers. */
async function serve(stdout: "pipe" | number, env: Record<string, string> = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), "kp-logserve-"));
  dirs.push(dataDir);
  await seedDataDir(dataDir);
  const port = 40000 + Math.floor(Math.random() * 20000);
  const proc = Bun.spawn(["bun", CLI_MAIN, "serve"], {
    env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: String(port), DATA_DIR: dataDir, LOG_LEVEL: "info", ...env },
    stdout,
    stderr: "pipe",
  });
  const origin = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    if (await fetch(`${origin}/healthz`).then((r) => r.ok, () => false)) break;
    if (proc.exitCode !== null || i === 400) throw new Error(`keyport serve did not answer (exit code ${proc.exitCode}): ${await new Response(proc.stderr).text()}`);
    await Bun.sleep(50);
  }
  return { proc, origin };
}

/** `n` requests to `path`, `workers` at a time; the request ids of their answers. */
async function requests(origin: string, path: string, n: number, workers = 16): Promise<string[]> {
  const ids: string[] = [];
  let started = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (started < n) {
        started++;
        const res = await fetch(origin + path);
        await res.arrayBuffer();
        expect(res.status).toBe(200);
        ids.push(res.headers.get("x-request-id")!);
      }
    }),
  );
  return ids;
}

const lines = (out: string) =>
  out
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { msg: string; requestId?: string });

describe("the access log of keyport serve", () => {
  it(
    "has every request's line and the shutdown lines on stdout after SIGTERM",
    async () => {
      const { proc, origin } = await serve("pipe");
      const out = new Response(proc.stdout as ReadableStream<Uint8Array>).text();
      const ids = await requests(origin, "/healthz", 400);
      proc.kill("SIGTERM");
      expect(await proc.exited).toBe(0);
      const logged = lines(await out);
      const requestIds = new Set(logged.filter((l) => l.msg === "request").map((l) => l.requestId));
      expect(ids.filter((id) => !requestIds.has(id))).toEqual([]);
      expect(logged[0]!.msg).toBe("listening");
      expect(logged.at(-1)!.msg).toBe("shutdown complete");
    },
    PER_PROCESS_MS * 3,
  );

  it(
    "drops and counts the lines a stuck stdout cannot take, keeps answering, and writes the rest once it is read",
    async () => {
      // stdout a named pipe nobody reads (it fills at 64 KiB); `cat` reads it later on.
      const dir = mkdtempSync(join(tmpdir(), "kp-logfifo-"));
      dirs.push(dir);
      const fifo = join(dir, "stdout");
      expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
      // Held open here (reading and writing: it does not wait for the other end) until `cat`
      // has it, so that the server never finds it without a reader (EPIPE).
      let fd: number | undefined = openSync(fifo, constants.O_RDWR);
      // A 256 KiB bound (LOG_BUFFER_BYTES): about 1,800 lines wait before any is dropped.
      const { proc, origin } = await serve(fd, { LOG_BUFFER_BYTES: String(256 * 1024) });
      try {
        const metricsIds: string[] = [];
        const metrics = async () => {
          const res = await fetch(`${origin}/metrics`);
          metricsIds.push(res.headers.get("x-request-id")!);
          return Number(/^keyport_log_lines_dropped_total (\d+)$/m.exec(await res.text())?.[1]);
        };
        // Requests until the buffer is full and lines are dropped: every one answered meanwhile.
        const ids: string[] = [];
        let d = 0;
        while (d === 0 && ids.length < 20_000) {
          ids.push(...(await requests(origin, "/healthz", 1000)));
          d = await metrics();
        }
        expect(d).toBeGreaterThan(0);
        // Read until every line not dropped so far is out: then nothing more is dropped.
        const cat = Bun.spawn(["cat", fifo], { stdout: "pipe" });
        const reader = cat.stdout.getReader();
        const decoder = new TextDecoder();
        let out = "";
        let bytes = 0;
        const logged: { msg: string; requestId?: string }[] = [];
        const present = new Set<string | undefined>();
        /** Reads what `cat` has next and parses the lines it completes; false at the end. */
        const readSome = async () => {
          const { value, done } = await reader.read();
          if (done) return false;
          bytes += value.length;
          out += decoder.decode(value, { stream: true });
          const end = out.lastIndexOf("\n") + 1;
          for (const l of lines(out.slice(0, end))) {
            logged.push(l);
            present.add(l.requestId);
          }
          out = out.slice(end);
          return true;
        };
        await readSome();
        closeSync(fd);
        fd = undefined;
        // A request's line is logged after its answer: the count is asked again each round.
        while (ids.filter((id) => present.has(id)).length + (await metrics()) < ids.length && (await readSome()));
        const finalDropped = await metrics();
        proc.kill("SIGTERM");
        expect(await proc.exited).toBe(0);
        while (await readSome());
        const all = [...ids, ...metricsIds];
        // Every request's line is either written or counted as dropped.
        expect(all.filter((id) => present.has(id)).length + finalDropped).toBe(all.length);
        // What waited for stdout was bounded: 256 KiB of lines, what the pipe holds (64 KiB), a
        // batch being written, and the few lines logged after it was read.
        expect(bytes).toBeLessThan(512 * 1024);
        expect(logged[0]!.msg).toBe("listening");
        expect(logged.at(-1)!.msg).toBe("shutdown complete");
      } finally {
        if (proc.exitCode === null) proc.kill("SIGKILL");
        if (fd !== undefined) closeSync(fd);
      }
    },
    PER_PROCESS_MS * 6,
  );
});
