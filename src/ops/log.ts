import diagnostics from "node:diagnostics_channel";
import { writeSync } from "node:fs";
import pino, { type DestinationStream, type Logger as PinoLogger } from "pino";
import type { LogLevel } from "../config.ts";

/**
 * pino formats each line inside a tracing channel (`pino_asJson`) unless
 * `TracingChannel.hasSubscribers` is false; Bun's TracingChannel has no such getter (Node
 * added it in 22), so every line paid for `traceSync` and its store bookkeeping with nobody
 * listening: 1.5-1.6 µs a line against 0.9 with the getter, in process here. The getter,
 * with Node's meaning, where it is missing.
 */
const tracingChannel = Object.getPrototypeOf(diagnostics.tracingChannel("keyport")) as object;
if (!("hasSubscribers" in tracingChannel)) {
  type Channels = Record<"start" | "end" | "asyncStart" | "asyncEnd" | "error", { hasSubscribers: boolean }>;
  Object.defineProperty(tracingChannel, "hasSubscribers", {
    configurable: true,
    get(this: Channels) {
      return this.start.hasSubscribers || this.end.hasSubscribers || this.asyncStart.hasSubscribers || this.asyncEnd.hasSubscribers || this.error.hasSubscribers;
    },
  });
}

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** Whether lines of this level are written: a caller can skip building their fields. */
  enabled(level: Exclude<LogLevel, "silent">): boolean;
  /**
   * A logger whose every line carries `bindings` (before the line's own fields), serialised
   * once, by pino's `child`, instead of on every line.
   */
  child(bindings: LogFields): Logger;
}

const rank: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** The part of pino's asynchronous destination (sonic-boom) used here. */
type SonicBoom = DestinationStream & {
  readonly destroyed: boolean;
  flushSync(): void;
  destroy(): void;
  on(event: "drop" | "error" | "drain", listener: (arg: unknown) => void): unknown;
  once(event: "drain", listener: () => void): unknown;
  off(event: "drain", listener: () => void): unknown;
};

/**
 * Lines are handed to the destination in batches of about this many characters: sonic-boom
 * measures the byte length of its last buffered chunk on every write, which on Bun costs
 * ~1.7 µs a line when each line is written on its own (measured), a batch's worth once here.
 */
const BATCH_CHARS = 12 * 1024;
/**
 * By default at most this much waits in the destination for a stdout slower than the lines
 * (about 28,000 access lines, one second or more at full load); further lines are dropped and
 * counted (keyport_log_lines_dropped_total), never held. LOG_BUFFER_BYTES sets it.
 */
export const DEFAULT_LOG_BUFFER_BYTES = 4 * 1024 * 1024;
/** A batch that has not filled is written at most this late: a quiet server's lines. */
const FLUSH_MS = 100;
/** How long the last flush waits for stdout to take what is left before giving it up. */
const FINAL_FLUSH_MS = 5_000;

/** One line at a time in, a batch at a time out to pino's asynchronous destination on stdout. */
class StdoutSink {
  private pending = "";
  private pendingLines = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private droppedNow = false;
  /** A batch handed to the destination is not all written yet ('drain' says when it is). */
  private busy = false;
  /** Stdout is gone (EPIPE, closed) or was given up on at exit: nothing more is written. */
  private broken = false;
  /** After this (epoch ms), a stdout that answers EAGAIN is given up on instead of waited for. */
  private giveUpAt = Number.POSITIVE_INFINITY;
  dropped = 0;
  private readonly dest: SonicBoom;

  constructor(maxBytes: number) {
    // Before pino's own exit hook (registered with the destination), so this one runs first.
    process.on("exit", () => this.exitFlush());
    this.dest = pino.destination({
      dest: 1,
      sync: false,
      // Batches are written as they come; while one is being written, the next wait (bounded).
      minLength: 0,
      maxLength: maxBytes,
      // A full non-blocking stdout answers EAGAIN: sonic-boom tries again 100 ms later.
      retryEAGAIN: () => Date.now() < this.giveUpAt,
    }) as unknown as SonicBoom;
    this.dest.on("drop", () => void (this.droppedNow = true));
    this.dest.on("drain", () => void (this.busy = false));
    this.dest.on("error", (err) => {
      // pino's destination stops writing on EPIPE itself; any other error is said once on
      // stderr instead of ending the process.
      if (this.broken) return;
      this.broken = true;
      if ((err as NodeJS.ErrnoException).code !== "EPIPE") process.stderr.write(`keyport: log lines can no longer be written to stdout: ${(err as Error).message}\n`);
    });
  }

  private get closed(): boolean {
    return this.broken || this.dest.destroyed;
  }

