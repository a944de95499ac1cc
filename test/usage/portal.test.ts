import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends, UNMETERED_PLANS } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { afterResponse, bearer } from "../support/fixtures.ts";
import { email, secretIn } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

for (const backend of backends) {
  describe(`usage portal [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock, config: { plansFile: UNMETERED_PLANS } });
    });
    afterAll(() => h.close());

    it("shows usage after a flush, swaps the range fragment, and downloads CSV", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const secret = secretIn(await (await b.post("/portal/keys", { name: "metered", scopes: "email:read", rateLimit: "600" })).text())!;
      const id = /\/portal\/keys\/(key_\w+)/.exec(await b.page("/portal/keys"))![1]!;
      for (let i = 0; i < 7; i++) await h.req("/v1/email/a@example.com", { headers: bearer(secret) });
      await afterResponse();
      await h.deps.meter.flush();
      const page = await b.page(`/portal/keys/${id}`);
      expect(page).toContain("<svg");
      expect(page).toContain("<title id=");
      expect(page).toMatch(/<dt>Requests<\/dt><dd>7<\/dd>/);
      expect(page).toContain("GET /v1/email/:address");

      const fragment = await b.get(`/portal/keys/${id}/usage?days=30`, { "hx-request": "true" });
      expect(fragment.headers.get("vary")).toContain("HX-Request");
      const frag = await fragment.text();
      expect(frag).toStartWith('<section id="usage-panel"');
      expect((frag.match(/<tr><th scope="row">/g) ?? []).length).toBe(30);

      const csv = await b.get(`/portal/keys/${id}/usage.csv?days=7`);
      expect(csv.headers.get("content-type")).toContain("text/csv");
      const lines = (await csv.text()).trim().split("\n");
      expect(lines[0]).toBe("day,successes,errors,avg_latency_ms,p95_latency_ms");
      expect(lines.length).toBe(8);
      expect(lines.at(-1)).toMatch(/^\d{4}-\d{2}-\d{2},7,0,/);

      const dashboard = await b.page("/portal");
      expect(dashboard).toMatch(/<dt>Requests today<\/dt><dd>7<\/dd>/);
    });
  });
}
