import { describe, expect, it } from "bun:test";
import { Counter, Histogram, Registry } from "prom-client";
import { createMetrics } from "../../src/ops/metrics.ts";
import { seeded } from "../support/prng.ts";

describe("request metrics", () => {
  it("expose exactly what prom-client's own counter and histogram would for the same requests", async () => {
    const ours = createMetrics();
    const registry = new Registry();
    const counter = new Counter({ name: "keyport_http_requests_total", help: "HTTP requests answered, by route template and status", labelNames: ["method", "route", "status"], registers: [registry] });
    const histogram = new Histogram({
      name: "keyport_http_request_duration_seconds",
      help: "Time to answer an HTTP request, by route template",
      labelNames: ["method", "route"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    });
    const random = seeded(7);
    const pick = (n: number) => Math.floor(random() * n);
    const routes = [["GET", "/v1/email/:address"], ["GET", "/v1/ip/:address"], ["POST", "/v1/batch"], ["GET", "unmatched"]] as const;
    const statuses = [200, 400, 401, 429, 500];
    for (let i = 0; i < 5000; i++) {
      const [method, route] = routes[pick(routes.length)]!;
      const status = statuses[pick(statuses.length)]!;
      // Values on the bounds too: `le` is inclusive.
      const seconds = i % 10 === 0 ? [0.0005, 0.001, 2.5][pick(3)]! : random() ** 4 * 4;
      ours.recordRequest(method, route, status, seconds);
      counter.inc({ method, route, status: String(status) });
      histogram.observe({ method, route }, seconds);
    }
    const lines = (text: string) => text.split("\n").filter((l) => l.includes("keyport_http_")).sort();
    const expected = lines(await registry.metrics());
    expect(expected.length).toBeGreaterThan(50);
    expect(lines(await ours.registry.metrics())).toEqual(expected);
    // A second scrape reads the same totals (the counter is rebuilt, not added to twice).
    expect(lines(await ours.registry.metrics())).toEqual(expected);
  });
});
