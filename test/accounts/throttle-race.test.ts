import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { and, eq } from "drizzle-orm";
import { LOGIN_LIMITS } from "../../src/accounts/login.ts";
import type { Passwords } from "../../src/accounts/passwords.ts";
import { RESET_LIMITS, resetRequestsSettled } from "../../src/accounts/reset.ts";
import { RESEND_LIMITS } from "../../src/accounts/verification.ts";
import { createAccount } from "../../src/accounts/service.ts";
import { accounts, sessions } from "../../src/accounts/accounts.sql.ts";
import { auditEvents } from "../../src/audit/audit.sql.ts";
import { cliActor } from "../../src/audit/service.ts";
import { emailOutbox } from "../../src/email/email.sql.ts";
import { CHANGE_EMAIL_PER_HOUR } from "../../src/email/preferences.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { UNMETERED_PLANS, backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { email } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

// Issue 21, finding 1: a throttle that reads its counters, verifies the password (argon2,
// ~100 ms at the server's cost) and only then counts lets every guess of a burst through.
// Each burst below arrives at once; the verifications are counted by wrapping the harness's
// Passwords (Deps.passwords, read by every route at call time).

const PASSWORD = "a long and unusual passphrase";
const BURST = 120;
/** Each refused Settings post still renders the whole page: fewer of them, still twice the limit. */
const SETTINGS_BURST = 20;

/** Counts the verifications of `inner`, the passwords they were asked for, and what they answered. */
function countingPasswords(inner: Passwords) {
  const seen: { password: string; ok: boolean }[] = [];
  const passwords: Passwords = {
    hash: (p) => inner.hash(p),
    dummyHash: () => inner.dummyHash(),
    async verify(password, hash) {
      const ok = await inner.verify(password, hash);
      seen.push({ password, ok });
      return ok;
    },
  };
  return { passwords, seen };
}

const statusesOf = (rs: Response[]) => {
  const counts: Record<number, number> = {};
  for (const r of rs) counts[r.status] = (counts[r.status] ?? 0) + 1;
  return counts;
};

