import { join } from "node:path";
import { projectRoot } from "../../src/embedded.ts";

const SCRIPTS = join(projectRoot, "test", "bench", "wrk");

export interface WrkResult {
  requests: number;
  durationUs: number;
  nonOk: number;
  connectErrors: number;
  readErrors: number;
  writeErrors: number;
  timeouts: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  meanUs: number;
  /** admitted.lua only: 200s per value of the Date header; admitted.lua and rate.lua: counts per status. */
  admittedPerSecond?: Record<string, number>;
  statuses?: Record<string, number>;
  /** rate.lua and cofree.lua: requests sent a millisecond or more after their slot (the schedule slipped). */
  late?: number;
  /** cofree.lua: wrk's own p99.9 (its p50-max are from each request's send, then "corrected" by wrk 4's guess from the mean rate). */
  p999Us?: number;
  /** cofree.lua: latency from each request's slot on the schedule (free of coordinated omission). */
  cofree?: CoFreeLatency;
  /** cofree.lua: the same answers' latency from their actual send (wrk's measure before its own correction). */
  fromSend?: Omit<CoFreeLatency, "measured" | "unmatched">;
  /** cofree.lua: the gaps between consecutive answers. */
  gaps?: AnswerGaps;
}

export interface CoFreeLatency {
  /** Answers matched to their slot (the echoed address), and those that were not (other endpoints, refusals). */
  measured: number;
  unmatched: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  p999Us: number;
  maxUs: number;
}

export interface AnswerGaps {
  /** The longest gap between two consecutive answers, and when it ended (ms since the epoch). */
  maxUs: number;
  maxAtMs: number;
  /** Gaps of at least this many µs are listed. */
  minUs: number;
  count: number;
  firstAnswerMs: number;
  lastAnswerMs: number;
  /** [end of the gap, ms since the epoch; its length, µs], at most 20,000. */
  list: [number, number][];
}

export function wrkInstalled(): boolean {
  return Bun.which("wrk") !== null;
}

/** One wrk run of `script` (test/bench/wrk/) against `url`; resolves with its BENCH line. rate.lua and cofree.lua take their rate from `env.BENCH_RATE`. */
export async function runWrk(opts: {
  url: string;
  script: "load.lua" | "admitted.lua" | "rate.lua" | "cofree.lua";
  seconds: number;
  connections: number;
  threads?: number;
  env: Record<string, string>;
}): Promise<WrkResult> {
  const proc = Bun.spawn(
    ["wrk", `-t${opts.threads ?? 1}`, `-c${opts.connections}`, `-d${opts.seconds}s`, "--timeout", "5s", "-s", join(SCRIPTS, opts.script), opts.url],
    { env: { PATH: process.env.PATH ?? "", ...opts.env }, stdout: "pipe", stderr: "pipe" },
  );
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  const line = out.split("\n").find((l) => l.startsWith("BENCH "));
  if (code !== 0 || !line) throw new Error(`wrk failed (exit ${code}): ${err.trim() || out.trim()}`);
  return JSON.parse(line.slice(6)) as WrkResult;
}

export const rps = (r: WrkResult) => r.requests / (r.durationUs / 1e6);
