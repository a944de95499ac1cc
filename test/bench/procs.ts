import { readFileSync } from "node:fs";
import { join } from "node:path";
import { projectRoot } from "../../src/embedded.ts";

export const MAIN = join(projectRoot, "src", "main.ts");
export const BASELINE = join(projectRoot, "test", "bench", "baseline.ts");
export const UPSTREAM = join(projectRoot, "test", "bench", "upstream.ts");

export interface Server {
  name: string;
  port: number;
  pid: number;
  url: string;
  /** Resident set size now and at its peak, in bytes (/proc/<pid>/status). */
  rss(): { now: number; peak: number };
  /** CPU time the process has used (user + system), in microseconds (/proc/<pid>/stat). */
  cpuUs(): number;
  metrics(): Promise<string>;
  /** SIGTERM, then waits for the exit (SIGKILL after 20 s); returns the exit code and stderr. */
  stop(): Promise<{ code: number | null; stderr: string }>;
}

/** USER_HZ: /proc reports CPU times in these ticks (100 on every Linux Bun supports). */
const CLOCK_TICKS = 100;

/**
 * A loopback port free right now, chosen by the kernel (a fixed range collided with the
 * ephemeral ports of other clients: wrk's, the database's). It is released before the
 * server binds it, so startServer retries with another when the server finds it taken.
 */
export function takePort(): number {
  const probe = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = probe.port;
  probe.stop(true);
  return port;
}

/**
 * Starts `bun <script> [args]` as its own process with exactly `env` (plus PATH and HOME),
 * stdout discarded (a production log pipe costs at least that), and waits until /healthz
 * (or `readyPath`) answers 200.
 */
export async function startServer(opts: StartOptions): Promise<Server> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOn(takePort(), opts);
    } catch (err) {
      // Another process took the port between the probe and the bind: once more, elsewhere.
      if (attempt < 3 && /in use/i.test((err as Error).message)) continue;
      throw err;
    }
  }
}

interface StartOptions {
  name: string;
  script: string;
  args?: string[];
  env: Record<string, string>;
  readyPath?: string;
  bunFlags?: string[];
}

async function startOn(port: number, opts: StartOptions): Promise<Server> {
  const proc = Bun.spawn(["bun", ...(opts.bunFlags ?? []), opts.script, ...(opts.args ?? [])], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", HOST: "127.0.0.1", PORT: String(port), ...opts.env },
    stdout: "ignore",
    stderr: "pipe",
  });
  const url = `http://127.0.0.1:${port}`;
  let stderr = "";
  const drain = new Response(proc.stderr).text().then((t) => void (stderr = t));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) {
      await drain;
      throw new Error(`${opts.name} exited with ${proc.exitCode} before it answered: ${stderr.trim()}`);
    }
    const ok = await fetch(url + (opts.readyPath ?? "/healthz")).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) break;
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`${opts.name} did not answer within 60 s: ${stderr.trim()}`);
    }
    await Bun.sleep(100);
  }
  return {
    name: opts.name,
    port,
    pid: proc.pid,
    url,
    rss() {
      const status = readFileSync(`/proc/${proc.pid}/status`, "utf8");
      const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? 0) * 1024;
      return { now: kb("VmRSS"), peak: kb("VmHWM") };
    },
    cpuUs() {
      const stat = readFileSync(`/proc/${proc.pid}/stat`, "utf8");
      // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLOCK_TICKS;
    },
    async metrics() {
      return (await fetch(url + "/metrics")).text();
    },
    async stop() {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
      const code = await proc.exited;
      clearTimeout(timer);
      await drain;
      return { code, stderr };
    },
  };
}

/** A sample's label set up to its closing brace: quoted values may hold braces (a product's route, `/v1/tracking/shipments/{id}`). */
const LABELS = String.raw`(?:[^"}]|"(?:[^"\\]|\\.)*")*`;
const SAMPLE = new RegExp(String.raw`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(${LABELS})\})?\s+(\S+)`);
const REQUESTS_SAMPLE = new RegExp(String.raw`^keyport_http_requests_total\{(${LABELS})\}\s+(\S+)`, "gm");
const LABEL = /(\w+)="((?:[^"\\]|\\.)*)"/g;

/** Sum of the samples of one Prometheus metric whose labels include `labels`. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const m = SAMPLE.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...(m[3] ?? "").matchAll(LABEL)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) sum += Number(m[4]);
  }
  return sum;
}

/** Per-status counts of `keyport_http_requests_total` for one route. */
export function statusCounts(text: string, route: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(REQUESTS_SAMPLE)) {
    const labels = Object.fromEntries([...m[1]!.matchAll(LABEL)].map((x) => [x[1], x[2]]));
    if (labels.route === route) out[labels.status!] = (out[labels.status!] ?? 0) + Number(m[2]);
  }
  return out;
}