for (const backend of backends) {
  describe(`password and token throttles under concurrency [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    let counted: ReturnType<typeof countingPasswords>;
    beforeAll(async () => {
      // TRUST_PROXY: each burst comes from its own client address (X-Forwarded-For), so the
      // per-address budgets of one test do not reach another's.
      h = await startHarness(backend, { clock, config: { trustProxy: true, plansFile: UNMETERED_PLANS } });
      counted = countingPasswords(h.deps.passwords);
      h.deps.passwords = counted.passwords;
    });
    afterAll(() => h.close());

    let nextIp = 1;
    const newIp = () => `198.51.100.${nextIp++}`;

    async function account(address = email()) {
      const a = await createAccount(h.deps, { email: address, password: PASSWORD }, cliActor);
      return { address, id: a.id };
    }

    /** Verifications asked for since `from` (an index into counted.seen). */
    const verifiedSince = (from: number) => counted.seen.slice(from);

    const login = (address: string, password: string, ip: string) =>
      h.req("/login", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "same-origin", "hx-request": "true", "x-forwarded-for": ip },
        body: new URLSearchParams({ email: address, password }).toString(),
      });

    it(`verifies no more than ${LOGIN_LIMITS.perEmail15m} of ${BURST} wrong passwords sent at once for one email, and refuses the right one after them`, async () => {
      const { address, id } = await account();
      const ip = newIp();
      const from = counted.seen.length;
      const burst = await Promise.all(Array.from({ length: BURST }, (_, i) => login(address, `wrong guess number ${i}`, ip)));
      expect(statusesOf(burst)).toEqual({ 422: LOGIN_LIMITS.perEmail15m, 429: BURST - LOGIN_LIMITS.perEmail15m });
      expect(verifiedSince(from)).toHaveLength(LOGIN_LIMITS.perEmail15m);

      const right = await login(address, PASSWORD, newIp());
      expect(right.status).toBe(429);
      expect(right.headers.get("set-cookie")).toBeNull();
      expect(right.headers.get("retry-after")).toBe("900");
      expect(await right.text()).toContain("Too many failed sign-in attempts");
      expect(verifiedSince(from)).toHaveLength(LOGIN_LIMITS.perEmail15m);
      const failed = await h.deps.db.select().from(auditEvents).where(and(eq(auditEvents.accountId, id), eq(auditEvents.action, "account.login_failed")));
      expect(failed).toHaveLength(LOGIN_LIMITS.perEmail15m);
      expect(await h.deps.db.select().from(sessions).where(eq(sessions.accountId, id))).toHaveLength(0);
    });

    it("does not sign in with the right password sent inside the burst once the limit is reached", async () => {
      const { address, id } = await account();
      const ip = newIp();
      const from = counted.seen.length;
      const at = 110;
      const burst = await Promise.all(Array.from({ length: BURST + 1 }, (_, i) => login(address, i === at ? PASSWORD : `wrong guess number ${i}`, ip)));
      expect(burst[at]!.status).toBe(429);
      expect(burst.some((r) => r.headers.get("set-cookie") !== null || r.headers.get("hx-redirect") !== null)).toBe(false);
      expect(verifiedSince(from)).toHaveLength(LOGIN_LIMITS.perEmail15m);
      expect(verifiedSince(from).some((v) => v.ok)).toBe(false);
      expect(await h.deps.db.select().from(sessions).where(eq(sessions.accountId, id))).toHaveLength(0);
      const signedIn = await h.deps.db.select().from(auditEvents).where(and(eq(auditEvents.accountId, id), eq(auditEvents.action, "account.login")));
      expect(signedIn).toHaveLength(0);
    });

    it(`verifies no more than ${LOGIN_LIMITS.perIp15m} passwords at once from one client address, whatever the emails`, async () => {
      const ip = newIp();
      const addresses = await Promise.all(Array.from({ length: 8 }, () => account()));
      const from = counted.seen.length;
      // 8 emails × 10 guesses each: under every email's limit, over the address's.
      const burst = await Promise.all(addresses.flatMap(({ address }) => Array.from({ length: LOGIN_LIMITS.perEmail15m }, (_, i) => login(address, `wrong guess number ${i}`, ip))));
      expect(statusesOf(burst)).toEqual({ 422: LOGIN_LIMITS.perIp15m, 429: 8 * LOGIN_LIMITS.perEmail15m - LOGIN_LIMITS.perIp15m });
      expect(verifiedSince(from)).toHaveLength(LOGIN_LIMITS.perIp15m);
    });

    it("counts no successful sign-in against the budgets, and a check refused past the limit gives its place back", async () => {
      const { address } = await account();
      const ip = newIp();
      for (let i = 0; i < LOGIN_LIMITS.perEmail15m + 2; i++) expect((await login(address, PASSWORD, ip)).status).toBe(200);
      // Refused attempts gave their reservations back: a burst past the limit leaves the address's budget as it found it.
      const other = await account();
      const burst = await Promise.all(Array.from({ length: LOGIN_LIMITS.perIp15m + 10 }, (_, i) => login(other.address, `wrong guess number ${i}`, ip)));
      expect(statusesOf(burst)[422]).toBe(LOGIN_LIMITS.perEmail15m);
      const third = await account();
      expect((await login(third.address, "a wrong password again", ip)).status).toBe(422);
    });

    /** Signs in through the portal and loads Settings, keeping the page's CSRF token. */
    async function signedIn(address: string) {
      const b = new Browser(h);
      const res = await b.post("/login", { email: address, password: PASSWORD }, { headers: { "x-forwarded-for": newIp() } });
      expect(res.status).toBe(303);
      await b.page("/portal/settings");
      return b;
    }

    it(`verifies no more than ${LOGIN_LIMITS.perEmail15m} current passwords of ${SETTINGS_BURST} Settings password changes sent at once, and then refuses the right one`, async () => {
      const { address, id } = await account();
      const b = await signedIn(address);
      const ip = newIp();
      const from = counted.seen.length;
      const burst = await Promise.all(Array.from({ length: SETTINGS_BURST }, (_, i) => b.post("/portal/settings", { current: `wrong current ${i}`, next: "a brand new long passphrase" }, { headers: { "x-forwarded-for": ip } })));
      expect(statusesOf(burst)).toEqual({ 422: LOGIN_LIMITS.perEmail15m, 429: SETTINGS_BURST - LOGIN_LIMITS.perEmail15m });
      expect(verifiedSince(from)).toHaveLength(LOGIN_LIMITS.perEmail15m);
      const refused = await b.post("/portal/settings", { current: PASSWORD, next: "a brand new long passphrase" }, { headers: { "x-forwarded-for": newIp() } });
      expect(refused.status).toBe(429);
      expect(refused.headers.get("retry-after")).toBe("900");
      expect(await refused.text()).toContain("too many wrong passwords");
      expect(verifiedSince(from)).toHaveLength(LOGIN_LIMITS.perEmail15m);
      const [row] = await h.deps.db.select({ hash: accounts.passwordHash }).from(accounts).where(eq(accounts.id, id));
      expect(await h.deps.passwords.verify(PASSWORD, row!.hash)).toBe(true);
    });

    it(`verifies no more than ${CHANGE_EMAIL_PER_HOUR} passwords of a burst of changes of address`, async () => {
      const { address, id } = await account();
      const b = await signedIn(address);
      const from = counted.seen.length;
      const burst = await Promise.all(Array.from({ length: 3 * CHANGE_EMAIL_PER_HOUR }, () => b.post("/portal/settings/email", { email: email(), password: "wrong wrong wrong" })));
      expect(statusesOf(burst)).toEqual({ 422: CHANGE_EMAIL_PER_HOUR, 429: 2 * CHANGE_EMAIL_PER_HOUR });
      expect(verifiedSince(from)).toHaveLength(CHANGE_EMAIL_PER_HOUR);
      expect((await h.deps.db.select().from(emailOutbox).where(eq(emailOutbox.accountId, id))).filter((m) => m.kind === "change_email")).toHaveLength(0);
    });

    it(`queues ${RESET_LIMITS.perEmailHour} reset links, no more, for a burst of requests for one address`, async () => {
      const { address, id } = await account();
      const burst = await Promise.all(Array.from({ length: 30 }, () => new Browser(h).post("/forgot-password", { email: address }, { headers: { "x-forwarded-for": newIp() } })));
      expect(statusesOf(burst)).toEqual({ 200: RESET_LIMITS.perEmailHour, 429: 30 - RESET_LIMITS.perEmailHour });
      await resetRequestsSettled(h.deps);
      const queued = await h.deps.db.select().from(emailOutbox).where(and(eq(emailOutbox.accountId, id), eq(emailOutbox.kind, "password_reset")));
      expect(queued).toHaveLength(RESET_LIMITS.perEmailHour);
    });

    it(`queues ${RESEND_LIMITS.perAccountHour} verification links, no more, for a burst of resends`, async () => {
      const b = new Browser(h);
      const address = email();
      // Without REQUIRE_EMAIL_VERIFICATION sign-up signs in; the address still awaits its link.
      expect((await b.post("/signup", { email: address, password: PASSWORD }, { headers: { "x-forwarded-for": newIp() } })).status).toBe(303);
      await b.page("/portal/keys");
      const [row] = await h.deps.db.select({ id: accounts.id }).from(accounts).where(eq(accounts.email, address));
      const verifyMails = async () => (await h.deps.db.select().from(emailOutbox).where(and(eq(emailOutbox.accountId, row!.id), eq(emailOutbox.kind, "verify_email")))).length;
      const before = await verifyMails();
      const burst = await Promise.all(Array.from({ length: 20 }, () => b.post("/portal/verify-email/resend", {})));
      expect(statusesOf(burst)).toEqual({ 303: RESEND_LIMITS.perAccountHour, 429: 20 - RESEND_LIMITS.perAccountHour });
      expect((await verifyMails()) - before).toBe(RESEND_LIMITS.perAccountHour);
    });

    it("gives a new session id, secret and CSRF token on a password change, and the old ones open nothing", async () => {
      const { address, id } = await account();
      const b = await signedIn(address);
      const other = await signedIn(address);
      const oldCookie = b.cookie!;
      const oldCsrf = b.csrf!;
      const res = await b.post("/portal/settings", { current: PASSWORD, next: "a brand new long passphrase" });
      expect(res.status).toBe(200);
      const html = await res.text();
      expect(html).toContain("Password changed.");
      expect(b.cookie).toBeDefined();
      expect(b.cookie).not.toBe(oldCookie);
      const newId = b.cookie!.slice("kp_session=".length).split(".")[0]!;
      expect(newId).not.toBe(oldCookie.slice("kp_session=".length).split(".")[0]);
      // The page answered carries the new session's token, in the forms and on <body> for htmx.
      const csrf = /name="_csrf" value="([^"]+)"/.exec(html)![1]!;
      expect(csrf).not.toBe(oldCsrf);
      expect(html).not.toContain(oldCsrf);
      expect(html).toContain(`hx-headers:inherited="{&#34;X-CSRF-Token&#34;:&#34;${csrf}&#34;}"`);

      const rows = await h.deps.db.select({ id: sessions.id, csrf: sessions.csrfToken }).from(sessions).where(eq(sessions.accountId, id));
      expect(rows).toEqual([{ id: newId, csrf }]);
      // The old cookie (and the other browser's) is signed out; the new one works.
      expect((await h.req("/portal", { headers: { cookie: oldCookie } })).status).toBe(303);
      expect((await other.get("/portal")).status).toBe(303);
      expect((await b.get("/portal")).status).toBe(200);
      // The old CSRF token does not pass with the new session; the new one does.
      const stale = await b.post("/portal/settings/mail", { on: ["rotation"] }, { csrf: oldCsrf });
      expect(stale.status).toBe(403);
      const fresh = await b.post("/portal/settings/mail", { on: ["rotation"] }, { csrf });
      expect(fresh.status).toBe(200);
    });
  });
}
