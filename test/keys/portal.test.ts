import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { cliActor } from "../../src/audit/service.ts";
import { revokeKey } from "../../src/keys/service.ts";
import { bearer, newKey } from "../support/fixtures.ts";
import { email, secretIn } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const HOSTILE = `<img src=x onerror=alert(1)>`;

for (const backend of backends) {
  describe(`keys portal [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    it("creates a key through the htmx form: the section comes back with the secret once, no-store", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const res = await b.post("/portal/keys", { name: "web", environment: "live", scopes: ["email:read", "ip:read"], rateLimit: "30", ipAllowlist: "10.0.0.0/8\n::1" }, { htmx: true });
      expect(res.status).toBe(201);
      expect(res.headers.get("cache-control")).toBe("no-store");
      const html = await res.text();
      expect(html).toStartWith('<div id="keys-section">');
      const secret = secretIn(html)!;
      expect(html).toContain("It will not be shown again");
      expect(html).toContain(`kp_live_${secret.slice(8, 12)}…${secret.slice(-4)}`);
      // The secret works, and no later page shows it.
      expect((await h.req("/v1/email/a@example.com", { headers: { ...bearer(secret), "x-forwarded-for": "10.1.1.1" } })).status).not.toBe(401);
      expect(await b.page("/portal/keys")).not.toContain(secret);
    });

    it("searches the list by name, filters by status and environment, hides revoked keys unless asked, and pages past 50", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const account = (await h.deps.db.query.sessions.findFirst({ where: (t, { like }) => like(t.id, b.cookie!.slice("kp_session=".length).split(".")[0]!) }))!.accountId;
      const made = async (name: string, input: { environment?: "live" | "test" } = {}) => {
        clock.advance(1000);
        return newKey(h, account, { name, ...input });
      };
      await made("alpha");
      await made("beta", { environment: "test" });
      const gone = await made("gamma");
      await revokeKey(h.deps, account, gone.key.id, cliActor);
      const names = (html: string) => [...html.matchAll(/<a href="\/portal\/keys\/key_\w+">([^<]+)<\/a>/g)].map((m) => m[1]);

      expect(names(await b.page("/portal/keys"))).toEqual(["beta", "alpha"]);
      expect(names(await b.page("/portal/keys?revoked=1"))).toEqual(["gamma", "beta", "alpha"]);
      expect(names(await b.page("/portal/keys?status=revoked"))).toEqual(["gamma"]);
      expect(names(await b.page("/portal/keys?q=ALP"))).toEqual(["alpha"]);
      expect(names(await b.page("/portal/keys?environment=test"))).toEqual(["beta"]);
      // A LIKE wildcard in the search is text, not a pattern.
      expect(names(await b.page("/portal/keys?q=%25"))).toEqual([]);
      expect(await b.page("/portal/keys?q=zzz")).toContain("No key matches these filters.");

      // Past 50: revoked keys do not count against the 25 active ones, so the list grows.
      for (let i = 0; i < 50; i++) await revokeKey(h.deps, account, (await made(`old-${String(i).padStart(2, "0")}`)).key.id, cliActor);
      const first = await b.page("/portal/keys?revoked=1");
      expect(names(first)).toHaveLength(50);
      expect(first).toContain("Page 1 of 2");
      const second = await b.page("/portal/keys?revoked=1&page=2");
      expect(names(second)).toEqual(["gamma", "beta", "alpha"]);
    });

    it.each([
      ["rateLimit", { rateLimit: "0" }, "must be at least 1"],
      ["rateLimit", { rateLimit: "fast" }, "whole number"],
      ["name", { name: "" }, "must not be empty"],
      ["scopes", { scopes: [] as string[] }, "at least one scope"],
      ["ipAllowlist", { ipAllowlist: "10.0.0.300" }, "not an IP address"],
      ["expiresAt", { expiresAt: "2001-01-01" }, "must be in the future"],
      ["monthlyQuota", { monthlyQuota: "-3" }, "at least 1"],
    ])("re-renders the form with the %s error beside it and the other values kept", async (field, change, message) => {
      const b = new Browser(h);
      await b.signUp(email());
      const form = { name: "kept name", environment: "test", scopes: ["ip:read"], rateLimit: "45", ipAllowlist: "", monthlyQuota: "", expiresAt: "", ...change };
      const res = await b.post("/portal/keys", form, { htmx: true });
      expect(res.status).toBe(422);
      const html = await res.text();
      expect(html).toMatch(new RegExp(`id="f-${field}-error"[^>]*>[^<]*${message}`));
      if (field !== "name") expect(html).toContain('value="kept name"');
      expect(html).toMatch(/<option value="test" selected/);
      if (field !== "scopes") expect(html).toMatch(/value="ip:read" checked/);
      expect(secretIn(html)).toBeUndefined();
    });

    it("shows every field's error at once, the past expiry and each bad IP among them", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const form = { name: "", environment: "test", scopes: [] as string[], rateLimit: "0", ipAllowlist: "10.0.0.300\n10.0.0.0/33", monthlyQuota: "-3", expiresAt: "2001-01-01" };
      const html = await (await b.post("/portal/keys", form, { htmx: true })).text();
      for (const [field, message] of [
        ["name", "must not be empty"],
        ["scopes", "at least one scope"],
        ["rateLimit", "at least 1"],
        ["expiresAt", "must be in the future"],
        ["monthlyQuota", "at least 1"],
      ]) {
        expect(html).toMatch(new RegExp(`id="f-${field}-error"[^>]*>[^<]*${message}`));
      }
      expect(html).toContain("10.0.0.300");
      expect(html).toMatch(/id="f-ipAllowlist-error"[^>]*>[^<]*not an IP address[^<]*prefix length/s);
    });

    it("puts a refusal of the whole form at its top: the key limit", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      for (let i = 0; i < 25; i++) expect((await b.post("/portal/keys", { name: `k${i}`, scopes: "email:read" }, { htmx: true })).status).toBe(201);
      const html = await (await b.post("/portal/keys", { name: "one too many", scopes: "email:read" }, { htmx: true })).text();
      expect(html).toMatch(/<h2>Create a key<\/h2><p class="form-error" role="alert">An account may hold at most 25 active keys/);
      expect(html).not.toMatch(/id="f-name-error"/);
    });

    it("works without JavaScript: a plain form post answers the whole page", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const res = await b.post("/portal/keys", { name: "plain", scopes: "email:read", rateLimit: "60" });
      expect(res.status).toBe(201);
      const html = await res.text();
      expect(html).toStartWith("<!doctype html>");
      expect(secretIn(html)).toBeDefined();
    });

    it("renders a hostile key name as text on every page", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      await b.post("/portal/keys", { name: HOSTILE, scopes: "email:read", rateLimit: "60" });
      const list = await b.page("/portal/keys");
      const id = /\/portal\/keys\/(key_\w+)/.exec(list)![1]!;
      for (const html of [list, await b.page(`/portal/keys/${id}`), await b.page("/portal/audit")]) {
        // Inside a quoted attribute (the edit form's value) "<" is inert text; anywhere else it must be escaped.
        expect(html.replaceAll(`value="${HOSTILE}"`, "")).not.toContain(HOSTILE);
        expect(html).toContain("&lt;img src=x onerror=alert(1)&gt;");
      }
    });

    it("edits, rolls with a grace period (new secret once) and revokes", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const created = secretIn(await (await b.post("/portal/keys", { name: "lifecycle", scopes: "email:read", rateLimit: "60" })).text())!;
      const id = /\/portal\/keys\/(key_\w+)/.exec(await b.page("/portal/keys"))![1]!;

      const bad = await b.post(`/portal/keys/${id}`, { name: "renamed", scopes: "email:read", rateLimit: "0" });
      expect(bad.status).toBe(422);
      expect(await bad.text()).toContain("must be at least 1");
      const edited = await b.post(`/portal/keys/${id}`, { name: "renamed", scopes: ["email:read", "ip:read"], rateLimit: "90" });
      expect(edited.status).toBe(303);
      const detail = await b.page(`/portal/keys/${id}`);
      expect(detail).toContain("renamed");
      expect(detail).toContain("90 / minute");

      const rolled = await b.post(`/portal/keys/${id}/roll`, { gracePeriodHours: "1" });
      expect(rolled.status).toBe(200);
      expect(rolled.headers.get("cache-control")).toBe("no-store");
      const next = secretIn(await rolled.text())!;
      expect(next).not.toBe(created);
      const old = await b.page(`/portal/keys/${id}`);
      expect(old).toContain("expiring in 1 h");
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(created) })).status).toBe(200);

      const nextId = /\/portal\/keys\/(key_\w+)/.exec(old.slice(old.indexOf("Replaced by")))![1]!;
      expect((await b.post(`/portal/keys/${nextId}/revoke`, {})).status).toBe(303);
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(next) })).status).toBe(401);
    });

    it("answers 404 for another account's key on every key route", async () => {
      const owner = new Browser(h);
      await owner.signUp(email());
      await owner.post("/portal/keys", { name: "mine", scopes: "email:read", rateLimit: "60" });
      const id = /\/portal\/keys\/(key_\w+)/.exec(await owner.page("/portal/keys"))![1]!;
      const intruder = new Browser(h);
      await intruder.signUp(email());
      for (const path of [`/portal/keys/${id}`, `/portal/keys/${id}/usage?days=7`, `/portal/keys/${id}/usage.csv`]) {
        expect((await intruder.get(path)).status).toBe(404);
      }
      for (const path of [`/portal/keys/${id}`, `/portal/keys/${id}/revoke`, `/portal/keys/${id}/roll`]) {
        expect((await intruder.post(path, { name: "stolen", scopes: "email:read", rateLimit: "1", gracePeriodHours: "0" })).status).toBe(404);
      }
      const still = await owner.page(`/portal/keys/${id}`);
      expect(still).toContain("mine");
      expect(still).not.toContain("stolen");
    });

    it("shows a new user the next step and a curl example with the real host", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const keys = await b.page("/portal/keys");
      expect(keys).toContain("No keys yet");
      expect(keys).toContain("curl -H &quot;Authorization: Bearer kp_live_…&quot; http://localhost/v1/email/");
      expect(await b.page("/portal")).toContain("Create one");
    });
  });
}
