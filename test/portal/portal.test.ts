import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { eq } from "drizzle-orm";
import { randomBytes } from "node:crypto";
import { sessions } from "../../src/db/schema.ts";
import { LOGIN_LIMITS } from "../../src/accounts/login.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { afterResponse, bearer } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const HOSTILE = `<img src=x onerror=alert(1)>`;
const email = () => `p-${randomBytes(4).toString("hex")}@example.com`;
const secretIn = (html: string) => /kp_(live|test)_[0-9A-Za-z]{46}/.exec(html)?.[0];

for (const backend of backends) {
  describe(`portal [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    describe("accounts and sessions", () => {
      it("signs up, sets an HttpOnly SameSite=Lax session cookie and stores only its hash", async () => {
        const b = new Browser(h);
        const res = await b.post("/signup", { email: email(), password: "a long and unusual passphrase" });
        expect(res.status).toBe(303);
        expect(res.headers.get("location")).toBe("/portal");
        const cookie = res.headers.get("set-cookie")!;
        expect(cookie).toMatch(/^kp_session=sess_\w+\.[\w-]{43};/);
        expect(cookie).toContain("HttpOnly");
        expect(cookie).toContain("SameSite=Lax");
        expect(cookie).not.toContain("Secure");
        const [id, secret] = b.cookie!.slice("kp_session=".length).split(".");
        const [row] = await h.deps.db.select().from(sessions).where(eq(sessions.id, id!));
        expect(row!.secretHash).toBe(new Bun.CryptoHasher("sha256").update(secret!).digest("hex"));
        expect(JSON.stringify(row)).not.toContain(secret!);
        expect((await b.get("/portal")).status).toBe(200);
      });

      it("marks the cookie Secure behind an https proxy", async () => {
        const other = await startHarness(backend, { config: { trustProxy: true } });
        const res = await other.req("/signup", {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded", "x-forwarded-proto": "https" },
          body: new URLSearchParams({ email: email(), password: "a long and unusual passphrase" }).toString(),
        });
        expect(res.headers.get("set-cookie")).toContain("Secure");
        await other.close();
      });

      it.each([
        ["a short password", { password: "short" }, "password", "at least 12 characters"],
        ["a common password", { password: "qwerty123456" }, "password", "commonly used"],
        ["an invalid email", { email: "nope" }, "email", "not a valid email"],
      ])("re-renders the form with the message beside the field for %s, keeping the email", async (_, change, field, message) => {
        const b = new Browser(h);
        const input = { email: "keep-me@example.com", password: "a long and unusual passphrase", ...change };
        const res = await b.post("/signup", input, { htmx: true });
        expect(res.status).toBe(422);
        const html = await res.text();
        expect(html).toStartWith('<form id="signup-form"');
        expect(html).toMatch(new RegExp(`id="f-${field}-error"[^>]*>[^<]*${message}`));
        expect(html).toContain(`value="${input.email}"`);
        expect(b.cookie).toBeUndefined();
      });

      it("refuses a taken email", async () => {
        const address = email();
        await new Browser(h).signUp(address);
        const res = await new Browser(h).post("/signup", { email: address, password: "another long passphrase" });
        expect(res.status).toBe(422);
        expect(await res.text()).toContain("already registered");
      });

      it("logs in, and answers an unknown email exactly like a wrong password", async () => {
        const address = email();
        await new Browser(h).signUp(address);
        const ok = await new Browser(h).post("/login", { email: address, password: "a long and unusual passphrase" });
        expect(ok.status).toBe(303);
        const wrong = await new Browser(h).post("/login", { email: address, password: "not the password!" }, { htmx: true });
        const unknown = await new Browser(h).post("/login", { email: email(), password: "not the password!" }, { htmx: true });
        expect(wrong.status).toBe(422);
        expect(unknown.status).toBe(422);
        const strip = (s: string) => s.replace(/value="[^"]*@example\.com"/, "");
        expect(strip(await wrong.text())).toBe(strip(await unknown.text()));
      });

      it(`throttles after ${LOGIN_LIMITS.perEmail15m} failures for one email with a readable 429`, async () => {
        const address = email();
        await new Browser(h).signUp(address);
        for (let i = 0; i < LOGIN_LIMITS.perEmail15m; i++) {
          const r = await new Browser(h).post("/login", { email: address, password: `wrong guess ${i}!` }, { htmx: true, headers: { "x-forwarded-for": `203.0.113.${i}` } });
          expect(r.status).toBe(422);
        }
        const blocked = await new Browser(h).post("/login", { email: address, password: "a long and unusual passphrase" }, { htmx: true });
        expect(blocked.status).toBe(429);
        expect(await blocked.text()).toContain("Too many failed sign-in attempts");
      });

      it("logs out: the session ends and the cookie is cleared", async () => {
        const b = new Browser(h);
        await b.signUp(email());
        const cookie = b.cookie!;
        const res = await b.post("/logout", {});
        expect(res.status).toBe(303);
        expect(res.headers.get("set-cookie")).toContain("Max-Age=0");
        const after = await h.req("/portal", { headers: { cookie } });
        expect(after.status).toBe(303);
        expect(after.headers.get("location")).toStartWith("/login");
      });

      it("ends the other sessions when the password changes", async () => {
        const address = email();
        const a = new Browser(h);
        await a.signUp(address);
        const b = new Browser(h);
        await b.post("/login", { email: address, password: "a long and unusual passphrase" });
        await a.page("/portal/settings");
        const bad = await a.post("/portal/settings", { current: "wrong", next: "short" });
        expect(bad.status).toBe(422);
        const badHtml = await bad.text();
        expect(badHtml).toContain("is not your current password");
        expect(badHtml).toContain("at least 12 characters");
        const ok = await a.post("/portal/settings", { current: "a long and unusual passphrase", next: "a brand new long passphrase" });
        expect(ok.status).toBe(200);
        expect((await a.get("/portal")).status).toBe(200);
        expect((await b.get("/portal")).status).toBe(303);
      });

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

      it("sends a visitor without a session to the login page", async () => {
        const res = await new Browser(h).get("/portal/keys");
        expect(res.status).toBe(303);
        expect(res.headers.get("location")).toBe("/login?next=%2Fportal%2Fkeys");
        const htmx = await new Browser(h).get("/portal/keys", { "hx-request": "true" });
        expect(htmx.headers.get("hx-redirect")).toStartWith("/login");
      });
    });

    describe("CSRF", () => {
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

    describe("keys", () => {
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

      it("shows a new user the next step and a curl example with the real host", async () => {
        const b = new Browser(h);
        await b.signUp(email());
        const keys = await b.page("/portal/keys");
        expect(keys).toContain("No keys yet");
        expect(keys).toContain("curl -H &quot;Authorization: Bearer kp_live_…&quot; http://localhost/v1/email/");
        expect(await b.page("/portal")).toContain("Create one");
      });
    });

    describe("audit log", () => {
      it("lists the account's events newest first, filters by action and key, and pages", async () => {
        const b = new Browser(h);
        await b.signUp(email());
        for (let i = 0; i < 3; i++) {
          clock.advance(1000);
          await b.post("/portal/keys", { name: `k${i}`, scopes: "email:read", rateLimit: "60" });
        }
        const all = await b.page("/portal/audit");
        const actions = [...all.matchAll(/<td><code>([a-z._]+)<\/code><\/td>/g)].map((m) => m[1]);
        expect(actions.slice(0, 3)).toEqual(["key.created", "key.created", "key.created"]);
        expect(actions).toContain("account.created");
        const filtered = await b.page("/portal/audit?action=account.created");
        expect([...filtered.matchAll(/<td><code>([a-z._]+)<\/code><\/td>/g)].map((m) => m[1])).toEqual(["account.created"]);
        const other = new Browser(h);
        await other.signUp(email());
        expect(await other.page("/portal/audit")).not.toContain("key.created");
      });
    });
  });
}
