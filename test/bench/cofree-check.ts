/**
 * Checks that test/bench/wrk/cofree.lua measures what plain wrk hides (`bun run bench --
 * --only cofree`, or `bun test/bench/cofree-check.ts` alone): a server that blocks its thread
 * for 50 ms every 2 s (test/bench/stall.ts), driven at 2,000 requests/s over 20 connections.
 * At that rate a stall holds back ~100 slots, 2.5% of the requests, waiting 0-50 ms: their
 * latency from the schedule puts p99 near 30 ms and the maximum at 50 ms or more. Measured
 * from the send, as wrk measures, only the ≤ 20 requests in flight when the stall begins
 * wait: p99 stays near the server's ordinary latency. (wrk 4's own figures add synthetic
 * values guessed from the mean rate, so they show part of it; printed for comparison.) The
 * same server without the stall is the control, printed beside it (on a quiet machine both its
 * p99s are small; on a busy one the schedule's latency shows the machine's own pauses).
 * Prints pass/fail; exit code 0 on pass.
 */
import { join } from "node:path";
import { projectRoot } from "../../src/embedded.ts";
import { startServer } from "./procs.ts";
import { runWrk, wrkInstalled, type WrkResult } from "./wrk.ts";

const STALL = join(projectRoot, "test", "bench", "stall.ts");
const STALL_MS = 50;
const RATE = 2000;
const CONNECTIONS = 20;
const SECONDS = 7;

export interface CoFreeCheck {
  pass: boolean;
  detail: string;
  stalled: WrkResult;
  control: WrkResult;
}

async function driven(stallMs: number): Promise<WrkResult> {
  const server = await startServer({ name: `stall-${stallMs}`, script: STALL, env: { STALL_MS: String(stallMs), STALL_EVERY_MS: "2000" } });
  try {
    return await runWrk({ url: server.url, script: "cofree.lua", seconds: SECONDS, connections: CONNECTIONS, env: { BENCH_RATE: String(RATE) } });
  } finally {
    await server.stop();
  }
}

export async function checkCoFree(): Promise<CoFreeCheck> {
  const stalled = await driven(STALL_MS);
  const control = await driven(0);
  const ms = (us: number) => (us / 1000).toFixed(2);
  const s = stalled.cofree!;
  const c = control.cofree!;
  const checks = [
    // The stall shows in the schedule's latency: the maximum at least the stall, p99 a large share of it.
    s.maxUs >= 0.9 * STALL_MS * 1000,
    s.p99Us >= 0.4 * STALL_MS * 1000,
    // Measured from the send, as wrk does, p99 does not show it: the coordinated omission the script removes.
    stalled.fromSend!.p99Us < 0.4 * STALL_MS * 1000,
    // Every answer matched to its slot. (The control is printed, not judged: on a shared
    // machine its own pauses are real and the schedule's latency shows them too.)
    s.unmatched === 0 && c.unmatched === 0 && s.measured > 0.9 * RATE * SECONDS && c.measured > 0.9 * RATE * SECONDS,
    // The gaps between answers show the stall too.
    (stalled.gaps?.maxUs ?? 0) >= 0.9 * STALL_MS * 1000,
  ];
  const detail =
    `${STALL_MS} ms stall every 2 s at ${RATE}/s, ${CONNECTIONS} connections: from the schedule p99 ${ms(s.p99Us)} / p99.9 ${ms(s.p999Us)} / max ${ms(s.maxUs)} ms; ` +
    `from the send p99 ${ms(stalled.fromSend!.p99Us)} / p99.9 ${ms(stalled.fromSend!.p999Us)} / max ${ms(stalled.fromSend!.maxUs)} ms; ` +
    `wrk's own (corrected by its guess) p99 ${ms(stalled.p99Us)} / p99.9 ${ms(stalled.p999Us ?? 0)} ms; longest gap between answers ${ms(stalled.gaps?.maxUs ?? 0)} ms; ${stalled.late} late. ` +
    `No stall: from the schedule p99 ${ms(c.p99Us)} / max ${ms(c.maxUs)} ms, from the send p99 ${ms(control.fromSend!.p99Us)} ms; longest gap ${ms(control.gaps?.maxUs ?? 0)} ms. ` +
    `Matched ${s.measured} + ${c.measured}, unmatched ${s.unmatched} + ${c.unmatched}`;
  return { pass: checks.every(Boolean), detail, stalled, control };
}

if (import.meta.main) {
  if (!wrkInstalled()) {
    console.error("cofree-check: wrk is not installed (apt-get install -y wrk)");
    process.exit(1);
  }
  const r = await checkCoFree();
  console.log(`${r.pass ? "PASS" : "FAIL"} cofree.lua shows a stall that wrk's own latency hides: ${r.detail}`);
  process.exit(r.pass ? 0 : 1);
}
