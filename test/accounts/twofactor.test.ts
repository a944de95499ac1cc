import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { and, eq } from "drizzle-orm";
import * as OTPAuth from "otpauth";
import { LOGIN_LIMITS } from "../../src/accounts/login.ts";
import { accounts, recoveryCodes, sessions } from "../../src/accounts/accounts.sql.ts";
import { createAccount } from "../../src/accounts/service.ts";
import { PENDING_SIGNIN_MS, RECOVERY_CODE_COUNT } from "../../src/accounts/twofactor.ts";
import { auditEvents } from "../../src/audit/audit.sql.ts";
import { cliActor } from "../../src/audit/service.ts";
import { emailOutbox } from "../../src/email/email.sql.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { SetupPage, TwoFactorPage, SecondStepPage } from "../../views/accounts/twofactor.tsx";
import { backends } from "../support/backends.ts";
import { email } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const PASSWORD = "a long and unusual passphrase";

/**
 * A browser over `app.handle` that keeps every cookie it is given (the session's and the
 * pending sign-in's: test/support/browser.ts keeps only one), reads the CSRF token off pages,
 * and comes from its own client address (TRUST_PROXY), so one test's failures spend no other's
 * per-address budget.
 */
class Client {
  cookies = new Map<string, string>();
  csrf: string | undefined;
  private static nextIp = 1;
  readonly ip = `203.0.113.${Client.nextIp++}`;
  constructor(private readonly h: Harness) {}

  private remember(res: Response): void {
    for (const set of res.headers.getSetCookie()) {
      const [pair] = set.split(";");
      const at = pair!.indexOf("=");
      const name = pair!.slice(0, at);
      const value = pair!.slice(at + 1);
      if (!value || /max-age=0\b/i.test(set)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    const cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join("; ");
    return { accept: "text/html", "x-forwarded-for": this.ip, ...(cookie ? { cookie } : {}), ...extra };
  }

  async get(path: string, headers: Record<string, string> = {}): Promise<Response> {
    const res = await this.h.req(path, { headers: this.headers(headers) });
    this.remember(res);
    return res;
  }

  async page(path: string): Promise<string> {
    const html = await (await this.get(path)).text();
    const m = /name="_csrf" value="([^"]+)"/.exec(html);
    if (m) this.csrf = m[1];
    return html;
  }

  async post(path: string, form: Record<string, string>, opts: { htmx?: boolean; csrf?: string | null; headers?: Record<string, string> } = {}): Promise<Response> {
    const body = new URLSearchParams(form);
    const token = opts.csrf === undefined ? this.csrf : opts.csrf;
    if (token && !opts.htmx) body.append("_csrf", token);
    const headers = this.headers({
      "content-type": "application/x-www-form-urlencoded",
      "sec-fetch-site": "same-origin",
      ...(opts.htmx ? { "hx-request": "true", ...(token ? { "x-csrf-token": token } : {}) } : {}),
      ...opts.headers,
    });
    const res = await this.h.req(path, { method: "POST", headers, body: body.toString() });
    this.remember(res);
    return res;
  }

  get signedIn(): boolean {
    return this.cookies.has("kp_session");
  }
}

/** The secret an enrolment page shows for typing in (grouped by four). */
const secretIn = (html: string) => /id="totp-secret"[^>]*>\s*([A-Z2-7 ]+?)\s*</.exec(html)?.[1]?.replace(/ /g, "");
/** The recovery codes a page shows (once). */
const codesIn = (html: string) =>
  /<pre id="recovery-codes"[^>]*>([\s\S]*?)<\/pre>/
    .exec(html)?.[1]
    ?.split("\n")
    .map((c) => c.trim())
    .filter(Boolean) ?? [];
/** The message beside a field. */
const fieldError = (html: string, field: string) => new RegExp(`id="f-${field}-error"[^>]*>([^<]*)<`).exec(html)?.[1];

const statusesOf = (rs: Response[]) => {
  const counts: Record<number, number> = {};
  for (const r of rs) counts[r.status] = (counts[r.status] ?? 0) + 1;
  return counts;
};

