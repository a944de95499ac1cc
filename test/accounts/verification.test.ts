import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { createHash } from "node:crypto";
import { and, eq } from "drizzle-orm";
import { accounts } from "../../src/accounts/accounts.sql.ts";
import { createAccount } from "../../src/accounts/service.ts";
import { accountWorkSettled } from "../../src/accounts/reset.ts";
import { RESEND_LIMITS, VERIFY_TTL_MS } from "../../src/accounts/verification.ts";
import { auditEvents } from "../../src/audit/audit.sql.ts";
import { cliActor } from "../../src/audit/service.ts";
import { emailOutbox, emailTokens } from "../../src/email/email.sql.ts";
import { deliverMail } from "../../src/email/outbox.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { EmailVerifiedPage, VerifyEmailPage } from "../../views/accounts/auth.tsx";
import { KeysSection, type KeysSectionProps } from "../../views/keys/keys.tsx";
import { UNMETERED_PLANS, backends, testConfig } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { fails, newKey, problem, roll } from "../support/fixtures.ts";
import { email, secretIn } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { TestSmtpServer, linkIn } from "../support/smtp.ts";

const VERIFY_SUBJECT = "Confirm your email address for Keyport";
const GATE = "Confirm your address to create live keys.";
const LIVE_FORM = { name: "prod", environment: "live", scopes: "email:read", rateLimit: "60" };
const TEST_FORM = { ...LIVE_FORM, name: "dev", environment: "test" };
const PASSWORD = "a long and unusual passphrase";
let nextIp = 1;

/** What the config makes of these variables: REQUIRE_EMAIL_VERIFICATION, or else whether SMTP_URL is set. */
const gateOf = (env: Record<string, string>) => {
  const c = testConfig(env);
  return { smtpUrl: c.smtpUrl, requireEmailVerification: c.requireEmailVerification };
};

