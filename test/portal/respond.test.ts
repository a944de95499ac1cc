import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { startHarness, type Harness } from "../support/harness.ts";

for (const backend of backends) {
  describe(`portal page headers [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    it("sends pages with a strict CSP and the other security headers", async () => {
      const res = await new Browser(h).get("/login");
      expect(res.headers.get("content-security-policy")).toContain("default-src 'self'");
      expect(res.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
      expect(res.headers.get("content-security-policy")).not.toContain("unsafe-inline");
      expect(res.headers.get("referrer-policy")).toBe("same-origin");
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      const html = await res.text();
      expect(html).not.toMatch(/<script>(?!<\/script>)|<script(?![^>]*src=)[^>]*>[^<]/);
      expect(html).not.toContain("style=");
    });
  });
}
