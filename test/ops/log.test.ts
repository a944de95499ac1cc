import { afterAll, describe, expect, it } from "bun:test";
import diagnostics from "node:diagnostics_channel";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { projectRoot } from "../../src/embedded.ts";
import { createLogger } from "../../src/ops/log.ts";
import { PER_PROCESS_MS } from "../support/cli.ts";

const LEVELS = ["debug", "info", "warn", "error"] as const;

describe("log lines", () => {
  it("are one JSON object each: time (ISO 8601), level by name, msg, then the fields", () => {
    const lines: string[] = [];
    const log = createLogger("debug", (l) => void lines.push(l));
    log.info("request", { requestId: "req_x1", method: "GET", route: "/v1/email/:address", status: 200, ms: 1.23, absent: undefined });
    log.warn("50% of the quota", { keyId: "key_1", nested: { a: [1, "two"] } });
    log.error("no fields");
    expect(lines.length).toBe(3);
    for (const l of lines) expect(l).not.toContain("\n");
    const [a, b, c] = lines.map((l) => JSON.parse(l));
    expect(a).toEqual({ time: a.time, level: "info", msg: "request", requestId: "req_x1", method: "GET", route: "/v1/email/:address", status: 200, ms: 1.23 });
    expect(new Date(a.time).toISOString()).toBe(a.time);
    expect(b).toEqual({ time: b.time, level: "warn", msg: "50% of the quota", keyId: "key_1", nested: { a: [1, "two"] } });
    expect(c).toEqual({ time: c.time, level: "error", msg: "no fields" });
    // No pid or hostname: the lines carry what the callers give and nothing else.
    expect(Object.keys(c).sort()).toEqual(["level", "msg", "time"]);
  });

  it("are formatted outside pino's tracing channel while nobody listens, and inside it once someone does", () => {
    const lines: string[] = [];
    const log = createLogger("info", (l) => void lines.push(l));
    const channel = diagnostics.tracingChannel("pino_asJson");
    expect(channel.hasSubscribers).toBe(false);
    const seen: string[] = [];
    const handlers = { start: () => void seen.push("start"), end: () => void seen.push("end"), asyncStart() {}, asyncEnd() {}, error() {} };
    channel.subscribe(handlers);
    try {
      expect(channel.hasSubscribers).toBe(true);
      log.info("traced");
    } finally {
      channel.unsubscribe(handlers);
    }
    expect(channel.hasSubscribers).toBe(false);
    log.info("not traced");
    expect(seen).toEqual(["start", "end"]);
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(["traced", "not traced"]);
  });

  it("are written from their level up, and enabled() says which", () => {
    for (const level of [...LEVELS, "silent"] as const) {
      const lines: string[] = [];
      const log = createLogger(level, (l) => void lines.push(l));
      for (const l of LEVELS) log[l](`a ${l} line`);
      const from = level === "silent" ? LEVELS.length : LEVELS.indexOf(level);
      expect(lines.map((l) => JSON.parse(l).level)).toEqual(LEVELS.slice(from));
      expect(LEVELS.map((l) => log.enabled(l))).toEqual(LEVELS.map((_, i) => i >= from));
    }
  });
});

/**
 * A child process logging to its real stdout through createLogger: what another process
 * reads from the pipe is what a log collector gets.
 */
const dir = mkdtempSync(join(tmpdir(), "kp-log-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const LOG_TS = join(projectRoot, "src", "ops", "log.ts");

function child(name: string, body: string) {
  const file = join(dir, `${name}.ts`);
  writeFileSync(file, `import { createLogger, flushLogs, logLinesDropped } from ${JSON.stringify(LOG_TS)};\n${body}\n`);
  return Bun.spawn(["bun", file], { env: { PATH: process.env.PATH ?? "" }, stdout: "pipe", stderr: "pipe" });
}

function parsed(out: string): Record<string, unknown>[] {
  return out
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l));
}

describe("log lines on stdout", () => {
  it(
    "are all written, in order, before the process exits (flushLogs, then process.exit)",
    async () => {
      const proc = child(
        "all",
        `const log = createLogger("info");
         for (let i = 0; i < 5000; i++) {
           if (i % 1000 === 999) log.warn("line", { seq: i });
           else log.info("line", { seq: i, pad: "x".repeat(i % 50) });
           if (i % 100 === 0) await Bun.sleep(0);
         }
         await flushLogs();
         process.exit(0);`,
      );
      const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
      expect(err).toBe("");
      expect(code).toBe(0);
      expect(parsed(out).map((l) => l.seq)).toEqual(Array.from({ length: 5000 }, (_, i) => i));
    },
    PER_PROCESS_MS,
  );

  it(
    "still buffered are written by an exit that did not wait for them",
    async () => {
      // Fewer than a batch: all of them wait in the buffer when the process exits.
      const proc = child(
        "exit",
        `const log = createLogger("info");
         for (let i = 0; i < 100; i++) log.info("line", { seq: i });
         process.exit(3);`,
      );
      const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
      expect(code).toBe(3);
      expect(parsed(out).map((l) => l.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    },
    PER_PROCESS_MS,
  );

  it(
    "of a quiet process are written without an exit or a full batch",
    async () => {
      const proc = child(
        "quiet",
        `createLogger("info").info("alone", { n: 1 });
         setInterval(() => {}, 1000);`,
      );
      const reader = proc.stdout.getReader();
      let out = "";
      while (!out.includes("\n")) {
        const { value, done } = await reader.read();
        if (done) break;
        out += new TextDecoder().decode(value);
      }
      proc.kill("SIGKILL");
      await proc.exited;
      expect(parsed(out)).toEqual([{ time: expect.any(String), level: "info", msg: "alone", n: 1 }]);
    },
    PER_PROCESS_MS,
  );

  it(
    "wait in a bounded buffer for a stdout slower than them, then are dropped and counted; the kept ones are written",
    async () => {
      const total = 120_000;
      // Logged in one go: no write finishes meanwhile, so what the buffer cannot hold is dropped.
      const proc = child(
        "bounded",
        `const log = createLogger("info");
         for (let i = 0; i < ${total}; i++) log.info("line", { seq: i, pad: "p".repeat(40) });
         process.stderr.write("dropped " + logLinesDropped() + "\\n");
         await flushLogs();
         process.exit(0);`,
      );
      const errReader = proc.stderr.getReader();
      let err = "";
      while (!err.includes("\n")) {
        const { value, done } = await errReader.read();
        if (done) break;
        err += new TextDecoder().decode(value);
      }
      const dropped = Number(/^dropped (\d+)$/m.exec(err)?.[1]);
      const [out, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
      expect(code).toBe(0);
      const seqs = parsed(out).map((l) => l.seq as number);
      expect(dropped).toBeGreaterThan(0);
      expect(seqs.length + dropped).toBe(total);
      // What was kept is what the buffer (4 MiB) and the pipe (at most 1 MiB) hold.
      expect(Buffer.byteLength(out)).toBeLessThanOrEqual(5 * 1024 * 1024);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      expect(new Set(seqs).size).toBe(seqs.length);
    },
    PER_PROCESS_MS,
  );
});