for (const backend of backends) {
  describe(`address verification [${backend.name}]`, () => {
    const clock = new ManualClock();
    let smtp: TestSmtpServer;
    /** As configured with SMTP_URL set: unverified accounts may not create live keys. */
    let h: Harness;
    /** The embedded default: no SMTP_URL, nothing gated. */
    let open: Harness;
    beforeAll(async () => {
      smtp = await new TestSmtpServer().start();
      // TRUST_PROXY: each sign-up names its client address in X-Forwarded-For.
      h = await startHarness(backend, { clock, mailTransport: smtp.transport(), config: { ...gateOf({ SMTP_URL: smtp.url() }), trustProxy: true, plansFile: UNMETERED_PLANS } });
      open = await startHarness(backend, { clock, mailTransport: smtp.transport(), config: { trustProxy: true, plansFile: UNMETERED_PLANS } });
    });
    afterAll(async () => {
      await h.close();
      await open.close();
      await smtp.stop();
    });

    const verifyPrefix = (on: Harness) => `${on.deps.config.publicUrl}/verify-email?token=`;
    const pathOf = (on: Harness, link: string) => link.slice(on.deps.config.publicUrl.length);
    const verifyMails = (address: string) => smtp.to(address).filter((m) => m.parsed.subject === VERIFY_SUBJECT);
    const tokenOf = (link: string) => new URL(link).searchParams.get("token")!;

    /**
     * A new account, signed in. Where a confirmed address is required, sign-up answers "check
     * your mail" and signs nobody in (so that a taken address is answered alike, issue 21):
     * the account logs in after it, as its owner would. Each from a client address of its
     * own, so the per-address sign-up budget of one test does not reach another's.
     */
    async function signedUp(on: Harness = h): Promise<{ b: Browser; address: string; accountId: string }> {
      const b = new Browser(on);
      const address = email();
      const from = { "x-forwarded-for": `198.51.100.${nextIp++ % 250}` };
      const res = await b.post("/signup", { email: address, password: PASSWORD }, { headers: from });
      if (on.deps.config.requireEmailVerification) {
        expect(res.status).toBe(200);
        expect(b.cookie).toBeUndefined();
        await accountWorkSettled(on.deps);
        expect((await b.post("/login", { email: address, password: PASSWORD }, { headers: from })).status).toBe(303);
      } else expect(res.status).toBe(303);
      await b.page("/portal/keys");
      const [row] = await on.deps.db.select({ id: accounts.id }).from(accounts).where(eq(accounts.email, address));
      return { b, address, accountId: row!.id };
    }

    /** The newest verification link mailed to `address` (sends what is queued first). */
    async function latestLink(on: Harness, address: string): Promise<string> {
      await deliverMail(on.deps);
      const got = verifyMails(address);
      if (!got.length) throw new Error(`no verification mail to ${address}`);
      return linkIn(got.at(-1)!, verifyPrefix(on));
    }

    const verifiedAt = async (on: Harness, accountId: string) => (await on.deps.db.select({ at: accounts.emailVerifiedAt }).from(accounts).where(eq(accounts.id, accountId)))[0]!.at;

    it("reads the gate from the config: on with SMTP_URL, off without, and REQUIRE_EMAIL_VERIFICATION overrides both", () => {
      expect(gateOf({}).requireEmailVerification).toBe(false);
      expect(gateOf({ SMTP_URL: "smtp://mail.example.com:587" }).requireEmailVerification).toBe(true);
      expect(gateOf({ SMTP_URL: "smtp://mail.example.com:587", REQUIRE_EMAIL_VERIFICATION: "false" }).requireEmailVerification).toBe(false);
      expect(gateOf({ REQUIRE_EMAIL_VERIFICATION: "true" }).requireEmailVerification).toBe(true);
      expect(h.deps.config.requireEmailVerification).toBe(true);
      expect(open.deps.config.requireEmailVerification).toBe(false);
    });

    it("mails a 24-hour link at sign-up, queued with the account, and stores only its hash", async () => {
      const { address, accountId } = await signedUp();
      expect(await verifiedAt(h, accountId)).toBeNull();
      const queued = await h.deps.db.select().from(emailOutbox).where(and(eq(emailOutbox.accountId, accountId), eq(emailOutbox.kind, "verify_email")));
      expect(queued).toHaveLength(1);
      const link = await latestLink(h, address);
      expect(verifyMails(address)).toHaveLength(1);
      const token = tokenOf(link);
      expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      const [row] = await h.deps.db.select().from(emailTokens).where(and(eq(emailTokens.accountId, accountId), eq(emailTokens.purpose, "verify_email")));
      expect(row!.tokenHash).toBe(createHash("sha256").update(token).digest("hex"));
      expect(row!.expiresAt.getTime() - row!.createdAt.getTime()).toBe(VERIFY_TTL_MS);
      expect(JSON.stringify(row)).not.toContain(token);
    });

    it("confirms the address by the page's button, not by opening the link, and only once", async () => {
      const { address, accountId } = await signedUp();
      const link = await latestLink(h, address);
      // A mail scanner fetching the link (twice, even) confirms nothing.
      for (let i = 0; i < 2; i++) {
        const page = await h.req(pathOf(h, link));
        expect(page.status).toBe(200);
        expect(page.headers.get("referrer-policy")).toBe("no-referrer");
        expect(page.headers.get("cache-control")).toBe("no-store");
        const html = await page.text();
        expect(html).toContain('<form id="verify-form" method="post" action="/verify-email"');
        expect(html).toContain(`value="${tokenOf(link)}"`);
        expect(html).toContain(address);
      }
      expect(await verifiedAt(h, accountId)).toBeNull();

      const confirmed = await new Browser(h).post("/verify-email", { token: tokenOf(link) });
      expect(confirmed.status).toBe(200);
      expect(await confirmed.text()).toContain("Address confirmed");
      expect((await verifiedAt(h, accountId))?.getTime()).toBe(clock.now());
      const audit = await h.deps.db.select().from(auditEvents).where(and(eq(auditEvents.accountId, accountId), eq(auditEvents.action, "account.email_verified")));
      expect(audit).toHaveLength(1);

      const again = await new Browser(h).post("/verify-email", { token: tokenOf(link) });
      expect(again.status).toBe(400);
      expect(await again.text()).toContain("This link does not work");
      expect((await h.req(pathOf(h, link))).status).toBe(400);
    });

    it("lets a link work for 24 hours and not after", async () => {
      const { address, accountId } = await signedUp();
      const link = await latestLink(h, address);
      clock.advance(VERIFY_TTL_MS - 1000);
      expect((await h.req(pathOf(h, link))).status).toBe(200);
      clock.advance(1000);
      expect((await h.req(pathOf(h, link))).status).toBe(400);
      expect((await new Browser(h).post("/verify-email", { token: tokenOf(link) })).status).toBe(400);
      expect(await verifiedAt(h, accountId)).toBeNull();
    });

    it("refuses a confirmation posted from another site (403)", async () => {
      const { address, accountId } = await signedUp();
      const link = await latestLink(h, address);
      const res = await new Browser(h).post("/verify-email", { token: tokenOf(link) }, { headers: { "sec-fetch-site": "cross-site" } });
      expect(res.status).toBe(403);
      expect(await res.text()).toContain("This form was not sent from this site.");
      expect(await verifiedAt(h, accountId)).toBeNull();
    });

    it("keeps an unverified account from live keys in the portal, says why beside the form, and makes test keys", async () => {
      const { b, address } = await signedUp();
      const page = await b.page("/portal/keys");
      expect(page).toContain(GATE);
      expect(page).toContain(`Follow the link we mailed to ${address} when you signed up`);
      expect(page).toContain('<form method="post" action="/portal/verify-email/resend">');
      // The form starts on a test key, which works now.
      expect(page).toMatch(/<option value="test" selected>/);

      const live = await b.post("/portal/keys", LIVE_FORM, { htmx: true });
      expect(live.status).toBe(422);
      const refused = await live.text();
      expect(refused).toContain("Confirm your email address to create live keys");
      expect(refused).toContain(GATE);
      expect(secretIn(refused)).toBeUndefined();

      const test = await b.post("/portal/keys", TEST_FORM, { htmx: true });
      expect(test.status).toBe(201);
      expect(secretIn(await test.text())).toMatch(/^kp_test_/);
    });

    it("answers the API's live key request 403 email_not_verified, and makes test keys", async () => {
      const { b } = await signedUp();
      // By session (an unverified account holds no live key to call with); the harness checks the answers against /openapi.json.
      const api = (json: unknown) => h.req("/api/keys", { method: "POST", json, headers: { cookie: b.cookie!, "x-csrf-token": b.csrf!, "sec-fetch-site": "same-origin" } });
      const live = await api({ name: "prod", environment: "live", scopes: ["email:read"] });
      expect(live.status).toBe(403);
      const body = await problem(live);
      expect(body.code).toBe("email_not_verified");
      expect(String(body.detail)).toContain("Test keys and the sandbox work meanwhile.");
      expect((await api({ name: "dev", environment: "test", scopes: ["email:read"] })).status).toBe(201);
    });

    it("lets an unverified account try the API with the reference's sandbox key", async () => {
      const { b } = await signedUp();
      const tried = await b.post("/docs/analyzeEmail/try", { param_address: "someone@gmial.com", credential: "sandbox" }, { htmx: true });
      expect(tried.status).toBe(200);
      expect(await tried.text()).toContain("200 OK");
    });

    it("lets live keys be made once the address is confirmed, without the notice", async () => {
      const { b, address, accountId } = await signedUp();
      expect(await b.page("/portal/keys")).toContain(GATE);
      const link = await latestLink(h, address);
      expect((await new Browser(h).post("/verify-email", { token: tokenOf(link) })).status).toBe(200);
      expect(await verifiedAt(h, accountId)).not.toBeNull();
      const page = await b.page("/portal/keys");
      expect(page).not.toContain(GATE);
      expect(page).toMatch(/<option value="live" selected>/);
      const after = await b.post("/portal/keys", LIVE_FORM, { htmx: true });
      expect(after.status).toBe(201);
      expect(secretIn(await after.text())).toMatch(/^kp_live_/);
    });

    it("refuses to roll a live key of an account whose address is not confirmed", async () => {
      const account = await createAccount(h.deps, { email: email(), password: "correct horse battery" }, cliActor);
      const { key } = await newKey(h, account.id, { environment: "live" });
      // An address that stopped being confirmed (as after a change of address not yet confirmed).
      await h.deps.db.update(accounts).set({ emailVerifiedAt: null }).where(eq(accounts.id, account.id));
      const err = await fails(roll(h, account.id, key.id, { gracePeriodHours: 0 }));
      expect(err.code).toBe("email_not_verified");
      const test = await newKey(h, account.id, { environment: "test" });
      expect((await roll(h, account.id, test.key.id, { gracePeriodHours: 0 })).secret).toMatch(/^kp_test_/);
    });

    it("gates nothing without SMTP_URL, though the link is still mailed", async () => {
      const { b, address, accountId } = await signedUp(open);
      expect(await verifiedAt(open, accountId)).toBeNull();
      const page = await b.page("/portal/keys");
      expect(page).not.toContain(GATE);
      expect(page).toMatch(/<option value="live" selected>/);
      const live = await b.post("/portal/keys", LIVE_FORM, { htmx: true });
      expect(live.status).toBe(201);
      expect(secretIn(await live.text())).toMatch(/^kp_live_/);
      expect(await latestLink(open, address)).toStartWith(verifyPrefix(open));
    });

    it("marks accounts made by the CLI verified, sends them no link, and lets them create live keys", async () => {
      const address = email();
      const account = await createAccount(h.deps, { email: address, password: "correct horse battery" }, cliActor);
      expect(account.emailVerifiedAt?.getTime()).toBe(clock.now());
      expect(await h.deps.db.select().from(emailOutbox).where(eq(emailOutbox.accountId, account.id))).toHaveLength(0);
      expect(await h.deps.db.select().from(emailTokens).where(eq(emailTokens.accountId, account.id))).toHaveLength(0);
      expect((await newKey(h, account.id, { environment: "live" })).secret).toMatch(/^kp_live_/);
      await deliverMail(h.deps);
      expect(smtp.to(address)).toHaveLength(0);
    });

    it(`sends a new link on request, which ends the older one, at most ${RESEND_LIMITS.perAccountHour} an hour`, async () => {
      const { b, address, accountId } = await signedUp();
      const first = await latestLink(h, address);
      const res = await b.post("/portal/verify-email/resend", {});
      expect(res.status).toBe(303);
      expect(res.headers.get("location")).toBe("/portal/keys?verification=sent");
      expect(await b.page("/portal/keys?verification=sent")).toContain(`A new link is on its way to ${address}`);
      const second = await latestLink(h, address);
      expect(second).not.toBe(first);
      expect(verifyMails(address)).toHaveLength(2);
      expect((await h.req(pathOf(h, first))).status).toBe(400);
      expect((await h.req(pathOf(h, second))).status).toBe(200);
      const sent = await h.deps.db.select().from(auditEvents).where(and(eq(auditEvents.accountId, accountId), eq(auditEvents.action, "account.verification_sent")));
      expect(sent).toHaveLength(1);

      // Each sent before the next is asked for, so the last to arrive is the newest.
      for (let i = 1; i < RESEND_LIMITS.perAccountHour; i++) {
        expect((await b.post("/portal/verify-email/resend", {})).status).toBe(303);
        await deliverMail(h.deps);
      }
      const blocked = await b.post("/portal/verify-email/resend", {});
      expect(blocked.status).toBe(429);
      expect(await blocked.text()).toContain("Several confirmation links were sent in the last hour.");
      await deliverMail(h.deps);
      expect(verifyMails(address)).toHaveLength(1 + RESEND_LIMITS.perAccountHour);

      // Confirmed, a resend sends nothing and goes back to the keys.
      clock.advance(3_600_000);
      expect((await new Browser(h).post("/verify-email", { token: tokenOf(await latestLink(h, address)) })).status).toBe(200);
      const done = await b.post("/portal/verify-email/resend", {});
      expect(done.status).toBe(303);
      expect(done.headers.get("location")).toBe("/portal/keys");
      await deliverMail(h.deps);
      expect(verifyMails(address)).toHaveLength(1 + RESEND_LIMITS.perAccountHour);
    });

    it("needs the session's CSRF token to resend", async () => {
      const { b, address } = await signedUp();
      await latestLink(h, address);
      expect((await b.post("/portal/verify-email/resend", {}, { csrf: null })).status).toBe(403);
      await deliverMail(h.deps);
      expect(verifyMails(address)).toHaveLength(1);
    });

    it("writes no verification token to a log line", async () => {
      const tokens = smtp.received.flatMap((m) => [...(m.parsed.text ?? "").matchAll(/[?&]token=([A-Za-z0-9_-]{43})/g)].map((x) => x[1]!));
      expect(tokens.length).toBeGreaterThan(5);
      const logs = [...h.logs, ...open.logs].join("\n");
      for (const t of tokens) expect(logs).not.toContain(t);
    });
  });
}

describe("verification views", () => {
  const hostile = `x"><script>alert(1)</script>@example.com`;

  it("escape the address on the confirm page, the confirmed page and the keys page's notice", () => {
    const keys: KeysSectionProps = {
      keys: [],
      total: 0,
      page: 1,
      pages: 1,
      search: { q: "", status: "", environment: "", revoked: false },
      anyKeys: false,
      perKeyMonth: {},
      form: { values: {} },
      scopes: [],
      csrf: "c",
      origin: "http://localhost",
      prefix: "kp",
      now: 0,
      verification: { email: hostile, sent: true },
    };
    for (const html of [String(VerifyEmailPage({ token: "t", email: hostile, message: hostile })), String(EmailVerifiedPage({ email: hostile })), String(KeysSection(keys))]) {
      expect(html).not.toContain('"><script>');
      expect(html).not.toContain("<script>alert(1)</script>");
      expect(html).toContain("&lt;script&gt;");
    }
  });
});
