import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { backends } from "../support/backends.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const TOKEN = "metrics-token-0123456789";

// The token check is the same whatever the storage: the embedded backend is enough.
describe("/metrics behind METRICS_TOKEN", () => {
  let guarded: Harness;
  let open: Harness;
  beforeAll(async () => {
    [guarded, open] = await Promise.all([startHarness(backends[0]!, { config: { metricsToken: TOKEN } }), startHarness(backends[0]!)]);
  });
  afterAll(() => Promise.all([guarded.close(), open.close()]));

  const metrics = (h: Harness, authorization?: string) => h.req("/metrics", { headers: authorization ? { authorization } : {} });

  it("answers 401 problem+json without a token, and says how to send one", async () => {
    const res = await metrics(guarded);
    const body = await res.text();
    expect(res.status, body).toBe(401);
    expect(res.headers.get("content-type")).toContain("application/problem+json");
    expect(res.headers.get("www-authenticate")).toStartWith("Bearer");
    expect(JSON.parse(body)).toMatchObject({ status: 401, code: "missing_api_key" });
    expect(body).toContain("METRICS_TOKEN");
  });

  it.each([
    ["a wrong token", `Bearer ${TOKEN.slice(0, -1)}x`],
    ["a longer token", `Bearer ${TOKEN}0`],
    ["a prefix of it", `Bearer ${TOKEN.slice(0, 16)}`],
  ])("answers 401 invalid_api_key for %s, never the metrics", async (_, authorization) => {
    const res = await metrics(guarded, authorization);
    const body = await res.text();
    expect(res.status, body).toBe(401);
    expect(JSON.parse(body)).toMatchObject({ status: 401, code: "invalid_api_key" });
    expect(body).not.toContain("keyport_");
    expect(body).not.toContain(TOKEN);
  });

  it("serves the metrics with the right token", async () => {
    const res = await metrics(guarded, `Bearer ${TOKEN}`);
    const text = await res.text();
    expect(res.status, text).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    expect(text).toContain("keyport_process_resident_memory_bytes");
  });

  it("is open when METRICS_TOKEN is unset, whatever Authorization says", async () => {
    for (const authorization of [undefined, "Bearer anything-at-all-here"]) {
      const res = await metrics(open, authorization);
      expect(res.status).toBe(200);
    }
  });
});
