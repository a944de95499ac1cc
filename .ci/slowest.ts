/**
 * The 15 slowest tests and hooks of a `bun test` run, so that a creeping slowdown is seen
 * before it turns into a timeout.
 *
 *   bun .ci/slowest.ts <bun test output> <hook timings (KP_TEST_TIMINGS)> [count]
 *
 * Tests come from Bun's own lines (`(pass) describe > name [12.34ms]`), hooks from the
 * JSON lines test/support/timings.ts writes. A file that is missing counts as empty.
 */
import { existsSync, readFileSync } from "node:fs";

const [logPath, hooksPath, countArg] = process.argv.slice(2);
if (!logPath || !hooksPath) {
  console.error("usage: bun .ci/slowest.ts <bun test output> <hook timings> [count]");
  process.exit(2);
}
const count = Number(countArg ?? 15);
const read = (path: string) => (existsSync(path) ? readFileSync(path, "utf8") : "");

interface Timing {
  kind: "test" | "hook";
  name: string;
  ms: number;
}

const timings: Timing[] = [];
// Bun colours its output when it thinks it writes to a terminal.
const plain = read(logPath).replace(/\x1b\[[0-9;]*m/g, "");
for (const line of plain.split("\n")) {
  const m = /^\((pass|fail)\) (.+) \[([\d.]+)(ms|s)\]$/.exec(line.trim());
  if (m) timings.push({ kind: "test", name: m[2]!, ms: Number(m[3]) * (m[4] === "s" ? 1000 : 1) });
}
for (const line of read(hooksPath).split("\n")) {
  if (!line.trim()) continue;
  const { name, ms } = JSON.parse(line) as { name: string; ms: number };
  timings.push({ kind: "hook", name, ms });
}

timings.sort((a, b) => b.ms - a.ms);
console.log(`slowest ${count} tests and hooks:`);
for (const t of timings.slice(0, count)) {
  console.log(`${t.ms.toFixed(0).padStart(7)} ms  ${t.kind}  ${t.name}`);
}
