import { appendFileSync } from "node:fs";
import { relative } from "node:path";
import { projectRoot } from "../../src/embedded.ts";

/**
 * Times every beforeAll/beforeEach/afterAll/afterEach hook of the run when KP_TEST_TIMINGS
 * names a file: one JSON line per hook run, `{"name":"beforeAll test/x.test.ts:12","ms":…}`.
 * Bun reports each test's duration but not its hooks', and a slow set-up is where a suite
 * creeps towards its timeout; .ci/slowest.ts prints the slowest of both after the summary.
 * Installed by the preload, which runs before the test files import bun:test's functions.
 */
export function timeHooks(file: string): void {
  const bunTest = require("bun:test") as Record<string, unknown>;
  for (const kind of ["beforeAll", "beforeEach", "afterAll", "afterEach"]) {
    const original = bunTest[kind] as (fn: (...args: unknown[]) => unknown, timeout?: number) => void;
    bunTest[kind] = (fn: (...args: unknown[]) => unknown, timeout?: number) => {
      // A hook taking a `done` callback keeps Bun's own handling.
      if (fn.length > 0) return original(fn, timeout);
      const name = `${kind} ${registeredAt()}`;
      return original(async () => {
        const start = performance.now();
        try {
          await fn();
        } finally {
          appendFileSync(file, JSON.stringify({ name, ms: Math.round(performance.now() - start) }) + "\n");
        }
      }, timeout);
    };
  }
}

/** `test/x.test.ts:12`: the first frame of the stack that is a test file. */
function registeredAt(): string {
  const frames = new Error().stack?.split("\n") ?? [];
  for (const frame of frames) {
    const m = /\(?((?:\/|[A-Za-z]:\\)[^()]*?\.test\.tsx?):(\d+):\d+\)?$/.exec(frame.trim());
    if (m) return `${relative(projectRoot, m[1]!)}:${m[2]}`;
  }
  return "unknown place";
}
