import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { email } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

for (const backend of backends) {
  describe(`portal plugin: sessions and CSRF [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    it("sends a visitor without a session to the login page", async () => {
      const res = await new Browser(h).get("/portal/keys");
      expect(res.status).toBe(303);
      expect(res.headers.get("location")).toBe("/login?next=%2Fportal%2Fkeys");
      const htmx = await new Browser(h).get("/portal/keys", { "hx-request": "true" });
      expect(htmx.headers.get("hx-redirect")).toStartWith("/login");
    });

    it("refuses a state-changing portal request without the token, with a wrong one, or from another site", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const form = { name: "x", scopes: "email:read", rateLimit: "60" };
      expect((await b.post("/portal/keys", form, { csrf: null })).status).toBe(403);
      expect((await b.post("/portal/keys", form, { csrf: "forged" })).status).toBe(403);
      expect((await b.post("/portal/keys", form, { headers: { "sec-fetch-site": "cross-site" } })).status).toBe(403);
      expect((await b.post("/logout", {}, { csrf: null })).status).toBe(403);
      expect((await b.post("/portal/keys", form)).status).toBe(201);
    });

    it("lets the JSON API use the session cookie, with X-CSRF-Token on every change", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const headers = { cookie: b.cookie!, "sec-fetch-site": "same-origin" };
      expect((await h.req("/api/keys", { headers })).status).toBe(200);
      const refused = await h.req("/api/keys", { method: "POST", headers, json: { name: "api", scopes: ["email:read"] } });
      expect(refused.status).toBe(403);
      expect((await refused.json()).code).toBe("csrf_failed");
      const ok = await h.req("/api/keys", { method: "POST", headers: { ...headers, "x-csrf-token": b.csrf! }, json: { name: "api", scopes: ["email:read"] } });
      expect(ok.status).toBe(201);
    });
  });
}
