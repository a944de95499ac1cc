import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { ManualClock } from "../../src/ops/clock.ts";
import { cliActor } from "../../src/audit/service.ts";
import { revokeKey } from "../../src/keys/service.ts";
import { keyUsageReport } from "../../src/usage/queries.ts";
import { backends, UNMETERED_PLANS } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { bearer, newAccount, newKey } from "../support/fixtures.ts";
import { email } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const SANDBOX_NOTE = "A sandbox key was made for this session";
/** The result panel's status line: `<span class="badge …">200 OK</span>`. */
const statusIn = (html: string) => /id="try-result"><span class="badge [^"]+">([^<]+)<\/span>/.exec(html)?.[1];
const headerRow = (html: string, name: string) => new RegExp(`<tr class="rate"><td><code>${name}</code></td><td><code>([^<]*)</code></td><td>([^<]*)</td>`).exec(html);

for (const backend of backends) {
  describe(`try-it [${backend.name}]`, () => {
    const clock = new ManualClock(Date.UTC(2026, 11, 1, 12, 0, 0));
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock, config: { trustProxy: true, plansFile: UNMETERED_PLANS } });
    });
    afterAll(() => h.close());

    const accountOf = async (b: Browser) => {
      const id = b.cookie!.slice("kp_session=".length).split(".")[0]!;
      return (await h.deps.db.query.sessions.findFirst({ where: (t, { eq }) => eq(t.id, id) }))!.accountId;
    };
    const sandboxRows = async (accountId: string) => (await h.deps.db.query.apiKeys.findMany({ where: (k, { eq }) => eq(k.accountId, accountId) })).filter((k) => k.sandboxSessionId);
    /** The whole sandbox key, as the copy button asks for it. */
    const wholeKey = async (b: Browser) => {
      const res = await b.post("/docs/sandbox-key", {}, { htmx: true });
      expect(res.headers.get("cache-control")).toBe("no-store");
      return ((await res.json()) as { key: string }).key;
    };

    it("signed in, mints a sandbox key on first use and runs the request through the real chain: 200, RateLimit headers explained, metered", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const accountId = await accountOf(b);
      // The page shows the form prefilled with the example and the sandbox key as the credential.
      const page = await b.page("/docs/analyzeEmail");
      expect(page).toContain('id="try-it"');
      expect(page).toContain('name="param_address" value="someone@gmial.com"');
      expect(page).toMatch(/name="credential" value="sandbox" checked/);
      expect(await sandboxRows(accountId)).toHaveLength(0);

      const res = await b.post("/docs/analyzeEmail/try", { param_address: "someone@gmial.com", credential: "sandbox" }, { htmx: true });
      expect(res.status).toBe(200);
      const html = await res.text();
      expect(html).toStartWith('<section class="card" id="try-it"');
      expect(statusIn(html)).toBe("200 OK");
      expect(html).toContain(SANDBOX_NOTE);
      expect(html).toContain("&quot;suggestion&quot;: &quot;someone@gmail.com&quot;");
      const rate = headerRow(html, "ratelimit")!;
      expect(rate[1]).toMatch(/^&quot;default&quot;;r=59;t=\d+, &quot;plan&quot;;/);
      expect(rate[2]).toMatch(/^the key&#x27;s per-minute limit: 59 left, full again in \d+ s; the plan&#x27;s per-second limit: \d+ left, full again in \d+ s\.$/);
      expect(headerRow(html, "ratelimit-policy")![2]).toMatch(/^the key&#x27;s per-minute limit: 60 per 60 s; the plan&#x27;s per-second limit: \d+ per 1 s\.$/);
      expect(headerRow(html, "x-ratelimit-remaining")![1]).toBe("59");
      // The sample shows the key masked; the page never holds it whole.
      const [row] = await sandboxRows(accountId);
      expect(row).toMatchObject({ name: "sandbox", environment: "test", rateLimit: 60, monthlyQuota: 200, revokedAt: null });
      expect(row!.scopes.sort()).toEqual(["batch:write", "email:read", "ip:read"]);
      expect(row!.expiresAt!.getTime()).toBe(clock.now() + 30 * 60_000);
      const secret = await wholeKey(b);
      expect(secret).toMatch(/^kp_test_[0-9A-Za-z]{46}$/);
      expect(html).not.toContain(secret);
      expect(html).toContain(`kp_test_${secret.slice(8, 12)}…${secret.slice(-4)}`);
      expect(html).toContain(`data-sandbox-mask="kp_test_${secret.slice(8, 12)}…${secret.slice(-4)}"`);

      // Again: the same key, no new one; the count goes on.
      const again = await (await b.post("/docs/analyzeEmail/try", { param_address: "a@example.com", credential: "sandbox" }, { htmx: true })).text();
      expect(again).not.toContain(SANDBOX_NOTE);
      expect(headerRow(again, "x-ratelimit-remaining")![1]).toBe("58");
      expect(await sandboxRows(accountId)).toHaveLength(1);

      // Metered as the sandbox key's usage, like a program's request.
      await h.deps.meter.flush();
      const usage = await keyUsageReport(h.deps.db, row!.id, 1, clock.now());
      expect(usage.summary.total).toBe(2);
      expect(usage.topEndpoints[0]!.endpoint).toBe("GET /v1/email/:address");

      // Labelled in the key list; not counted against the key limit (it is not an integration's key).
      const keys = await b.page("/portal/keys");
      expect(keys).toMatch(/>sandbox<\/a>/);
      expect(keys).toContain("badge-sandbox");
      const api = (await (await h.req("/api/keys", { headers: { cookie: b.cookie! } })).json()) as { data: { name: string; sandbox: boolean }[] };
      expect(api.data.find((k) => k.name === "sandbox")!.sandbox).toBe(true);
    });

    it("keeps a sandbox key the reference's: it cannot be changed, rolled or rotated (409, nothing changes), only revoked", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const accountId = await accountOf(b);
      expect((await b.post("/docs/analyzeEmail/try", { param_address: "a@example.com", credential: "sandbox" }, { htmx: true })).status).toBe(200);
      const [before] = await sandboxRows(accountId);
      const admin = await newKey(h, accountId, { name: "admin", scopes: ["keys:manage"], rateLimit: 10_000 });
      const headers = bearer(admin.secret);
      const refusals = [
        await h.req(`/api/keys/${before!.id}`, { method: "PATCH", headers, json: { rateLimit: 10_000, scopes: ["email:read", "ip:read", "batch:write"] } }),
        await h.req(`/api/keys/${before!.id}/roll`, { method: "POST", headers, json: { gracePeriodHours: 0 } }),
        await h.req(`/api/keys/${before!.id}/rotations`, { method: "POST", headers, json: { at: new Date(clock.now() + 3_600_000).toISOString() } }),
        await h.req(`/api/keys/${before!.id}/rotations/emergency`, { method: "POST", headers, json: { reason: "test" } }),
      ];
      for (const res of refusals) {
        const problem = (await res.json()) as { code: string; detail: string };
        expect([res.status, problem.code]).toEqual([409, "key_not_active"]);
        expect(problem.code).toBe("key_not_active");
        expect(problem.detail).toContain("sandbox key");
      }
      // Nothing changed, and no ordinary key came of it.
      const rows = await h.deps.db.query.apiKeys.findMany({ where: (k, { eq }) => eq(k.accountId, accountId) });
      expect(rows.map((k) => k.name).sort()).toEqual(["admin", "sandbox"]);
      const [after] = await sandboxRows(accountId);
      expect(after).toEqual(before!);
      // The portal offers what the key allows: no edit or roll form, the revoke button with why.
      const page = await b.page(`/portal/keys/${before!.id}`);
      expect(page).not.toContain(`action="/portal/keys/${before!.id}/roll"`);
      expect(page).not.toContain('name="rateLimit"');
      expect(page).toContain("It cannot be changed or");
      expect(page).toContain(`action="/portal/keys/${before!.id}/revoke"`);
      const revoked = await h.req(`/api/keys/${before!.id}`, { method: "DELETE", headers });
      expect(((await revoked.json()) as { status: string }).status).toBe("revoked");
    });

    it("shows a 429 with its headers over the sandbox key's limit, and makes a new key after 30 minutes", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const accountId = await accountOf(b);
      for (let i = 0; i < 60; i++) {
        const res = await b.post("/docs/analyzeIp/try", { param_address: "8.8.8.8", credential: "sandbox" }, { htmx: true });
        expect(res.status).toBe(200);
        await res.arrayBuffer();
      }
      const over = await (await b.post("/docs/analyzeIp/try", { param_address: "8.8.8.8", credential: "sandbox" }, { htmx: true })).text();
      expect(statusIn(over)).toBe("429 Too Many Requests");
      expect(headerRow(over, "retry-after")![2]).toMatch(/^Wait \d+ s before retrying\.$/);
      expect(headerRow(over, "x-ratelimit-remaining")![1]).toBe("0");
      expect(over).toContain('href="/docs/errors#rate_limited"');

      const first = (await sandboxRows(accountId))[0]!;
      clock.advance(31 * 60_000);
      const later = await (await b.post("/docs/analyzeIp/try", { param_address: "8.8.8.8", credential: "sandbox" }, { htmx: true })).text();
      expect(statusIn(later)).toBe("200 OK");
      expect(later).toContain(SANDBOX_NOTE);
      const rows = await sandboxRows(accountId);
      expect(rows).toHaveLength(2);
      expect(rows.find((r) => r.id === first.id)!.expiresAt!.getTime()).toBeLessThan(clock.now());
    });

    it("revokes the session's sandbox key at logout: the key answers 401 key_revoked", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const accountId = await accountOf(b);
      await (await b.post("/docs/analyzeEmail/try", { param_address: "a@example.com", credential: "sandbox" }, { htmx: true })).arrayBuffer();
      const secret = await wholeKey(b);
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(secret) })).status).toBe(200);
      expect((await b.post("/logout", {})).status).toBe(303);
      const [row] = await sandboxRows(accountId);
      expect(row!.revokedAt).not.toBeNull();
      const res = await h.req("/v1/email/a@example.com", { headers: bearer(secret) });
      expect(res.status).toBe(401);
      expect(((await res.json()) as { code: string }).code).toBe("key_revoked");
      const audit = await h.deps.db.query.auditEvents.findMany({ where: (e, { eq }) => eq(e.keyId, row!.id) });
      expect(audit.map((e) => e.action).sort()).toEqual(["key.created", "key.revoked"]);
    });

    it("revokes every sandbox key of the account when a password change ends its sessions; the changing browser gets a new one", async () => {
      const address = email();
      const here = new Browser(h);
      await here.signUp(address);
      const there = new Browser(h);
      expect((await there.post("/login", { email: address, password: "a long and unusual passphrase" })).status).toBe(303);
      await there.page("/portal/keys");
      await (await there.post("/docs/analyzeEmail/try", { param_address: "a@example.com", credential: "sandbox" }, { htmx: true })).arrayBuffer();
      await (await here.post("/docs/analyzeEmail/try", { param_address: "a@example.com", credential: "sandbox" }, { htmx: true })).arrayBuffer();
      const theirs = await wholeKey(there);
      const mine = await wholeKey(here);
      expect((await here.post("/portal/settings", { current: "a long and unusual passphrase", next: "another long unusual passphrase" })).status).toBe(200);
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(theirs) })).status).toBe(401);
      // The changing browser's session is renewed too (a new id and secret): its old key went with it.
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(mine) })).status).toBe(401);
      await here.page("/portal/settings");
      await (await here.post("/docs/analyzeEmail/try", { param_address: "a@example.com", credential: "sandbox" }, { htmx: true })).arrayBuffer();
      const renewed = await wholeKey(here);
      expect(renewed).not.toBe(mine);
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(renewed) })).status).toBe(200);
    });

    it("gives a session's sandbox key to that session only, and only with its CSRF token", async () => {
      const a = new Browser(h);
      await a.signUp(email());
      const other = new Browser(h);
      await other.signUp(email());
      await (await a.post("/docs/analyzeEmail/try", { param_address: "a@example.com", credential: "sandbox" }, { htmx: true })).arrayBuffer();
      const mine = await wholeKey(a);
      expect((await other.post("/docs/sandbox-key", {}, { htmx: true })).status).toBe(404);
      expect((await a.post("/docs/sandbox-key", {}, { htmx: true, csrf: null })).status).toBe(403);
      expect(await wholeKey(a)).toBe(mine);
    });

    it("runs a pasted key: a live key is said to be metered, a revoked one shows its 401, and the key never comes back in the page", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const accountId = await accountOf(b);
      const live = await newKey(h, accountId, { name: "prod", scopes: ["email:read"] });
      const ok = await (await b.post("/docs/analyzeEmail/try", { param_address: "a@example.com", credential: "pasted", key: live.secret }, { htmx: true })).text();
      expect(statusIn(ok)).toBe("200 OK");
      expect(ok).toContain("A live key: this request is metered");
      expect(ok).not.toContain(live.secret);
      // The sample then reads the key from the environment.
      expect(ok).toContain("$KEYPORT_KEY");

      await revokeKey(h.deps, accountId, live.key.id, cliActor);
      const res = await b.post("/docs/analyzeEmail/try", { param_address: "a@example.com", credential: "pasted", key: live.secret }, { htmx: true });
      expect(res.status).toBe(200);
      const revoked = await res.text();
      expect(statusIn(revoked)).toBe("401 Unauthorized");
      expect(revoked).toContain('<a href="/docs/errors#key_revoked"><code>key_revoked</code></a>');
      expect(revoked).not.toContain(live.secret);

      const scoped = await newKey(h, accountId, { name: "ip only", scopes: ["ip:read"] });
      const wrongScope = await (await b.post("/docs/analyzeEmail/try", { param_address: "a@example.com", credential: "pasted", key: scoped.secret }, { htmx: true })).text();
      expect(statusIn(wrongScope)).toBe("403 Forbidden");
      expect(wrongScope).toContain("#insufficient_scope");
    });

    it("acts for the caller's address: a pasted key's IP allowlist sees the browser's client address", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const key = await newKey(h, await accountOf(b), { scopes: ["email:read"], ipAllowlist: ["10.0.0.0/8"] });
      const form = { param_address: "a@example.com", credential: "pasted", key: key.secret };
      const inside = await (await b.post("/docs/analyzeEmail/try", form, { htmx: true, headers: { "x-forwarded-for": "10.1.2.3" } })).text();
      expect(statusIn(inside)).toBe("200 OK");
      const outside = await (await b.post("/docs/analyzeEmail/try", form, { htmx: true, headers: { "x-forwarded-for": "192.0.2.7" } })).text();
      expect(statusIn(outside)).toBe("403 Forbidden");
      expect(outside).toContain("#ip_not_allowed");
    });

    it("signed out: asks to log in or paste a key, runs a pasted key, and refuses operations that change keys", async () => {
      const visitor = new Browser(h);
      const page = await visitor.page("/docs/analyzeEmail");
      expect(page).toContain("to try it with a sandbox key made for you, or paste a key below");
      expect(page).not.toContain('value="sandbox"');
      const noKey = await visitor.post("/docs/analyzeEmail/try", { param_address: "a@example.com" }, { htmx: true });
      expect(noKey.status).toBe(422);
      expect(await noKey.text()).toContain("is required: paste a key, or log in to use a sandbox key");

      const owner = await newAccount(h);
      const data = await newKey(h, owner.id, { scopes: ["email:read"] });
      const ok = await (await visitor.post("/docs/analyzeEmail/try", { param_address: "a@example.com", credential: "pasted", key: data.secret }, { htmx: true })).text();
      expect(statusIn(ok)).toBe("200 OK");

      const manage = await newKey(h, owner.id, { scopes: ["keys:manage"] });
      const list = await (await visitor.post("/docs/listKeys/try", { credential: "pasted", key: manage.secret }, { htmx: true })).text();
      expect(statusIn(list)).toBe("200 OK");
      const create = await visitor.post("/docs/createKey/try", { credential: "pasted", key: manage.secret, body: '{"name":"x","scopes":["email:read"]}' }, { htmx: true });
      expect(create.status).toBe(422);
      expect(await create.text()).toContain("log in to try an operation that changes keys");
      const keys = await h.deps.db.query.apiKeys.findMany({ where: (k, { eq }) => eq(k.accountId, owner.id) });
      expect(keys.map((k) => k.name)).not.toContain("x");

      // A form from another site is refused before anything runs.
      const cross = await visitor.post("/docs/analyzeEmail/try", { param_address: "a@example.com", credential: "pasted", key: data.secret }, { headers: { "sec-fetch-site": "cross-site" } });
      expect(cross.status).toBe(403);
    });

    it("signed in, runs management operations with the session, and needs the CSRF token", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const accountId = await accountOf(b);
      const page = await b.page("/docs/createKey");
      expect(page).toMatch(/name="credential" value="session" checked/);
      expect(page).toContain("This runs against your account");
      const created = await (await b.post("/docs/createKey/try", { credential: "session", body: '{"name":"from the docs","scopes":["ip:read"]}' }, { htmx: true })).text();
      expect(statusIn(created)).toBe("201 Created");
      expect((await h.deps.db.query.apiKeys.findMany({ where: (k, { eq }) => eq(k.accountId, accountId) })).map((k) => k.name)).toContain("from the docs");

      const refused = await b.post("/docs/createKey/try", { credential: "session", body: '{"name":"again","scopes":["ip:read"]}' }, { csrf: null });
      expect(refused.status).toBe(403);
      expect((await h.deps.db.query.apiKeys.findMany({ where: (k, { eq }) => eq(k.accountId, accountId) })).map((k) => k.name)).not.toContain("again");
    });

    it("refuses a body over 64 KiB and one that is not JSON, beside the field, keeping what was typed", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const big = JSON.stringify({ items: [{ type: "email", value: "x".repeat(70_000) }] });
      const tooBig = await b.post("/docs/runBatch/try", { credential: "sandbox", body: big }, { htmx: true });
      expect(tooBig.status).toBe(422);
      expect(await tooBig.text()).toContain('<small class="error" id="f-body-error">must be at most 64 KiB</small>');
      const broken = await b.post("/docs/runBatch/try", { credential: "sandbox", body: '{"items": [' }, { htmx: true });
      expect(broken.status).toBe(422);
      const html = await broken.text();
      expect(html).toContain("is not valid JSON");
      expect(html).toContain("{&quot;items&quot;: [</textarea>");
      // Nothing ran: no sandbox key was made.
      expect(await sandboxRows(await accountOf(b))).toHaveLength(0);
      // A valid batch runs, metered per item.
      const ok = await (await b.post("/docs/runBatch/try", { credential: "sandbox", body: '{"items":[{"type":"ip","value":"8.8.8.8"},{"type":"email","value":"a@b.co"}]}' }, { htmx: true })).text();
      expect(statusIn(ok)).toBe("200 OK");
    });

    it("works as a plain form without JavaScript: the whole page comes back with the result", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const res = await b.post("/docs/analyzeEmail/try", { param_address: "someone@example.com", credential: "sandbox" });
      expect(res.status).toBe(200);
      const html = await res.text();
      expect(html).toStartWith("<!doctype html>");
      expect(html).toContain("<h1>Check an email address</h1>");
      expect(statusIn(html)).toBe("200 OK");
      expect(res.headers.get("content-security-policy")).toContain("script-src 'self'");
      // The address bar is left at the form's action: loading it again goes to the page.
      const again = await b.get("/docs/analyzeEmail/try");
      expect(again.status).toBe(303);
      expect(again.headers.get("location")).toBe("/docs/analyzeEmail#try-it");
    });

    it("renders a hostile answer escaped", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const hostile = `"><img src=x onerror=alert(1)>@example.com`;
      const html = await (await b.post("/docs/analyzeEmail/try", { param_address: hostile, credential: "sandbox" }, { htmx: true })).text();
      expect(statusIn(html)).toBe("200 OK");
      // Kept in the field (its quote escaped), and in the answer's body as text.
      expect(html).not.toContain(`"><img`);
      expect(html).toContain('value="&#34;><img src=x onerror=alert(1)>@example.com"');
      expect(html).toContain("&quot;input&quot;: &quot;\\&quot;&gt;&lt;img src=x onerror=alert(1)&gt;@example.com&quot;");
    });
  });
}