for (const backend of backends) {
  describe(`two-factor sign-in [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    let operatorEmail: string;
    beforeAll(async () => {
      h = await startHarness(backend, { clock, config: { trustProxy: true } });
      // The first account of the database is the operator.
      operatorEmail = email();
      await createAccount(h.deps, { email: operatorEmail, password: PASSWORD }, cliActor);
    });
    afterAll(() => h.close());

    /** A code of `secret` at the test clock's time (and `steps` time steps later). */
    const codeOf = (secret: string, steps = 0) =>
      new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret), algorithm: "SHA1", digits: 6, period: 30 }).generate({ timestamp: clock.now() + steps * 30_000 });
    /** Moves the clock to the next time step (a new code). */
    const nextStep = () => clock.advance(30_000);

    async function newAccount(address = email()) {
      const a = await createAccount(h.deps, { email: address, password: PASSWORD }, cliActor);
      return { address, id: a.id };
    }

    const audited = async (accountId: string, action: string) => (await h.deps.db.select().from(auditEvents).where(and(eq(auditEvents.accountId, accountId), eq(auditEvents.action, action)))).length;
    const mailed = async (accountId: string, kind: string) => (await h.deps.db.select().from(emailOutbox).where(and(eq(emailOutbox.accountId, accountId), eq(emailOutbox.kind, kind)))).length;

    /** Signs in with the password alone (an account without two-factor sign-in, or one being set up). */
    async function logIn(address: string, c = new Client(h)) {
      const res = await c.post("/login", { email: address, password: PASSWORD });
      if (res.status !== 303) throw new Error(`login failed: ${res.status} ${await res.text()}`);
      return { c, res };
    }

    /** An account with two-factor sign-in turned on through Settings: its secret and codes, and the signed-in client. */
    async function enrolled() {
      const { address, id } = await newAccount();
      const { c } = await logIn(address);
      await c.page("/portal/settings/two-factor");
      const started = await (await c.post("/portal/settings/two-factor/start", {})).text();
      const secret = secretIn(started)!;
      const done = await c.post("/portal/settings/two-factor/confirm", { code: codeOf(secret), password: PASSWORD });
      expect(done.status).toBe(200);
      const codes = codesIn(await done.text());
      expect(codes).toHaveLength(RECOVERY_CODE_COUNT);
      // The session was renewed: the next forms carry the new session's CSRF token.
      await c.page("/portal/settings/two-factor");
      // The confirming code's step is used: the next sign-in needs the next step's code.
      nextStep();
      return { address, id, secret, codes, c };
    }

    /** The password step of an enrolled account: a client holding the pending sign-in, no session. */
    async function passwordStep(address: string) {
      const c = new Client(h);
      const res = await c.post("/login", { email: address, password: PASSWORD });
      expect(res.status).toBe(303);
      expect(res.headers.get("location")).toBe("/login/two-factor");
      return c;
    }

    it("enrols from Settings: a server-drawn SVG QR and the secret as text, a wrong code or password refused beside its field, ten codes shown once", async () => {
      const { address, id } = await newAccount();
      const { c } = await logIn(address);
      const settings = await c.page("/portal/settings");
      expect(settings).toContain("Two-factor sign-in");
      expect(settings).toContain("Set up two-factor sign-in");

      const page = await c.page("/portal/settings/two-factor");
      expect(page).not.toContain("<svg");
      const res = await c.post("/portal/settings/two-factor/start", {});
      expect(res.status).toBe(200);
      expect(res.headers.get("cache-control")).toBe("no-store");
      const started = await res.text();
      // Inline SVG, drawn on the server: nothing for the CSP to refuse (no script, no inline style).
      expect(started).toMatch(/<div class="qr"[^>]*><svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"[^>]*>/);
      expect(started.slice(started.indexOf("<svg"), started.indexOf("</svg>"))).not.toMatch(/style=|<script/);
      const secret = secretIn(started)!;
      expect(secret).toMatch(/^[A-Z2-7]{32}$/);

      // A wrong code, and a wrong password: each refused beside its field, the same enrolment shown again.
      const wrongCode = await c.post("/portal/settings/two-factor/confirm", { code: "000000" === codeOf(secret) ? "111111" : "000000", password: PASSWORD });
      expect(wrongCode.status).toBe(422);
      const wrongHtml = await wrongCode.text();
      expect(fieldError(wrongHtml, "code")).toContain("is not the current code");
      expect(secretIn(wrongHtml)).toBe(secret);
      const wrongPassword = await c.post("/portal/settings/two-factor/confirm", { code: codeOf(secret), password: "not the password at all" });
      expect(wrongPassword.status).toBe(422);
      expect(fieldError(await wrongPassword.text(), "password")).toContain("is not your current password");
      expect((await h.deps.db.select().from(accounts).where(eq(accounts.id, id)))[0]!.totpEnabledAt).toBeNull();

      const done = await c.post("/portal/settings/two-factor/confirm", { code: codeOf(secret), password: PASSWORD });
      expect(done.status).toBe(200);
      const doneHtml = await done.text();
      const codes = codesIn(doneHtml);
      expect(codes).toHaveLength(10);
      expect(new Set(codes).size).toBe(10);
      for (const code of codes) expect(code).toMatch(/^[0-9a-hjkmnp-tv-z]{4}(-[0-9a-hjkmnp-tv-z]{4}){3}$/);
      expect(doneHtml).toContain("will not be shown again");
      expect(doneHtml).not.toContain(secret);

      // A reload shows neither the codes nor the secret.
      const again = await c.page("/portal/settings/two-factor");
      for (const code of codes) expect(again).not.toContain(code);
      expect(again).not.toContain("totp-secret");
      expect(again).toContain("10 of 10 recovery codes unused");

      // At rest: the secret sealed, the codes hashed.
      const [row] = await h.deps.db.select().from(accounts).where(eq(accounts.id, id));
      expect(row!.totpEnabledAt).not.toBeNull();
      expect(row!.totpSecretSealed).toStartWith("v1.");
      expect(row!.totpPendingSealed).toBeNull();
      const stored = JSON.stringify([row, await h.deps.db.select().from(recoveryCodes).where(eq(recoveryCodes.accountId, id))]);
      expect(stored).not.toContain(secret);
      for (const code of codes) {
        expect(stored).not.toContain(code);
        expect(stored).not.toContain(code.replace(/-/g, ""));
      }
      expect(await audited(id, "account.2fa_enabled")).toBe(1);
      expect(await mailed(id, "two_factor_enabled")).toBe(1);
      // Nothing of it in the logs.
      const logs = h.logs.join("\n");
      expect(logs).not.toContain(secret);
      for (const code of codes) expect(logs).not.toContain(code);
    });

    it("renews the session when it is turned on: every other browser signed out, this one carries on with a new cookie and CSRF token", async () => {
      const { address, id } = await newAccount();
      const { c } = await logIn(address);
      const { c: other } = await logIn(address);
      await other.page("/portal/settings");
      expect((await other.get("/portal/settings")).status).toBe(200);
      await c.page("/portal/settings/two-factor");
      const secret = secretIn(await (await c.post("/portal/settings/two-factor/start", {})).text())!;
      const oldCookie = c.cookies.get("kp_session")!;
      const oldCsrf = c.csrf!;
      const done = await c.post("/portal/settings/two-factor/confirm", { code: codeOf(secret), password: PASSWORD });
      expect(done.status).toBe(200);
      const html = await done.text();
      expect(codesIn(html)).toHaveLength(RECOVERY_CODE_COUNT);
      expect(html).toContain("Every other browser signed in to this account was signed out.");
      // A new cookie, and the page's forms carry the new session's token.
      const newCookie = c.cookies.get("kp_session")!;
      expect(newCookie).toBeDefined();
      expect(newCookie).not.toBe(oldCookie);
      const newCsrf = /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
      expect(newCsrf).toBeDefined();
      expect(newCsrf).not.toBe(oldCsrf);
      // One session left, this browser's; the old cookie and the other browser are signed out.
      const rows = await h.deps.db.select().from(sessions).where(eq(sessions.accountId, id));
      expect(rows).toHaveLength(1);
      expect(newCookie.startsWith(rows[0]!.id + ".")).toBe(true);
      expect((await c.get("/portal/settings")).status).toBe(200);
      const stale = new Client(h);
      stale.cookies.set("kp_session", oldCookie);
      expect((await stale.get("/portal/settings")).status).toBe(303);
      expect((await other.get("/portal/settings")).status).toBe(303);
      // The old page's token no longer passes; the new one does.
      expect((await c.post("/portal/settings/two-factor/recovery-codes", { password: PASSWORD }, { csrf: oldCsrf })).status).toBe(403);
      c.csrf = newCsrf;
      expect((await c.post("/portal/settings/two-factor/recovery-codes", { password: PASSWORD })).status).toBe(200);
    });

    it("opens no session on the password alone: the pending sign-in reaches neither the portal nor the API until the code", async () => {
      const { address, id, secret } = await enrolled();
      const before = (await h.deps.db.select().from(sessions).where(eq(sessions.accountId, id))).length;
      const c = await passwordStep(address);
      expect(c.signedIn).toBe(false);
      expect(c.cookies.has("kp_2fa")).toBe(true);
      expect((await h.deps.db.select().from(sessions).where(eq(sessions.accountId, id))).length).toBe(before);
      expect(await audited(id, "account.login")).toBe(1);

      // A portal page sends it to log in, and the login page on to the code.
      const portal = await c.get("/portal/keys");
      expect(portal.status).toBe(303);
      expect(portal.headers.get("location")).toStartWith("/login");
      const login = await c.get("/login");
      expect(login.status).toBe(303);
      expect(login.headers.get("location")).toBe("/login/two-factor");
      expect((await h.req("/api/keys", { headers: { cookie: `kp_2fa=${c.cookies.get("kp_2fa")}` } })).status).toBe(401);

      const form = await c.get("/login/two-factor");
      expect(form.status).toBe(200);
      expect(await form.text()).toContain('autocomplete="one-time-code"');

      const res = await c.post("/login/two-factor", { code: codeOf(secret) });
      expect(res.status).toBe(303);
      expect(res.headers.get("location")).toBe("/portal");
      expect(c.signedIn).toBe(true);
      expect(c.cookies.has("kp_2fa")).toBe(false);
      expect((await c.get("/portal/keys")).status).toBe(200);
      expect(await audited(id, "account.login")).toBe(2);
    });

    it("signs in with htmx too: the form swapped with the message beside the field, then an HX-Redirect", async () => {
      const { address, secret } = await enrolled();
      const c = await passwordStep(address);
      const wrong = await c.post("/login/two-factor", { code: "12345x" }, { htmx: true });
      expect(wrong.status).toBe(422);
      const html = await wrong.text();
      expect(html).toStartWith('<section id="two-factor-form"');
      expect(fieldError(html, "code")).toContain("is not a current code");
      const right = await c.post("/login/two-factor", { code: codeOf(secret) }, { htmx: true });
      expect(right.status).toBe(200);
      expect(right.headers.get("hx-redirect")).toBe("/portal");
      expect(c.signedIn).toBe(true);
    });

    it("refuses a code of a time step already used, and takes the next step's", async () => {
      const { address, secret, id } = await enrolled();
      const first = await passwordStep(address);
      const code = codeOf(secret);
      expect((await first.post("/login/two-factor", { code })).status).toBe(303);
      const replay = await passwordStep(address);
      const res = await replay.post("/login/two-factor", { code });
      expect(res.status).toBe(422);
      expect(replay.signedIn).toBe(false);
      // Two uses of one new code sent at once: one passes.
      nextStep();
      const fresh = codeOf(secret);
      const [a, b] = [await passwordStep(address), await passwordStep(address)];
      const both = await Promise.all([a.post("/login/two-factor", { code: fresh }), b.post("/login/two-factor", { code: fresh })]);
      expect(statusesOf(both)).toEqual({ 303: 1, 422: 1 });
      expect(await audited(id, "account.login_2fa_failed")).toBe(2);
    });

    it(`checks no more than ${LOGIN_LIMITS.perEmail15m} wrong codes sent at once, then refuses even the right one (429 beside the field)`, async () => {
      const { address, secret, id } = await enrolled();
      const c = await passwordStep(address);
      const right = codeOf(secret);
      const wrongCodes = Array.from({ length: 25 }, (_, i) => String((Number(right) + 1 + i) % 1_000_000).padStart(6, "0"));
      const burst = await Promise.all(wrongCodes.map((code) => c.post("/login/two-factor", { code }, { htmx: true })));
      expect(statusesOf(burst)).toEqual({ 422: LOGIN_LIMITS.perEmail15m, 429: 25 - LOGIN_LIMITS.perEmail15m });
      expect(await audited(id, "account.login_2fa_failed")).toBe(LOGIN_LIMITS.perEmail15m);

      const refused = await c.post("/login/two-factor", { code: right });
      expect(refused.status).toBe(429);
      expect(refused.headers.get("retry-after")).toBe("900");
      expect(fieldError(await refused.text(), "code")).toContain("too many wrong codes");
      expect(c.signedIn).toBe(false);
      // The same budget as the password's: the password step is refused too.
      const password = await new Client(h).post("/login", { email: address, password: PASSWORD });
      expect(password.status).toBe(429);
    });

    it("takes a recovery code once (audited and mailed); its second use fails, and two uses at once pass once", async () => {
      const { address, codes, id } = await enrolled();
      const c = await passwordStep(address);
      // Typed loosely: upper case, spaces for dashes.
      expect((await c.post("/login/two-factor", { code: codes[0]!.toUpperCase().replace(/-/g, " ") })).status).toBe(303);
      expect(c.signedIn).toBe(true);
      expect(await audited(id, "account.recovery_code_used")).toBe(1);
      expect(await mailed(id, "recovery_code_used")).toBe(1);

      const again = await passwordStep(address);
      const second = await again.post("/login/two-factor", { code: codes[0]! });
      expect(second.status).toBe(422);
      expect(again.signedIn).toBe(false);

      const [a, b] = [await passwordStep(address), await passwordStep(address)];
      const both = await Promise.all([a.post("/login/two-factor", { code: codes[1]! }), b.post("/login/two-factor", { code: codes[1]! })]);
      expect(statusesOf(both)).toEqual({ 303: 1, 422: 1 });
      expect(await audited(id, "account.recovery_code_used")).toBe(2);
      expect(await c.page("/portal/settings/two-factor")).toContain("8 of 10 recovery codes unused");
    });

    it("makes new recovery codes on the password: the old ones stop working, the new ones work", async () => {
      const { address, codes, id, c } = await enrolled();
      await c.page("/portal/settings/two-factor");
      const wrong = await c.post("/portal/settings/two-factor/recovery-codes", { password: "not the password at all" });
      expect(wrong.status).toBe(422);
      expect(fieldError(await wrong.text(), "password")).toContain("is not your current password");
      const res = await c.post("/portal/settings/two-factor/recovery-codes", { password: PASSWORD });
      expect(res.status).toBe(200);
      const fresh = codesIn(await res.text());
      expect(fresh).toHaveLength(10);
      expect(fresh.some((f) => codes.includes(f))).toBe(false);
      expect(await audited(id, "account.recovery_codes_regenerated")).toBe(1);

      const old = await passwordStep(address);
      expect((await old.post("/login/two-factor", { code: codes[2]! })).status).toBe(422);
      const neu = await passwordStep(address);
      expect((await neu.post("/login/two-factor", { code: fresh[0]! })).status).toBe(303);
    });

    it("turns off on the password and a code; sign-in then takes the password alone", async () => {
      const { address, secret, id, c } = await enrolled();
      await c.page("/portal/settings/two-factor");
      const noCode = await c.post("/portal/settings/two-factor/disable", { password: PASSWORD, code: "000000" === codeOf(secret) ? "111111" : "000000" });
      expect(noCode.status).toBe(422);
      expect(fieldError(await noCode.text(), "code")).toContain("is not a current code");
      const wrongPassword = await c.post("/portal/settings/two-factor/disable", { password: "not the password at all", code: codeOf(secret) });
      expect(fieldError(await wrongPassword.text(), "password")).toContain("is not your current password");
      const off = await c.post("/portal/settings/two-factor/disable", { password: PASSWORD, code: codeOf(secret) });
      expect(off.status).toBe(200);
      expect(await off.text()).toContain("Two-factor sign-in is off");
      const [row] = await h.deps.db.select().from(accounts).where(eq(accounts.id, id));
      expect(row).toMatchObject({ totpSecretSealed: null, totpEnabledAt: null });
      expect(await h.deps.db.select().from(recoveryCodes).where(eq(recoveryCodes.accountId, id))).toHaveLength(0);
      expect(await audited(id, "account.2fa_disabled")).toBe(1);
      expect(await mailed(id, "two_factor_disabled")).toBe(1);
      const { res } = await logIn(address);
      expect(res.headers.get("location")).toBe("/portal");
    });

    it("drops a pending sign-in after 5 minutes, and one that was tampered with or made for another account", async () => {
      const { address, secret } = await enrolled();
      const other = await enrolled();
      const c = await passwordStep(address);
      const token = c.cookies.get("kp_2fa")!;
      // Another account's pending sign-in does not take this account's code.
      const intruder = await passwordStep(other.address);
      expect((await intruder.post("/login/two-factor", { code: codeOf(secret) })).status).toBe(422);
      // Altered by one character: not a token.
      const tampered = new Client(h);
      tampered.cookies.set("kp_2fa", token.slice(0, -2) + (token.at(-2) === "A" ? "B" : "A") + token.at(-1));
      const res = await tampered.post("/login/two-factor", { code: codeOf(secret) });
      expect(res.status).toBe(303);
      expect(res.headers.get("location")).toBe("/login");
      expect(tampered.signedIn).toBe(false);

      clock.advance(PENDING_SIGNIN_MS + 1_000);
      const late = await c.post("/login/two-factor", { code: codeOf(secret) });
      expect(late.status).toBe(303);
      expect(late.headers.get("location")).toBe("/login");
      expect(c.signedIn).toBe(false);
      expect(c.cookies.has("kp_2fa")).toBe(false);
    });

    it("needs the CSRF token on every Settings form, and the same origin on every sign-in step", async () => {
      const { address, secret, c } = await enrolled();
      await c.page("/portal/settings/two-factor");
      for (const [path, form] of [
        ["/portal/settings/two-factor/start", {}],
        ["/portal/settings/two-factor/confirm", { code: codeOf(secret), password: PASSWORD }],
        ["/portal/settings/two-factor/recovery-codes", { password: PASSWORD }],
        ["/portal/settings/two-factor/disable", { code: codeOf(secret), password: PASSWORD }],
      ] as const) {
        expect((await c.post(path, form, { csrf: null })).status).toBe(403);
        expect((await c.post(path, form, { csrf: null, htmx: true })).status).toBe(403);
      }
      expect((await h.deps.db.select().from(accounts).where(eq(accounts.email, address)))[0]!.totpEnabledAt).not.toBeNull();

      const pending = await passwordStep(address);
      const crossSite = await pending.post("/login/two-factor", { code: codeOf(secret) }, { headers: { "sec-fetch-site": "cross-site" } });
      expect(crossSite.status).toBe(403);
      expect(pending.signedIn).toBe(false);
      expect((await pending.post("/login/two-factor/cancel", {}, { headers: { "sec-fetch-site": "cross-site" } })).status).toBe(403);
      expect(pending.cookies.has("kp_2fa")).toBe(true);
      const cancelled = await pending.post("/login/two-factor/cancel", {});
      expect(cancelled.headers.get("location")).toBe("/login");
      expect(pending.cookies.has("kp_2fa")).toBe(false);
    });

    it("lets operators require it of every account (audited): sessions of accounts not enrolled end, and such an account reaches only the enrolment", async () => {
      const operator = await logIn(operatorEmail);
      const op = operator.c;
      const [opRow] = await h.deps.db.select().from(accounts).where(eq(accounts.email, operatorEmail));
      await op.page("/admin/security");
      // Not enrolled itself: refused, or it would sign itself out.
      const early = await op.post("/admin/security/two-factor", { required: "true" });
      expect(early.status).toBe(422);
      expect(await early.text()).toContain("turn on two-factor sign-in for your own account first");
      // A non-operator cannot set it (the page does not exist for them).
      const user = await newAccount();
      const { c: userClient } = await logIn(user.address);
      await userClient.page("/portal/keys");
      expect((await userClient.post("/admin/security/two-factor", { required: "true" })).status).toBe(404);

      await op.page("/portal/settings/two-factor");
      const opSecret = secretIn(await (await op.post("/portal/settings/two-factor/start", {})).text())!;
      expect((await op.post("/portal/settings/two-factor/confirm", { code: codeOf(opSecret), password: PASSWORD })).status).toBe(200);
      await op.page("/admin/security");
      const on = await op.post("/admin/security/two-factor", { required: "true" });
      expect(on.status).toBe(303);
      expect(on.headers.get("location")).toStartWith("/admin/security?required=true");
      expect(await op.page(on.headers.get("location")!)).toContain("required of every account");
      expect(await audited("instance", "instance.2fa_required_set")).toBe(1);
      // The operator (enrolled) keeps its session; the user's (not enrolled) ended.
      expect((await op.get("/portal")).status).toBe(200);
      expect((await userClient.get("/portal")).status).toBe(303);

      // Signing in again: the password leads to the enrolment and nowhere else.
      const c = new Client(h);
      const login = await c.post("/login", { email: user.address, password: PASSWORD });
      expect(login.headers.get("location")).toBe("/login/two-factor/setup");
      expect(c.signedIn).toBe(false);
      const elsewhere = await c.get("/portal/keys");
      expect(elsewhere.headers.get("location")).toStartWith("/login");
      expect((await c.get(elsewhere.headers.get("location")!)).headers.get("location")).toBe("/login/two-factor/setup");
      // The code step's page is not this sign-in's step: on to its own.
      expect((await c.get("/login/two-factor")).headers.get("location")).toBe("/login/two-factor/setup");
      expect(await (await c.get("/login/two-factor/setup")).text()).toContain("require two-factor sign-in for every account");
      const started = await (await c.post("/login/two-factor/setup/start", {})).text();
      const secret = secretIn(started)!;
      expect(started).toContain("<svg");
      const wrong = await c.post("/login/two-factor/setup/confirm", { code: "000000" === codeOf(secret) ? "111111" : "000000" });
      expect(wrong.status).toBe(422);
      expect(fieldError(await wrong.text(), "code")).toContain("is not the current code");
      expect(c.signedIn).toBe(false);
      const done = await c.post("/login/two-factor/setup/confirm", { code: codeOf(secret) });
      expect(done.status).toBe(200);
      expect(codesIn(await done.text())).toHaveLength(10);
      expect(c.signedIn).toBe(true);
      expect((await c.get("/portal/keys")).status).toBe(200);

      // While required it cannot be turned off.
      await c.page("/portal/settings/two-factor");
      nextStep();
      const off = await c.post("/portal/settings/two-factor/disable", { password: PASSWORD, code: codeOf(secret) });
      expect(off.status).toBe(422);
      expect(await off.text()).toContain("require two-factor sign-in for every account");

      // A new sign-up goes to the enrolment too, with no session.
      const signup = new Client(h);
      const made = await signup.post("/signup", { email: email(), password: PASSWORD });
      expect(made.headers.get("location")).toBe("/login/two-factor/setup");
      expect(signup.signedIn).toBe(false);

      // The operator resets the user's two-factor sign-in (lost device and codes): off, sessions ended, audited.
      const reset = await op.post(`/admin/accounts/${user.id}/two-factor/reset`, {});
      expect(reset.status).toBe(303);
      expect(await audited(user.id, "account.2fa_reset")).toBe(1);
      expect((await h.deps.db.select().from(accounts).where(eq(accounts.id, user.id)))[0]!.totpEnabledAt).toBeNull();
      expect((await c.get("/portal")).status).toBe(303);
      const afterReset = await new Client(h).post("/login", { email: user.address, password: PASSWORD });
      expect(afterReset.headers.get("location")).toBe("/login/two-factor/setup");

      const offAgain = await op.post("/admin/security/two-factor", { required: "false" });
      expect(offAgain.status).toBe(303);
      expect(await audited("instance", "instance.2fa_required_set")).toBe(2);
      expect((await logIn(user.address)).res.headers.get("location")).toBe("/portal");
      expect(opRow!.isOperator).toBe(true);
    });

    it("lets no other account reset or see an account's two-factor sign-in", async () => {
      const victim = await enrolled();
      const { c } = await logIn((await newAccount()).address);
      await c.page("/portal/keys");
      expect((await c.post(`/admin/accounts/${victim.id}/two-factor/reset`, {})).status).toBe(404);
      expect((await h.deps.db.select().from(accounts).where(eq(accounts.id, victim.id)))[0]!.totpEnabledAt).not.toBeNull();
      // The intruder's own page speaks of the intruder's account only.
      expect(await c.page("/portal/settings/two-factor")).toContain("Set up two-factor sign-in");
    });
  });
}

describe("two-factor views", () => {
  it("escape hostile text", () => {
    const hostile = `<script>alert(1)</script>"'&`;
    const session = { email: hostile, csrfToken: "t", isOperator: false };
    const status = { enabled: false, enabledAt: null, recoveryCodesLeft: 0, required: false };
    const pages = [
      String(SetupPage({ email: hostile, message: hostile, errors: [{ field: "code", message: hostile }], enrolment: { secret: hostile, safeQrSvg: "<svg></svg>" } })),
      String(SetupPage({ email: hostile, codes: [hostile] })),
      String(TwoFactorPage({ session, status, message: hostile, notice: hostile, codes: [hostile] })),
      String(SecondStepPage({ message: hostile, errors: [{ field: "code", message: hostile }] })),
    ];
    for (const html of pages) {
      expect(html).not.toContain("<script>alert");
      expect(html).toContain("&lt;script&gt;");
    }
  });
});
