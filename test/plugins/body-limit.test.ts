import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { backends } from "../support/backends.ts";
import { problem } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { MAX_BODY_BYTES } from "../../src/plugins/body-limit.ts";
import { MAX_SPEC_BYTES } from "../../src/products/spec.ts";

/**
 * The listening server admits bodies up to the products' cap (64 MiB) so the proxy can stream
 * large ones; Keyport's own routes keep their 1 MiB, refused from the declared length before
 * any route reads the body.
 */
describe("request body limit", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness(backends[0]!);
  });
  afterAll(() => h.close());

  const big = () => "x".repeat(MAX_BODY_BYTES + 1);

  for (const path of ["/api/keys", "/v1/batch", "/login", "/v1/email/a@example.com"]) {
    it(`answers 413 payload_too_large to a body over 1 MiB on ${path}`, async () => {
      // As a client over HTTP sends it (a Request made in process declares no length by itself).
      const res = await h.req(path, { method: "POST", headers: { "content-type": "application/json", "content-length": String(MAX_BODY_BYTES + 1) }, body: big() });
      expect(res.status).toBe(413);
      // The body is left unread: the connection carries no further request.
      expect(res.headers.get("connection")).toBe("close");
      expect((await problem(res)).code).toBe("payload_too_large");
    });
  }

  it("lets a body of exactly 1 MiB through to the route", async () => {
    const res = await h.req("/api/keys", { method: "POST", headers: { "content-type": "application/json", "content-length": String(MAX_BODY_BYTES) }, body: "x".repeat(MAX_BODY_BYTES) });
    expect(res.status).not.toBe(413);
  });

  it("lets an operator's spec upload carry up to 5 MB and the form around it, and no more", async () => {
    const size = (n: number) => ({ method: "POST", headers: { "content-type": "multipart/form-data; boundary=x", "content-length": String(n) }, body: "x".repeat(n) });
    // Past the size check the route refuses the made-up body (400) or the visitor (404): not 413.
    expect((await h.req("/admin/products", size(MAX_SPEC_BYTES))).status).not.toBe(413);
    expect((await h.req("/admin/products/tracking/versions", size(MAX_SPEC_BYTES))).status).not.toBe(413);
    expect((await h.req("/admin/products", size(MAX_SPEC_BYTES + 65 * 1024))).status).toBe(413);
    expect((await h.req("/admin/products/tracking", size(MAX_BODY_BYTES + 1))).status).toBe(413);
  });

  it("leaves a registered product's path to the proxy, which applies the product's own limit", async () => {
    // No product "tracking" is registered: the proxy, not the 1 MiB check, answers.
    const res = await h.req("/v1/tracking/upload", { method: "POST", headers: { "content-type": "application/octet-stream", "content-length": String(MAX_BODY_BYTES + 1) }, body: big() });
    expect(res.status).toBe(404);
    expect(await problem(res)).toMatchObject({ code: "not_found", product: "tracking" });
  });
});
