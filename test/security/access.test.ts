import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { cliActor } from "../../src/audit/service.ts";
import { listDeliveries, setWebhook } from "../../src/notify/webhooks.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { bearer, newKey, schedule } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { createAccount } from "../../src/accounts/service.ts";
import { eq } from "drizzle-orm";
import { accounts } from "../../src/accounts/accounts.sql.ts";
import { monthOf, previousMonth } from "../../src/billing/invoices.ts";
import { closeMonth, listInvoices } from "../../src/billing/service.ts";
import { registerProduct } from "../../src/products/service.ts";
import { generateKey } from "../../src/keys/format.ts";
import { leakPolicyFloor } from "../../src/leaks/service.ts";

/** A product with an operation at its root and one under it. */
const FIXTURE_SPEC = {
  openapi: "3.1.0",
  info: { title: "Fixture", version: "1" },
  paths: {
    "/": { get: { operationId: "root", responses: { "200": { description: "ok" } } } },
    "/things": { post: { operationId: "makeThing", responses: { "201": { description: "made" } } } },
  },
};

/**
 * OWASP API1/API5, for every route of the app (Unkey's runCommonRouteTests): the suite walks
 * `app.routes`, and a route without a fixture in ROUTES fails it. What is checked follows
 * from the route: every /api route needs a credential holding keys:manage (401, 403); one
 * with an `:id` answers another account's object 404, never 403, so ids cannot be probed;
 * a state-changing one needs the session's CSRF token (403). Portal pages send a visitor
 * without a session to /login, refuse a form without its token and answer another
 * account's object 404; /admin is 404 for non-operators.
 */

/** The victim's objects, whose ids the fixtures put in their paths. */
interface Victim {
  keyId: string;
  rotationId: string;
  deliveryId: string;
  accountId: string;
  invoiceId: string;
  /** One of the victim's sessions (the Sessions list in Settings signs it out). */
  sessionId: string;
}

type Fixture =
  /** A management API route: the path with the victim's ids, and a body its schema accepts (else a 400 would hide a missing 404). */
  | { api: string; json?: unknown }
  /** A portal page or form (also /logout): the path with the victim's ids, and the form's fields. */
  | { portal: string; form?: Record<string, string> }
  /** An operator's page or form (with the form's fields). */
  | { admin: string; form?: Record<string, string> }
  /** The data API: a key with the route's scope, nothing else (test/gateway covers the chain); a route of every method is tried with `method`. */
  | { gateway: string; json?: unknown; method?: string }
  /** Needs no credential, and why. */
  | { public: string };

/** A key of this server's shape that no account has: what a leak report pastes. */
const NOBODYS_KEY = generateKey("kp", "live");

const KEY_FORM = { name: "x", scopes: "email:read", rateLimit: "1", gracePeriodHours: "0", reason: "x", at: "2030-01-01T00:00" };
const inAnHour = () => new Date(Date.now() + 7_200_000).toISOString();