  /** pino's stream interface: one line, with its newline. */
  write(line: string): void {
    this.pending += line;
    this.pendingLines++;
    if (this.pending.length >= BATCH_CHARS) this.push();
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => this.push(), FLUSH_MS);
      this.timer.unref();
    }
  }

  /** Takes the batch so far (and stops its timer). */
  private take(): { batch: string; lines: number } {
    clearTimeout(this.timer);
    this.timer = undefined;
    const taken = { batch: this.pending, lines: this.pendingLines };
    this.pending = "";
    this.pendingLines = 0;
    return taken;
  }

  /** Hands the batch to the destination, which writes it now or after the write under way. */
  push(): void {
    if (this.pendingLines === 0) return;
    const { batch, lines } = this.take();
    if (this.closed) {
      this.dropped += lines;
      return;
    }
    this.droppedNow = false;
    this.dest.write(batch);
    if (this.droppedNow) this.dropped += lines;
    else this.busy = true;
  }

  /** Resolves true once every line so far is written, false if that takes longer than `ms`. */
  async drain(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    // Lines logged while waiting are waited for too.
    for (this.push(); this.busy && !this.closed; this.push()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      let onDrain = () => {};
      await new Promise<void>((resolve) => {
        onDrain = resolve;
        timer = setTimeout(resolve, left);
        this.dest.once("drain", onDrain);
      });
      clearTimeout(timer);
      this.dest.off("drain", onDrain);
    }
    return true;
  }

  /** Writes nothing more (what is buffered is lost): a stdout that took nothing is not waited for at exit. */
  abandon(): void {
    this.dropped += this.take().lines;
    this.broken = true;
    this.dest.destroy();
  }

  /**
   * An exit without flushLogs (an uncaught error, a bare process.exit): what is buffered is
   * written synchronously, waiting at most a second for a full stdout. A batch being written
   * asynchronously at that moment may be lost (Bun does not finish it at exit): the process's
   * own exits go through flushLogs.
   */
  private exitFlush(): void {
    if (this.closed) return;
    this.giveUpAt = Date.now() + 1_000;
    const { batch } = this.take();
    try {
      if (this.busy) {
        // Queued behind the write under way, then written synchronously.
        if (batch) this.dest.write(batch);
        this.dest.flushSync();
      } else if (batch) {
        writeAllSync(1, batch, this.giveUpAt);
      }
    } catch (err) {
      process.stderr.write(`keyport: log lines not written: ${(err as Error).message}\n`);
    }
    // pino's exit hook then finds it destroyed and does not flush again.
    this.broken = true;
    this.dest.destroy();
  }
}

/** Writes all of `text` to `fd`, retrying a full non-blocking fd until `giveUpAt`. */
function writeAllSync(fd: number, text: string, giveUpAt: number): void {
  let buf = Buffer.from(text);
  while (buf.length > 0) {
    try {
      buf = buf.subarray(writeSync(fd, buf));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN" || Date.now() >= giveUpAt) throw err;
      Bun.sleepSync(10);
    }
  }
}

let sink: StdoutSink | undefined;

/**
 * The process's one stdout sink, shared by every logger so that their lines stay in order; its
 * bound is the first caller's.
 */
function stdoutSink(maxBytes: number): StdoutSink {
  return (sink ??= new StdoutSink(maxBytes));
}

/** Lines not written because stdout was slower than them and the buffer was full (keyport_log_lines_dropped_total). */
export function logLinesDropped(): number {
  return sink?.dropped ?? 0;
}

/**
 * Waits until every line logged so far is written to stdout: call it before `process.exit`.
 * A stdout that takes nothing for `maxWaitMs` (5 s) is given up on: what is left is lost,
 * said in one line on stderr, and nothing more is written. (An exit without it still writes
 * what it can, synchronously.)
 */
export async function flushLogs(maxWaitMs = FINAL_FLUSH_MS): Promise<void> {
  if (!sink || (await sink.drain(maxWaitMs))) return;
  sink.abandon();
  process.stderr.write(`keyport: log lines not written: stdout took nothing for ${maxWaitMs} ms\n`);
}

let stampMs = -1;
let stamp = "";

/**
 * pino's isoTime, formatted once per millisecond: at full load tens of lines share each
 * millisecond, and `toISOString` on every line was a third of pino's work on an access line
 * (1.0-1.3 µs a line with it, 0.7-0.9 without, in process on this machine).
 */
function isoTimeOncePerMs(): string {
  const now = Date.now();
  if (now !== stampMs) {
    stampMs = now;
    stamp = `,"time":"${new Date(now).toISOString()}"`;
  }
  return stamp;
}

/**
 * One JSON object per line (`{"level":"info","time":"<ISO 8601>",…fields,"msg":"…"}`), never a
 * secret: callers log ids, not keys. On stdout, lines are batched and written asynchronously
 * (pino's destination), bounded, and flushed on exit (flushLogs); with `write`, each line is
 * handed to it at once, without its newline (tests). `bufferBytes` bounds what waits for a slow
 * stdout (LOG_BUFFER_BYTES; the first logger's bound is the process's).
 */
export function createLogger(level: LogLevel, write?: (line: string) => void, bufferBytes = DEFAULT_LOG_BUFFER_BYTES): Logger {
  const min = rank[level];
  const out = write || level === "silent" ? undefined : stdoutSink(bufferBytes);
  const dest: DestinationStream = out ?? { write: (s: string) => void write?.(s.endsWith("\n") ? s.slice(0, -1) : s) };
  const p: PinoLogger = pino(
    {
      level: level === "silent" ? "silent" : level,
      base: null,
      timestamp: isoTimeOncePerMs,
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
  return wrap(p, min, out);
}

function wrap(p: PinoLogger, min: number, out: StdoutSink | undefined): Logger {
  // Warnings and errors are rare and wanted at once: each sends its batch to stdout now.
  const urgent = (lvl: "warn" | "error") => (msg: string, fields?: LogFields) => {
    p[lvl](fields ?? {}, msg);
    out?.push();
  };
  return {
    debug: (msg, fields) => p.debug(fields ?? {}, msg),
    info: (msg, fields) => p.info(fields ?? {}, msg),
    warn: urgent("warn"),
    error: urgent("error"),
    enabled: (lvl) => rank[lvl] >= min,
    child: (bindings) => wrap(p.child(bindings), min, out),
  };
}
