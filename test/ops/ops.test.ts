import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { backends } from "../support/backends.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { createLogger } from "../../src/ops/log.ts";
import { createMetrics } from "../../src/ops/metrics.ts";
import { requestRecorder } from "../../src/plugins/observe.ts";
import { newAccount, newKey } from "../support/fixtures.ts";

describe("access log", () => {
  it("writes request lines at info and none at warn, and says which levels it writes", () => {
    for (const [level, written] of [["info", 1], ["warn", 0]] as const) {
      const lines: string[] = [];
      const log = createLogger(level, (l) => lines.push(l));
      expect([log.enabled("debug"), log.enabled("info"), log.enabled("warn"), log.enabled("error")]).toEqual([false, level === "info", true, true]);
      requestRecorder(log, createMetrics())("GET", "/v1/email/:address", 200, 1.234, "req_x1");
      expect(lines.length).toBe(written);
      if (written) expect(JSON.parse(lines[0]!)).toMatchObject({ level: "info", msg: "request", requestId: "req_x1", route: "/v1/email/:address", status: 200, ms: 1.23 });
    }
  });

  it("writes every line with its own method and route, also past the routes whose pair it binds once", () => {
    const lines: string[] = [];
    const record = requestRecorder(createLogger("info", (l) => lines.push(l)), createMetrics());
    // Unmatched requests bring methods of their own: more pairs than the recorder binds.
    const pairs = Array.from({ length: 1100 }, (_, i) => [`M${i}`, i % 2 ? "unmatched" : `/r/${i}`] as const);
    for (const [method, route] of pairs) record(method, route, 404, 0.5, `req_${method}`);
    record("GET", "/v1/email/:address", 200, 2, "req_a");
    record("POST", "/v1/email/:address", 201, 3, "req_b");
    record("GET", "/v1/email/:address", 429, 4, "req_c");
    const parsed = lines.map((l) => JSON.parse(l));
    expect(parsed.length).toBe(pairs.length + 3);
    pairs.forEach(([method, route], i) => expect(parsed[i]).toEqual({ time: parsed[i].time, level: "info", msg: "request", requestId: `req_${method}`, method, route, status: 404, ms: 0.5 }));
    expect(parsed.slice(-3).map(({ method, route, status, requestId }) => ({ method, route, status, requestId }))).toEqual([
      { method: "GET", route: "/v1/email/:address", status: 200, requestId: "req_a" },
      { method: "POST", route: "/v1/email/:address", status: 201, requestId: "req_b" },
      { method: "GET", route: "/v1/email/:address", status: 429, requestId: "req_c" },
    ]);
    // Each line has each field once.
    for (const l of lines) expect(l.match(/"route":/g)?.length).toBe(1);
  });
});

for (const backend of backends) {
  describe(`operations endpoints [${backend.name}]`, () => {
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend);
    });
    afterAll(() => h.close());

    it("answers /healthz with 200 and a request id", async () => {
      const res = await h.req("/healthz");
      expect(res.status).toBe(200);
      expect(res.headers.get("x-request-id")).toMatch(/^req_/);
    });

    it("answers /readyz with 200 naming each dependency it checked", async () => {
      const res = await h.req("/readyz");
      const body = await res.json();
      expect(res.status).toBe(200);
      expect(Object.keys(body.checks).length).toBe(backend.redisUrl ? 2 : 1);
    });

    it("serves Prometheus text with request counts by route and status and process memory", async () => {
      await h.req("/healthz");
      await h.req("/no/such/route");
      await afterResponseHooks();
      const res = await h.req("/metrics");
      const text = await res.text();
      expect(res.headers.get("content-type")).toContain("text/plain");
      expect(text).toMatch(/keyport_http_requests_total\{method="GET",route="\/healthz",status="200"\} \d+/);
      expect(text).toMatch(/keyport_http_requests_total\{method="GET",route="unmatched",status="404"\} 1/);
      expect(text).toContain("keyport_http_request_duration_seconds_bucket");
      expect(text).toContain("keyport_process_resident_memory_bytes");
    });

    it("says in /metrics how many usage batches were written, their rows, and when the last one began and ended", async () => {
      const value = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
      const before = await (await h.req("/metrics")).text();
      expect(value(before, "keyport_usage_flushes_total")).toBe(0);
      expect(value(before, "keyport_usage_last_flush_rows")).toBeNaN();
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id);
      const auth = { headers: { authorization: `Bearer ${secret}` } };
      expect((await h.req("/v1/email/a@example.com", auth)).status).toBe(200);
      expect((await h.req("/v1/ip/8.8.8.8", auth)).status).toBe(200);
      const started = Date.now();
      await h.deps.meter.flush();
      const ended = Date.now();
      const after = await (await h.req("/metrics")).text();
      expect(value(after, "keyport_usage_flushes_total")).toBe(1);
      // One key, one day, two endpoints: two rows.
      expect(value(after, "keyport_usage_flushed_rows_total")).toBe(2);
      expect(value(after, "keyport_usage_last_flush_rows")).toBe(2);
      const end = value(after, "keyport_usage_last_flush_end_timestamp_seconds") * 1000;
      expect(end).toBeGreaterThanOrEqual(started);
      expect(end).toBeLessThanOrEqual(ended);
      const duration = value(after, "keyport_usage_last_flush_duration_seconds") * 1000;
      expect(duration).toBeGreaterThanOrEqual(0);
      expect(duration).toBeLessThanOrEqual(ended - started);
      // A flush with nothing to write is no batch.
      await h.deps.meter.flush();
      expect(value(await (await h.req("/metrics")).text(), "keyport_usage_flushes_total")).toBe(1);
    });

    it("answers an unknown route with problem+json 404", async () => {
      const res = await h.req("/nope");
      expect(res.status).toBe(404);
      expect(res.headers.get("content-type")).toContain("application/problem+json");
      expect(await res.json()).toMatchObject({ status: 404, code: "not_found" });
    });

    it("serves htmx from static/ and refuses names outside it", async () => {
      const ok = await h.req("/static/htmx.min.js");
      expect(ok.status).toBe(200);
      expect(ok.headers.get("content-type")).toContain("javascript");
      for (const bad of ["/static/..%2Fpackage.json", "/static/.env", "/static/nothing.js"]) {
        expect((await h.req(bad)).status).toBe(404);
      }
    });

    it("logs one JSON line per request", async () => {
      const before = h.logs.length;
      await h.req("/healthz");
      await afterResponseHooks();
      await h.req("/healthz");
      await afterResponseHooks();
      const line = JSON.parse(h.logs.slice(before).find((l) => l.includes('"route":"/healthz"'))!);
      expect(line).toMatchObject({ level: "info", msg: "request", method: "GET", route: "/healthz", status: 200 });
    });

    it("answers /readyz with 503 naming the database once it stops answering", async () => {
      const other = await startHarness(backend);
      await other.deps.database.close();
      const res = await other.req("/readyz");
      const body = await res.json();
      expect(res.status).toBe(503);
      expect(JSON.stringify(body.checks)).toContain("failed");
      await other.deps.state.close();
    });
  });
}

/** Elysia runs onAfterResponse hooks after the answer is handed back: let them run. */
function afterResponseHooks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe("home page", () => {
  it("renders the page shell with escaped dynamic text", async () => {
    const { HomePage } = await import("../../views/portal/home.tsx");
    const html = String(HomePage({ origin: "http://x<script>alert(1)</script>", keyPrefix: "kp" }));
    expect(html).toStartWith("<!doctype html>");
    expect(html).not.toContain("<script>alert(1)</script>");
    expect(html).toContain("&lt;script&gt;");
  });
});