/** Every route of the app, by `METHOD /path` as `app.routes` lists it. */
const ROUTES: Record<string, (v: Victim) => Fixture> = {
  "GET /v1/email/:address": () => ({ gateway: "/v1/email/a@example.com" }),
  "GET /v1/ip/:address": () => ({ gateway: "/v1/ip/8.8.8.8" }),
  "POST /v1/batch": () => ({ gateway: "/v1/batch", json: { items: [{ type: "ip", value: "8.8.8.8" }] } }),
  // A registered product's operations (the suite registers "fixture"; test/products covers the proxy).
  "ALL /v1/:product": () => ({ gateway: "/v1/fixture", method: "GET" }),
  "ALL /v1/:product/*": () => ({ gateway: "/v1/fixture/things", method: "POST" }),

  "GET /": () => ({ public: "the home page; a session only redirects it to the dashboard" }),
  "GET /login": () => ({ public: "signing in: there is no session yet" }),
  "GET /forgot-password": () => ({ public: "a password reset is asked for without a session" }),
  "POST /forgot-password": () => ({ public: "a password reset is asked for without a session (same-origin, throttled; the answer is the same for any address)" }),
  "GET /reset-password": () => ({ public: "the reset link: its single-use token is the authority" }),
  "POST /reset-password": () => ({ public: "the reset link: its single-use token is the authority (same-origin)" }),
  "GET /verify-email": () => ({ public: "the verification link: its single-use token is the authority" }),
  "POST /verify-email": () => ({ public: "the verification link: its single-use token is the authority (same-origin)" }),
  "GET /confirm-email": () => ({ public: "the change-of-address link: its single-use token is the authority" }),
  "POST /confirm-email": () => ({ public: "the change-of-address link: its single-use token is the authority (same-origin)" }),
  "GET /email/unsubscribe": () => ({ public: "one-click unsubscribe (RFC 8058): the HMAC token is the authority" }),
  "POST /email/unsubscribe": () => ({ public: "one-click unsubscribe (RFC 8058): the HMAC token is the authority, and mail clients post without cookies" }),
  "POST /portal/verify-email/resend": () => ({ portal: "/portal/verify-email/resend" }),
  "POST /portal/settings/mail": () => ({ portal: "/portal/settings/mail", form: { on: "keys" } }),
  "POST /portal/settings/email": () => ({ portal: "/portal/settings/email", form: { email: "x@example.com", password: "x" } }),
  "POST /login": () => ({ public: "signing in: there is no session yet to hold a CSRF token" }),
  // Two-factor sign-in's second step and the enrolment operators require: a sealed pending
  // sign-in token, no session yet (test/accounts/twofactor.test.ts covers each refusal).
  "GET /login/two-factor": () => ({ public: "the code after the password: only with a pending sign-in token" }),
  "POST /login/two-factor": () => ({ public: "the code after the password: a pending sign-in token, same-origin, throttled like passwords" }),
  "GET /login/two-factor/setup": () => ({ public: "the enrolment operators require, after the password: only with a pending sign-in token" }),
  "POST /login/two-factor/setup/start": () => ({ public: "the enrolment operators require: a pending sign-in token, same-origin" }),
  "POST /login/two-factor/setup/confirm": () => ({ public: "the enrolment operators require: a pending sign-in token, same-origin" }),
  "POST /login/two-factor/cancel": () => ({ public: "drops this browser's pending sign-in (same-origin)" }),
  "GET /signup": () => ({ public: "signing up: there is no account yet" }),
  "POST /signup": () => ({ public: "signing up: there is no account yet" }),
  "GET /healthz": () => ({ public: "ops: the process is up; says nothing of any account" }),
  "GET /readyz": () => ({ public: "ops: database and Redis reachable; says nothing of any account" }),
  "GET /metrics": () => ({ public: "ops: Prometheus scrapes it; per-route counts, no account data" }),
  "GET /openapi.json": () => ({ public: "the API's documentation" }),
  "GET /docs": () => ({ public: "the API reference, rendered from /openapi.json" }),
  "GET /docs/getting-started": () => ({ public: "the API reference's first steps" }),
  "GET /docs/errors": () => ({ public: "the API reference's error codes" }),
  "GET /docs/:operationId": () => ({ public: "an operation's reference page (signed in, it also shows the sandbox key masked)" }),
  "POST /docs/:operationId/try": () => ({ public: "try-it: signed out only with a pasted key and never an operation that changes keys; a session needs its CSRF token (test/docs/tryit.test.ts)" }),
  "GET /docs/:operationId/try": () => ({ public: "a redirect to the operation's page (where a plain try-it form's answer left the address bar)" }),
  "POST /docs/sandbox-key": () => ({ portal: "/docs/sandbox-key" }),
  "GET /static/:name": () => ({ public: "css, htmx and icons" }),
  "GET /pricing": () => ({ public: "the plans and the billing rules, from the plans file (signed in, the account's plan is marked)" }),
  // Public-code scanners' reports (test/leaks/intake.test.ts covers each refusal).
  "POST /leaks/github": () => ({ public: "signed by GitHub: the signature is the authority" }),
  "POST /leaks/gitlab": () => ({ public: "signed by GitLab: the signature is the authority" }),
  "GET /leaks/gitlab/v1/revocable_token_types": () => ({ public: "GitLab's Token Revocation API: a pre-shared token" }),
  "POST /leaks/gitlab/v1/revoke_tokens": () => ({ public: "GitLab's Token Revocation API: a pre-shared token" }),

  "GET /api/keys": () => ({ api: "/api/keys" }),
  "POST /api/keys": () => ({ api: "/api/keys", json: { name: "x", scopes: ["email:read"] } }),
  "GET /api/keys/:id": (v) => ({ api: `/api/keys/${v.keyId}` }),
  "PATCH /api/keys/:id": (v) => ({ api: `/api/keys/${v.keyId}`, json: { name: "mine now" } }),
  "DELETE /api/keys/:id": (v) => ({ api: `/api/keys/${v.keyId}` }),
  "POST /api/keys/:id/roll": (v) => ({ api: `/api/keys/${v.keyId}/roll`, json: { gracePeriodHours: 0 } }),
  "GET /api/keys/:id/usage": (v) => ({ api: `/api/keys/${v.keyId}/usage?days=7` }),
  "GET /api/audit": () => ({ api: "/api/audit" }),
  "GET /api/rotation-policy": () => ({ api: "/api/rotation-policy" }),
  "PUT /api/rotation-policy": () => ({ api: "/api/rotation-policy", json: { maxKeyAgeDays: 90, defaultGraceHours: 72, emergencyGraceHours: 4 } }),
  "GET /api/keys/:id/rotations": (v) => ({ api: `/api/keys/${v.keyId}/rotations` }),
  "POST /api/keys/:id/rotations": (v) => ({ api: `/api/keys/${v.keyId}/rotations`, json: { at: inAnHour() } }),
  "POST /api/keys/:id/rotations/emergency": (v) => ({ api: `/api/keys/${v.keyId}/rotations/emergency`, json: { reason: "x" } }),
  "GET /api/rotations": () => ({ api: "/api/rotations" }),
  "DELETE /api/rotations/:id": (v) => ({ api: `/api/rotations/${v.rotationId}` }),
  "POST /api/rotations/:id/reveal": (v) => ({ api: `/api/rotations/${v.rotationId}/reveal` }),
  "GET /api/notifications": () => ({ api: "/api/notifications" }),
  "POST /api/notifications/read": () => ({ api: "/api/notifications/read" }),
  "GET /api/webhook": () => ({ api: "/api/webhook" }),
  "PUT /api/webhook": () => ({ api: "/api/webhook", json: { url: "https://hooks.example.com/x" } }),
  "DELETE /api/webhook": () => ({ api: "/api/webhook" }),
  "POST /api/webhook/deliveries/:id/resend": (v) => ({ api: `/api/webhook/deliveries/${v.deliveryId}/resend` }),
  "POST /api/webhook/test": () => ({ api: "/api/webhook/test" }),
  "POST /api/webhook/rotate-secret": () => ({ api: "/api/webhook/rotate-secret" }),
  "POST /api/leaks": () => ({ api: "/api/leaks", json: { key: NOBODYS_KEY, url: "https://example.com/leak" } }),
  "GET /api/leaks": () => ({ api: "/api/leaks" }),
  "GET /api/leak-policy": () => ({ api: "/api/leak-policy" }),
  "PUT /api/leak-policy": () => ({ api: "/api/leak-policy", json: { policy: "notify" } }),

  "GET /portal": () => ({ portal: "/portal" }),
  "POST /logout": () => ({ portal: "/logout" }),
  "GET /portal/settings": () => ({ portal: "/portal/settings" }),
  "POST /portal/settings": () => ({ portal: "/portal/settings", form: { current: "x", password: "another long passphrase" } }),
  "GET /portal/keys": () => ({ portal: "/portal/keys" }),
  "POST /portal/keys": () => ({ portal: "/portal/keys", form: KEY_FORM }),
  "GET /portal/keys/:id": (v) => ({ portal: `/portal/keys/${v.keyId}` }),
  "POST /portal/keys/:id": (v) => ({ portal: `/portal/keys/${v.keyId}`, form: KEY_FORM }),
  "POST /portal/keys/:id/revoke": (v) => ({ portal: `/portal/keys/${v.keyId}/revoke` }),
  "POST /portal/keys/:id/roll": (v) => ({ portal: `/portal/keys/${v.keyId}/roll`, form: KEY_FORM }),
  "GET /portal/keys/:id/usage": (v) => ({ portal: `/portal/keys/${v.keyId}/usage?days=7` }),
  "GET /portal/keys/:id/usage.csv": (v) => ({ portal: `/portal/keys/${v.keyId}/usage.csv` }),
  "GET /portal/audit": () => ({ portal: "/portal/audit" }),
  "POST /portal/keys/:id/rotations": (v) => ({ portal: `/portal/keys/${v.keyId}/rotations`, form: KEY_FORM }),
  "POST /portal/keys/:id/rotations/emergency": (v) => ({ portal: `/portal/keys/${v.keyId}/rotations/emergency`, form: KEY_FORM }),
  "POST /portal/rotations/:id/cancel": (v) => ({ portal: `/portal/rotations/${v.rotationId}/cancel` }),
  "POST /portal/rotations/:id/reveal": (v) => ({ portal: `/portal/rotations/${v.rotationId}/reveal` }),
  "POST /portal/settings/policy": () => ({ portal: "/portal/settings/policy", form: { maxKeyAgeDays: "90", defaultGraceHours: "72", emergencyGraceHours: "4" } }),
  "GET /portal/compliance": () => ({ portal: "/portal/compliance" }),
  "GET /portal/compliance.csv": () => ({ portal: "/portal/compliance.csv" }),
  "GET /portal/notifications": () => ({ portal: "/portal/notifications" }),
  "POST /portal/notifications/read": () => ({ portal: "/portal/notifications/read" }),
  "POST /portal/settings/webhook": () => ({ portal: "/portal/settings/webhook", form: { url: "https://hooks.example.com/x" } }),
  "POST /portal/settings/webhook/deliveries/:id/resend": (v) => ({ portal: `/portal/settings/webhook/deliveries/${v.deliveryId}/resend` }),
  "POST /portal/settings/webhook/test": () => ({ portal: "/portal/settings/webhook/test" }),
  "POST /portal/settings/webhook/rotate-secret": () => ({ portal: "/portal/settings/webhook/rotate-secret" }),
  "POST /portal/settings/webhook/delete": () => ({ portal: "/portal/settings/webhook/delete" }),
  "GET /portal/billing": () => ({ portal: "/portal/billing" }),
  "GET /portal/billing/change": () => ({ portal: "/portal/billing/change?plan=starter" }),
  "POST /portal/billing/plan": () => ({ portal: "/portal/billing/plan", form: { plan: "starter" } }),
  "GET /portal/billing/invoices/:id": (v) => ({ portal: `/portal/billing/invoices/${v.invoiceId}` }),
  "POST /portal/leaks": () => ({ portal: "/portal/leaks", form: { key: NOBODYS_KEY, url: "https://example.com/leak" } }),
  "POST /portal/settings/leaks": () => ({ portal: "/portal/settings/leaks", form: { policy: "notify" } }),
  "GET /portal/settings/two-factor": () => ({ portal: "/portal/settings/two-factor" }),
  "POST /portal/settings/two-factor/start": () => ({ portal: "/portal/settings/two-factor/start" }),
  "POST /portal/settings/two-factor/confirm": () => ({ portal: "/portal/settings/two-factor/confirm", form: { code: "123456", password: "x" } }),
  "POST /portal/settings/two-factor/recovery-codes": () => ({ portal: "/portal/settings/two-factor/recovery-codes", form: { password: "x" } }),
  "POST /portal/settings/two-factor/disable": () => ({ portal: "/portal/settings/two-factor/disable", form: { code: "123456", password: "x" } }),
  "POST /portal/settings/sessions/:id/revoke": (v) => ({ portal: `/portal/settings/sessions/${v.sessionId}/revoke` }),
  "POST /portal/settings/sessions/revoke-others": () => ({ portal: "/portal/settings/sessions/revoke-others" }),

  "GET /admin/compliance": () => ({ admin: "/admin/compliance" }),
  "GET /admin/compliance.csv": () => ({ admin: "/admin/compliance.csv" }),
  "GET /admin": () => ({ admin: "/admin" }),
  "GET /admin/accounts": () => ({ admin: "/admin/accounts?q=victim" }),
  "GET /admin/accounts/:id": (v) => ({ admin: `/admin/accounts/${v.accountId}` }),
  "POST /admin/accounts/:id/suspend": (v) => ({ admin: `/admin/accounts/${v.accountId}/suspend`, form: { reason: "x" } }),
  "POST /admin/accounts/:id/unsuspend": (v) => ({ admin: `/admin/accounts/${v.accountId}/unsuspend` }),
  "POST /admin/accounts/:id/plan": (v) => ({ admin: `/admin/accounts/${v.accountId}/plan`, form: { plan: "starter" } }),
  "GET /admin/plans": () => ({ admin: "/admin/plans" }),
  "GET /admin/invoices": () => ({ admin: "/admin/invoices" }),
  "POST /admin/invoices/:id/status": (v) => ({ admin: `/admin/invoices/${v.invoiceId}/status`, form: { status: "void" } }),
  "GET /admin/invoices.csv": () => ({ admin: "/admin/invoices.csv" }),
  "GET /admin/usage": () => ({ admin: "/admin/usage" }),
  "GET /admin/mail": () => ({ admin: "/admin/mail" }),
  "GET /admin/leaks": () => ({ admin: "/admin/leaks" }),
  "POST /admin/leaks/floor": () => ({ admin: "/admin/leaks/floor", form: { floor: "revoke" } }),
  "GET /admin/security": () => ({ admin: "/admin/security" }),
  "POST /admin/security/two-factor": () => ({ admin: "/admin/security/two-factor", form: { required: "true" } }),
  "POST /admin/accounts/:id/two-factor/reset": (v) => ({ admin: `/admin/accounts/${v.accountId}/two-factor/reset` }),
  // The registered product "fixture" (registered below for the /v1 routes).
  "GET /admin/products": () => ({ admin: "/admin/products" }),
  "POST /admin/products": () => ({ admin: "/admin/products", form: { id: "intruded", upstreamUrl: "http://127.0.0.1:9", specUrl: "http://127.0.0.1:9/spec.json" } }),
  "GET /admin/products/:id": () => ({ admin: "/admin/products/fixture" }),
  "POST /admin/products/:id": () => ({ admin: "/admin/products/fixture", form: { name: "intruded", status: "active", upstreamUrl: "http://127.0.0.1:9", timeoutMs: "1000", maxBodyBytes: "0" } }),
  "POST /admin/products/:id/versions": () => ({ admin: "/admin/products/fixture/versions", form: { specUrl: "http://127.0.0.1:9/spec.json", activate: "true" } }),
  "POST /admin/products/:id/versions/:version/activate": () => ({ admin: "/admin/products/fixture/versions/1/activate" }),
  "GET /admin/products/:id/versions/:version/spec.json": () => ({ admin: "/admin/products/fixture/versions/1/spec.json" }),
  "POST /admin/products/:id/secret": () => ({ admin: "/admin/products/fixture/secret" }),
  "POST /admin/products/:id/remove": () => ({ admin: "/admin/products/fixture/remove", form: { confirm: "fixture" } }),
};

/** The fixture kind a route's path calls for: public only outside the prefixes that need a credential. */
function kindOf(key: string): string {
  const path = key.slice(key.indexOf(" ") + 1);
  if (path.startsWith("/api/")) return "api";
  if (path.startsWith("/v1/")) return "gateway";
  if (path === "/admin" || path.startsWith("/admin/")) return "admin";
  if (path === "/portal" || path.startsWith("/portal/") || path === "/logout" || path === "/docs/sandbox-key") return "portal";
  return "public";
}

const routeKey = (r: { method: string; path: string }) => `${r.method.toUpperCase()} ${r.path}`;
const changesState = (method: string) => method !== "GET" && method !== "HEAD";
const takesId = (key: string) => /\/:id(\/|$)/.test(key);

for (const backend of backends) {
  describe(`access control [${backend.name}]`, () => {
    let h: Harness;
    let victim: Victim;
    let victimDeliveries: number;
    let intruder: { browser: Browser; accountId: string; apiKey: string };
    let operator: Browser;
    /** The victim's own credentials: what another account gets 404 for, the owner reads. */
    let owner: { browser: Browser; apiKey: string };
    beforeAll(async () => {
      h = await startHarness(backend);
      // The first account is the operator: neither the victim nor the intruder is one.
      const opEmail = `op-${randomBytes(3).toString("hex")}@example.com`;
      await createAccount(h.deps, { email: opEmail, password: "operator passphrase 1" }, cliActor);
      operator = new Browser(h);
      const login = await operator.post("/login", { email: opEmail, password: "operator passphrase 1" });
      if (login.status !== 303) throw new Error(`operator login failed: ${login.status} ${await login.text()}`);
      const vb = new Browser(h);
      await vb.signUp(`victim-${randomBytes(3).toString("hex")}@example.com`);
      const acct = (await h.deps.db.query.accounts.findFirst({ where: (a, { like }) => like(a.email, "victim-%") }))!;
      // Both have a webhook, so a resend of the victim's delivery could only fail for want of ownership.
      await setWebhook(h.deps, acct.id, { url: "http://127.0.0.1:9/victim", allowPrivate: true }, cliActor, true);
      const { key } = await newKey(h, acct.id, { name: "victim key" });
      owner = { browser: vb, apiKey: (await newKey(h, acct.id, { scopes: ["keys:manage"], rateLimit: 10_000 })).secret };
      const rotation = await schedule(h, acct.id, key.id, { at: new Date(Date.now() + 3_600_000).toISOString() });
      // An invoice of last month: the account made to exist before it, the month closed for real
      // (which notifies invoice.finalized: one more delivery, counted below).
      await h.deps.db.update(accounts).set({ createdAt: new Date(Date.UTC(2020, 0, 1)) }).where(eq(accounts.id, acct.id));
      await closeMonth(h.deps, previousMonth(monthOf(h.deps.clock.now())));
      const [invoice] = await listInvoices(h.deps, acct.id);
      const deliveries = await listDeliveries(h.deps, acct.id);
      victim = { keyId: key.id, rotationId: rotation.id, deliveryId: deliveries[0]!.id, accountId: acct.id, invoiceId: invoice!.id, sessionId: vb.cookie!.slice(vb.cookie!.indexOf("=") + 1).split(".")[0]! };
      victimDeliveries = deliveries.length;
      const ib = new Browser(h);
      await ib.signUp(`intruder-${randomBytes(3).toString("hex")}@example.com`);
      const iacct = (await h.deps.db.query.accounts.findFirst({ where: (a, { like }) => like(a.email, "intruder-%") }))!;
      await setWebhook(h.deps, iacct.id, { url: "http://127.0.0.1:9/intruder", allowPrivate: true }, cliActor, true);
      intruder = { browser: ib, accountId: iacct.id, apiKey: (await newKey(h, iacct.id, { scopes: ["keys:manage"], rateLimit: 10_000 })).secret };
      // The upstream is never reached: every request the suite sends is refused by the chain.
      await registerProduct(h.deps, { id: "fixture", upstreamUrl: "http://127.0.0.1:9" }, { text: JSON.stringify(FIXTURE_SPEC), name: "fixture.json" }, cliActor);
    });
    afterAll(() => h.close());

    /** The app's routes of one kind, each with its fixture (routes without one are the first test's failure). */
    function routes<K extends "api" | "portal" | "admin" | "gateway">(kind: K) {
      return h.app.routes.flatMap((r) => {
        const key = routeKey(r);
        const fixture = ROUTES[key]?.(victim);
        return fixture && kind in fixture ? [{ key, method: r.method.toUpperCase(), fixture: fixture as Extract<Fixture, Record<K, string>> }] : [];
      });
    }
    const pathOf = (f: Fixture) => Object.values(f)[0] as string;

    it("has a fixture of the right kind for every route of the app, and none for a route it no longer has", () => {
      const keys = h.app.routes.map(routeKey);
      expect(keys.length).toBeGreaterThan(50);
      const wrongKind = Object.entries(ROUTES).flatMap(([key, fixture]) => {
        const kind = Object.keys(fixture({ keyId: "key_x", rotationId: "rot_x", deliveryId: "dlv_x", accountId: "acct_x", invoiceId: "inv_x", sessionId: "sess_x" }))[0];
        return kind === kindOf(key) ? [] : [`${key}: ${kind}, not ${kindOf(key)}`];
      });
      expect({ missing: keys.filter((k) => !(k in ROUTES)), stale: Object.keys(ROUTES).filter((k) => !keys.includes(k)), wrongKind }).toEqual({ missing: [], stale: [], wrongKind: [] });
    });

    it("needs a credential on every /api route (401 missing_api_key)", async () => {
      const wrong: string[] = [];
      for (const { key, method, fixture } of routes("api")) {
        const res = await h.req(fixture.api, { method, json: fixture.json });
        const code = res.status === 401 ? ((await res.json()) as { code: string }).code : "";
        if (`${res.status} ${code}` !== "401 missing_api_key") wrong.push(`${key} → ${res.status} ${code}`);
      }
      expect(routes("api").length).toBeGreaterThan(20);
      expect(wrong).toEqual([]);
    });

    it("refuses every /api route to a key without keys:manage and to a test key (403)", async () => {
      const { secret: dataOnly } = await newKey(h, intruder.accountId, { scopes: ["email:read"], rateLimit: 10_000 });
      const { secret: testKey } = await newKey(h, intruder.accountId, { scopes: ["keys:manage"], environment: "test", rateLimit: 10_000 });
      const wrong: string[] = [];
      for (const { key, method, fixture } of routes("api")) {
        for (const [secret, expected] of [[dataOnly, "insufficient_scope"], [testKey, "test_key_not_allowed"]] as const) {
          const res = await h.req(fixture.api, { method, headers: bearer(secret), json: fixture.json });
          const code = ((await res.json()) as { code?: string }).code;
          if (`${res.status} ${code}` !== `403 ${expected}`) wrong.push(`${key} with a ${expected === "insufficient_scope" ? "data key" : "test key"} → ${res.status} ${code}`);
        }
      }
      expect(wrong).toEqual([]);
      // The test key still calls the data API.
      const { secret: testData } = await newKey(h, intruder.accountId, { scopes: ["email:read"], environment: "test" });
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(testData) })).status).toBe(200);
    });

    it("answers 404 to another account on every /api route with an object id, by key and by session, and 200 to the owner's reads", async () => {
      const b = intruder.browser;
      const wrong: string[] = [];
      const withId = routes("api").filter((r) => takesId(r.key));
      expect(withId.length).toBeGreaterThan(8);
      for (const { key, method, fixture } of withId) {
        if (method === "GET") {
          const mine = await h.req(fixture.api, { headers: bearer(owner.apiKey) });
          if (mine.status !== 200) wrong.push(`${key} by the owner → ${mine.status} ${await mine.text()}`);
        }
        const byKey = await h.req(fixture.api, { method, headers: bearer(intruder.apiKey), json: fixture.json });
        if (byKey.status !== 404) wrong.push(`${key} by key → ${byKey.status} ${await byKey.text()}`);
        const bySession = await h.req(fixture.api, { method, headers: { cookie: b.cookie!, "x-csrf-token": b.csrf!, "sec-fetch-site": "same-origin" }, json: fixture.json });
        if (bySession.status !== 404) wrong.push(`${key} by session → ${bySession.status} ${await bySession.text()}`);
      }
      expect(wrong).toEqual([]);
    });

    it("refuses a state-changing /api request by session without X-CSRF-Token (403 csrf_failed)", async () => {
      const b = intruder.browser;
      const wrong: string[] = [];
      const changing = routes("api").filter((r) => changesState(r.method));
      expect(changing.length).toBeGreaterThan(10);
      for (const { key, method, fixture } of changing) {
        const res = await h.req(fixture.api, { method, headers: { cookie: b.cookie!, "sec-fetch-site": "same-origin" }, json: fixture.json });
        const code = ((await res.json()) as { code?: string }).code;
        if (`${res.status} ${code}` !== "403 csrf_failed") wrong.push(`${key} → ${res.status} ${code}`);
      }
      expect(wrong).toEqual([]);
    });

    it("sends a visitor without a session from every portal and admin route to /login (303)", async () => {
      const visitor = new Browser(h);
      const wrong: string[] = [];
      for (const { key, method, fixture } of [...routes("portal"), ...routes("admin")]) {
        const path = pathOf(fixture);
        const res = method === "GET" ? await visitor.get(path) : await visitor.post(path, "form" in fixture ? (fixture.form ?? {}) : {});
        const to = res.headers.get("location") ?? "";
        if (res.status !== 303 || !to.startsWith("/login")) wrong.push(`${key} → ${res.status} ${to}`);
      }
      expect(wrong).toEqual([]);
    });

    it("refuses a state-changing portal request without the CSRF token (403)", async () => {
      const wrong: string[] = [];
      const changing = routes("portal").filter((r) => changesState(r.method));
      expect(changing.length).toBeGreaterThan(10);
      for (const { key, fixture } of changing) {
        const res = await intruder.browser.post(fixture.portal, fixture.form ?? {}, { csrf: null });
        if (res.status !== 403) wrong.push(`${key} → ${res.status}`);
        const htmx = await intruder.browser.post(fixture.portal, fixture.form ?? {}, { csrf: null, htmx: true });
        if (htmx.status !== 403) wrong.push(`${key} (htmx) → ${htmx.status}`);
      }
      expect(wrong).toEqual([]);
    });

    it("answers 404 to another account on every portal route with an object id, and 200 to the owner's pages", async () => {
      const b = intruder.browser;
      const wrong: string[] = [];
      const withId = routes("portal").filter((r) => takesId(r.key));
      expect(withId.length).toBeGreaterThan(8);
      for (const { key, method, fixture } of withId) {
        if (method === "GET") {
          const mine = await owner.browser.get(fixture.portal);
          if (mine.status !== 200) wrong.push(`${key} by the owner → ${mine.status}`);
        }
        const res = method === "GET" ? await b.get(fixture.portal) : await b.post(fixture.portal, fixture.form ?? {});
        if (res.status !== 404) wrong.push(`${key} → ${res.status}`);
      }
      expect(wrong).toEqual([]);
    });

    it("hides every /admin route from non-operators (404), and shows every /admin page to an operator", async () => {
      const wrong: string[] = [];
      const admin = routes("admin");
      expect(admin.length).toBeGreaterThan(10);
      for (const { key, method, fixture } of admin) {
        // A form with the intruder's own valid CSRF token: refused for not being an operator, not for the token.
        const res = method === "GET" ? await intruder.browser.get(fixture.admin) : await intruder.browser.post(fixture.admin, fixture.form ?? {});
        if (res.status !== 404) wrong.push(`${key} → ${res.status}`);
        if (method !== "GET") continue;
        const shown = await operator.get(fixture.admin);
        if (shown.status !== 200) wrong.push(`${key} for the operator → ${shown.status}`);
      }
      expect(wrong).toEqual([]);
    });

    it("refuses an operator's form without the CSRF token (403), with htmx too", async () => {
      const wrong: string[] = [];
      const changing = routes("admin").filter((r) => changesState(r.method));
      expect(changing.length).toBeGreaterThan(3);
      for (const { key, fixture } of changing) {
        const res = await operator.post(fixture.admin, fixture.form ?? {}, { csrf: null });
        if (res.status !== 403) wrong.push(`${key} → ${res.status}`);
        const htmx = await operator.post(fixture.admin, fixture.form ?? {}, { csrf: null, htmx: true });
        if (htmx.status !== 403) wrong.push(`${key} (htmx) → ${htmx.status}`);
      }
      expect(wrong).toEqual([]);
    });

    it("needs a key on every /v1 route (401 missing_api_key), and one with the route's scope (403 insufficient_scope)", async () => {
      const { secret: manageOnly } = await newKey(h, intruder.accountId, { scopes: ["keys:manage"], rateLimit: 10_000 });
      const wrong: string[] = [];
      for (const { key, method, fixture } of routes("gateway")) {
        for (const [headers, expected] of [[{}, "401 missing_api_key"], [bearer(manageOnly), "403 insufficient_scope"]] as const) {
          const res = await h.req(fixture.gateway, { method: fixture.method ?? method, headers, json: fixture.json });
          const got = `${res.status} ${((await res.json()) as { code?: string }).code}`;
          if (got !== expected) wrong.push(`${key} → ${got}`);
        }
      }
      expect(routes("gateway").length).toBe(5);
      expect(wrong).toEqual([]);
    });

    // Last: the checks above must have changed nothing of the victim's.
    it("leaves the victim's key, rotation and deliveries untouched", async () => {
      const key = await h.deps.db.query.apiKeys.findFirst({ where: (k, { eq }) => eq(k.id, victim.keyId) });
      expect(key).toMatchObject({ name: "victim key", revokedAt: null, graceEndsAt: null });
      const rotation = await h.deps.db.query.keyRotations.findFirst({ where: (r, { eq }) => eq(r.id, victim.rotationId) });
      expect(rotation!.state).toBe("scheduled");
      const acct = (await h.deps.db.query.apiKeys.findFirst({ where: (k, { eq }) => eq(k.id, victim.keyId) }))!.accountId;
      expect((await listDeliveries(h.deps, acct)).length).toBe(victimDeliveries);
      const account = await h.deps.db.query.accounts.findFirst({ where: (a, { eq }) => eq(a.id, victim.accountId) });
      expect(account).toMatchObject({ planId: "free", suspendedAt: null });
      const [invoice] = await listInvoices(h.deps, victim.accountId);
      expect(invoice).toMatchObject({ id: victim.invoiceId, status: "open" });
      expect(h.deps.products.get("fixture")).toMatchObject({ name: "Fixture", version: 1, upstreamUrl: "http://127.0.0.1:9" });
      expect(h.deps.products.get("intruded")).toBeUndefined();
      expect(await leakPolicyFloor(h.deps)).toBe("notify");
    });
  });
}
