import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { and, eq } from "drizzle-orm";
import { accounts, sessions } from "../../src/accounts/accounts.sql.ts";
import { RESET_LIMITS, RESET_TTL_MS, resetRequestsSettled } from "../../src/accounts/reset.ts";
import { auditEvents } from "../../src/audit/audit.sql.ts";
import { emailOutbox, emailTokens } from "../../src/email/email.sql.ts";
import { deliverMail } from "../../src/email/outbox.ts";
import { apiKeys } from "../../src/keys/keys.sql.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { ForgotPasswordPage, LoginPage, ResetPasswordPage, ResetRequestedPage } from "../../views/accounts/auth.tsx";
import { UNMETERED_PLANS, backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { email } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { TestSmtpServer, linkIn, type ReceivedMail } from "../support/smtp.ts";

const PASSWORD = "a long and unusual passphrase";
const NEW_PASSWORD = "another quite long passphrase";
const RESET_SUBJECT = "Reset your Keyport password";
const CHANGED_SUBJECT = "Your Keyport password was changed";

/** A client address of its own for each use, so the per-address throttle of one test does not reach another's. */
let nextIp = 1;
const fromNewIp = () => ({ "x-forwarded-for": `198.51.100.${nextIp++ % 250}` });

for (const backend of backends) {
  describe(`password reset by mail [${backend.name}]`, () => {
    const clock = new ManualClock();
    let smtp: TestSmtpServer;
    let h: Harness;
    beforeAll(async () => {
      smtp = await new TestSmtpServer().start();
      // TRUST_PROXY: each test names its client address in X-Forwarded-For.
      h = await startHarness(backend, { clock, mailTransport: smtp.transport(), config: { trustProxy: true, plansFile: UNMETERED_PLANS } });
    });
    afterAll(async () => {
      await h.close();
      await smtp.stop();
    });

    const resetPrefix = () => `${h.deps.config.publicUrl}/reset-password?token=`;
    /** The path (and query) of a link to this server, as a browser following it asks for it. */
    const pathOf = (link: string) => {
      expect(link.startsWith(h.deps.config.publicUrl)).toBe(true);
      return link.slice(h.deps.config.publicUrl.length);
    };

    /** Lets the requests already answered finish their lookups, then sends what is queued. */
    async function send(): Promise<void> {
      await resetRequestsSettled(h.deps);
      await deliverMail(h.deps);
    }

    const mails = (address: string, subject: string) => smtp.to(address).filter((m) => m.parsed.subject === subject);

    async function askReset(address: string, headers: Record<string, string> = fromNewIp()): Promise<Response> {
      return new Browser(h).post("/forgot-password", { email: address }, { headers });
    }

    /** The newest reset link mailed to `address`. */
    function latestResetLink(address: string): string {
      const got = mails(address, RESET_SUBJECT);
      if (!got.length) throw new Error(`no reset mail to ${address}; received: ${smtp.received.map((m) => `${m.envelope.to} ${m.parsed.subject}`).join("; ")}`);
      return linkIn(got.at(-1)!, resetPrefix());
    }

    async function signedUp(): Promise<{ b: Browser; address: string; accountId: string }> {
      const b = new Browser(h);
      const address = email();
      await b.signUp(address, PASSWORD);
      const [row] = await h.deps.db.select({ id: accounts.id }).from(accounts).where(eq(accounts.email, address));
      return { b, address, accountId: row!.id };
    }

    const logIn = (address: string, password: string) => new Browser(h).post("/login", { email: address, password }, { headers: fromNewIp() });

    it("links to the reset form from the login page", async () => {
      const html = await (await h.req("/login")).text();
      expect(html).toContain('<a href="/forgot-password">Forgot password?</a>');
      const form = await h.req("/forgot-password");
      expect(form.status).toBe(200);
      expect(await form.text()).toContain('action="/forgot-password"');
    });

    it("mails a single-use link that sets the new password once and leads to the login page", async () => {
      const { address, accountId } = await signedUp();
      const asked = await askReset(address);
      expect(asked.status).toBe(200);
      expect(await asked.text()).toContain("Check your mail");
      await send();

      const mail = mails(address, RESET_SUBJECT);
      expect(mail).toHaveLength(1);
      expect(mail[0]!.secure).toBe(true);
      const link = latestResetLink(address);
      const token = new URL(link).searchParams.get("token")!;
      expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
      // The HTML part carries the same link, escaped for an attribute.
      expect(String(mail[0]!.parsed.html)).toContain(link.replace("&", "&amp;"));

      // Stored as SHA-256 only: the row names the hash, never the token.
      const rows = await h.deps.db.select().from(emailTokens).where(and(eq(emailTokens.accountId, accountId), eq(emailTokens.purpose, "password_reset")));
      expect(rows).toHaveLength(1);
      expect(rows[0]!.tokenHash).toBe(createHash("sha256").update(token).digest("hex"));
      expect(rows[0]!.expiresAt.getTime() - rows[0]!.createdAt.getTime()).toBe(RESET_TTL_MS);
      expect(JSON.stringify(rows)).not.toContain(token);
      const outbox = await h.deps.db.select().from(emailOutbox).where(eq(emailOutbox.accountId, accountId));
      expect(JSON.stringify(outbox)).not.toContain(token);

      const page = await h.req(pathOf(link));
      expect(page.status).toBe(200);
      expect(page.headers.get("referrer-policy")).toBe("no-referrer");
      expect(page.headers.get("cache-control")).toBe("no-store");
      const html = await page.text();
      expect(html).toContain(`<input type="hidden" name="token" value="${token}"/>`);
      expect(html).toContain(`For the account of ${address}.`);

      const b = new Browser(h);
      const done = await b.post("/reset-password", { token, password: NEW_PASSWORD });
      expect(done.status).toBe(303);
      expect(done.headers.get("location")).toBe("/login?reset=done");
      // Nobody is signed in by a reset.
      expect(b.cookie).toBeUndefined();
      expect(await (await h.req("/login?reset=done")).text()).toContain("Your password was changed and every session signed out.");

      expect((await logIn(address, PASSWORD)).status).toBe(422);
      expect((await logIn(address, NEW_PASSWORD)).status).toBe(303);

      // Once only: the link's page and its form now say it does not work, and offer a new one.
      const again = await new Browser(h).post("/reset-password", { token, password: "a third long passphrase" });
      expect(again.status).toBe(400);
      const refused = await again.text();
      expect(refused).toContain("This link does not work");
      expect(refused).toContain('<a href="/forgot-password">Ask for a new link</a>');
      expect((await h.req(pathOf(link))).status).toBe(400);
      expect((await logIn(address, NEW_PASSWORD)).status).toBe(303);

      const audit = await h.deps.db.select().from(auditEvents).where(eq(auditEvents.accountId, accountId));
      expect(audit.map((e) => e.action)).toContain("account.password_reset_requested");
      expect(audit.filter((e) => e.action === "account.password_reset")).toHaveLength(1);
      // The person with the link acted as the account, from where they were.
      expect(audit.find((e) => e.action === "account.password_reset")!.actor).toBe(`account:${accountId}`);

      // The account is told, by a mail of its own (a security notice).
      await send();
      expect(mails(address, CHANGED_SUBJECT)).toHaveLength(1);
    });

    it("ends every session of the account, and its sandbox keys with them", async () => {
      const { b: first, address } = await signedUp();
      const second = new Browser(h);
      expect((await second.post("/login", { email: address, password: PASSWORD }, { headers: fromNewIp() })).status).toBe(303);
      // A sandbox key of the first session (the reference's try-it key).
      const tried = await first.post("/docs/analyzeEmail/try", { param_address: "a@example.com", credential: "sandbox" }, { htmx: true });
      expect(tried.status).toBe(200);
      const [{ id: accountId } = { id: "" }] = await h.deps.db.select({ id: accounts.id }).from(accounts).where(eq(accounts.email, address));
      expect(await h.deps.db.select().from(sessions).where(eq(sessions.accountId, accountId))).toHaveLength(2);

      await askReset(address);
      await send();
      const token = new URL(latestResetLink(address)).searchParams.get("token")!;
      expect((await new Browser(h).post("/reset-password", { token, password: NEW_PASSWORD })).status).toBe(303);

      expect(await h.deps.db.select().from(sessions).where(eq(sessions.accountId, accountId))).toHaveLength(0);
      for (const b of [first, second]) {
        const res = await b.get("/portal");
        expect(res.status).toBe(303);
        expect(res.headers.get("location")).toStartWith("/login");
      }
      const keys = await h.req("/portal/keys", { headers: { cookie: first.cookie ?? "" } });
      expect(keys.status).toBe(303);
      const sandbox = await h.deps.db.select().from(apiKeys).where(eq(apiKeys.accountId, accountId));
      expect(sandbox.length).toBeGreaterThan(0);
      expect(sandbox.every((k) => k.revokedAt !== null)).toBe(true);
    });

    it("lets only one of two simultaneous uses of a link through", async () => {
      const { address } = await signedUp();
      await askReset(address);
      await send();
      const token = new URL(latestResetLink(address)).searchParams.get("token")!;
      const answers = await Promise.all(["first long passphrase!", "second long passphrase"].map((password) => new Browser(h).post("/reset-password", { token, password })));
      expect(answers.map((r) => r.status).sort()).toEqual([303, 400]);
      const [{ id } = { id: "" }] = await h.deps.db.select({ id: accounts.id }).from(accounts).where(eq(accounts.email, address));
      expect(await h.deps.db.select().from(auditEvents).where(and(eq(auditEvents.accountId, id), eq(auditEvents.action, "account.password_reset")))).toHaveLength(1);
    });

    it("also clears the cookie of a browser that posts the reset while signed in", async () => {
      const { b, address } = await signedUp();
      await askReset(address);
      await send();
      const token = new URL(latestResetLink(address)).searchParams.get("token")!;
      const done = await b.post("/reset-password", { token, password: NEW_PASSWORD });
      expect(done.status).toBe(303);
      expect(done.headers.get("set-cookie")).toContain("Max-Age=0");
    });

    it("lets a link work until its 30 minutes are over, and not after", async () => {
      const { address } = await signedUp();
      await askReset(address);
      await send();
      const link = latestResetLink(address);
      clock.advance(RESET_TTL_MS - 1000);
      expect((await h.req(pathOf(link))).status).toBe(200);
      clock.advance(1000);
      expect((await h.req(pathOf(link))).status).toBe(400);
      const token = new URL(link).searchParams.get("token")!;
      const late = await new Browser(h).post("/reset-password", { token, password: NEW_PASSWORD });
      expect(late.status).toBe(400);
      expect(await late.text()).toContain("Ask for a new link");
      // The password is as it was.
      expect((await logIn(address, PASSWORD)).status).toBe(303);
    });

    it("ends the older link when a newer one is asked for", async () => {
      const { address } = await signedUp();
      await askReset(address);
      await send();
      const older = latestResetLink(address);
      clock.advance(60_000);
      await askReset(address);
      await send();
      const newer = latestResetLink(address);
      expect(newer).not.toBe(older);
      expect(mails(address, RESET_SUBJECT)).toHaveLength(2);

      expect((await h.req(pathOf(older))).status).toBe(400);
      const olderToken = new URL(older).searchParams.get("token")!;
      expect((await new Browser(h).post("/reset-password", { token: olderToken, password: NEW_PASSWORD })).status).toBe(400);
      const newerToken = new URL(newer).searchParams.get("token")!;
      expect((await new Browser(h).post("/reset-password", { token: newerToken, password: NEW_PASSWORD })).status).toBe(303);
      expect((await logIn(address, NEW_PASSWORD)).status).toBe(303);
    });

    it("answers an address without an account with the same page, and sends it nothing", async () => {
      const { address } = await signedUp();
      const unknown = email();
      const ip = fromNewIp();
      const known = await askReset(address, ip);
      const stranger = await askReset(unknown, ip);
      expect(stranger.status).toBe(known.status);
      const headers = (r: Response) => {
        const all: [string, string][] = [];
        r.headers.forEach((v, k) => void (k !== "x-request-id" && all.push([k, v])));
        return all;
      };
      expect(headers(stranger)).toEqual(headers(known));
      expect(await stranger.text()).toBe(await known.text());
      // With htmx too (the fragment that replaces the form).
      const knownHx = await new Browser(h).post("/forgot-password", { email: address }, { htmx: true, headers: fromNewIp() });
      const strangerHx = await new Browser(h).post("/forgot-password", { email: unknown }, { htmx: true, headers: fromNewIp() });
      const fragment = await strangerHx.text();
      expect(fragment).toStartWith('<section id="forgot-form"');
      expect(fragment).toBe(await knownHx.text());

      await send();
      expect(smtp.to(unknown)).toHaveLength(0);
      expect(await h.deps.db.select().from(emailOutbox).where(eq(emailOutbox.to, unknown))).toHaveLength(0);
      expect(mails(address, RESET_SUBJECT)).toHaveLength(2);
    });

    it(`throttles ${RESET_LIMITS.perEmailHour} requests an hour per address with a readable 429, the same whether it has an account or not`, async () => {
      const { address } = await signedUp();
      const unknown = email();
      for (const who of [address, unknown]) {
        for (let i = 0; i < RESET_LIMITS.perEmailHour; i++) expect((await askReset(who)).status).toBe(200);
        const blocked = await askReset(who);
        expect(blocked.status).toBe(429);
        const html = await blocked.text();
        expect(html).toContain("Too many password resets were asked for this address or from your network.");
        expect(html).toContain(`value="${who}"`);
      }
      await send();
      expect(mails(address, RESET_SUBJECT)).toHaveLength(RESET_LIMITS.perEmailHour);
      // The hour passes: the address may ask again.
      clock.advance(3_600_000);
      expect((await askReset(address)).status).toBe(200);
    });

    it(`throttles ${RESET_LIMITS.perIpHour} requests an hour per client address, whatever the addresses asked for`, async () => {
      const ip = fromNewIp();
      for (let i = 0; i < RESET_LIMITS.perIpHour; i++) expect((await askReset(email(), ip)).status).toBe(200);
      const blocked = await new Browser(h).post("/forgot-password", { email: email() }, { htmx: true, headers: ip });
      expect(blocked.status).toBe(429);
      expect(await blocked.text()).toStartWith('<form id="forgot-form"');
      expect((await askReset(email(), fromNewIp())).status).toBe(200);
      clock.advance(3_600_000);
    });

    it("re-renders the form for a malformed address, beside the field", async () => {
      const res = await new Browser(h).post("/forgot-password", { email: "not-an-address" }, { htmx: true, headers: fromNewIp() });
      expect(res.status).toBe(422);
      expect(await res.text()).toMatch(/id="f-email-error"[^>]*>[^<]*not a valid email/);
    });

    it("refuses a reset request or a new password sent from another site (403), and changes nothing", async () => {
      const { address } = await signedUp();
      const cross = { "sec-fetch-site": "cross-site", ...fromNewIp() };
      const asked = await new Browser(h).post("/forgot-password", { email: address }, { headers: cross });
      expect(asked.status).toBe(403);
      await send();
      expect(mails(address, RESET_SUBJECT)).toHaveLength(0);

      await askReset(address);
      await send();
      const token = new URL(latestResetLink(address)).searchParams.get("token")!;
      const posted = await new Browser(h).post("/reset-password", { token, password: NEW_PASSWORD }, { headers: cross });
      expect(posted.status).toBe(403);
      expect(await posted.text()).toContain("This form was not sent from this site.");
      expect((await logIn(address, PASSWORD)).status).toBe(303);
    });

    it("refuses a weak new password beside the field, and the link still works", async () => {
      const { address } = await signedUp();
      await askReset(address);
      await send();
      const token = new URL(latestResetLink(address)).searchParams.get("token")!;
      for (const [password, message] of [
        ["short", "at least 12 characters"],
        ["qwerty123456", "commonly used"],
        [address, "must not be your email address"],
      ] as const) {
        const res = await new Browser(h).post("/reset-password", { token, password });
        expect(res.status).toBe(422);
        expect(res.headers.get("cache-control")).toBe("no-store");
        const html = await res.text();
        expect(html).toMatch(new RegExp(`id="f-password-error"[^>]*>[^<]*${message}`));
        expect(html).toContain(`name="token" value="${token}"`);
      }
      expect((await new Browser(h).post("/reset-password", { token, password: NEW_PASSWORD })).status).toBe(303);
    });

    it("answers a link with a token that was never issued with the page offering a new link", async () => {
      for (const token of ["", "short", randomBytes(32).toString("base64url"), `${"A".repeat(42)}<`]) {
        const res = await h.req(`/reset-password?token=${encodeURIComponent(token)}`);
        expect(res.status).toBe(400);
        expect(await res.text()).toContain("Ask for a new link");
      }
    });

    it("mails password_changed when the password is changed in Settings", async () => {
      const { b, address } = await signedUp();
      const res = await b.post("/portal/settings", { current: PASSWORD, next: NEW_PASSWORD });
      expect(res.status).toBe(200);
      await send();
      const told = mails(address, CHANGED_SUBJECT);
      expect(told).toHaveLength(1);
      expect(told[0]!.parsed.text).toContain(`${h.deps.config.publicUrl}/forgot-password`);
    });

    it("writes no reset token, nor any other mailed link's token, to a log line", async () => {
      await send();
      const tokens = smtp.received.flatMap((m: ReceivedMail) => [...(m.parsed.text ?? "").matchAll(/[?&]token=([A-Za-z0-9_-]{43})/g)].map((x) => x[1]!));
      expect(tokens.length).toBeGreaterThan(5);
      const logs = h.logs.join("\n");
      for (const t of tokens) expect(logs).not.toContain(t);
    });
  });
}

describe("reset views", () => {
  const hostile = `x"><script>alert(1)</script>@example.com`;

  it("escape what a visitor typed and the account's address", () => {
    for (const html of [
      String(ForgotPasswordPage({ email: hostile, message: hostile, errors: [{ field: "email", message: hostile }] })),
      String(ResetPasswordPage({ token: "t", email: hostile, message: hostile, errors: [{ field: "password", message: hostile }] })),
      String(LoginPage({ email: hostile, notice: hostile, message: hostile })),
    ]) {
      // Neither out of an attribute nor as markup in text.
      expect(html).not.toContain('"><script>');
      expect(html.replace(/value="[^"]*"/g, "")).not.toContain("<script>alert(1)</script>");
      expect(html).toContain("&lt;script&gt;");
    }
  });

  it("names no address on the answer to a reset request", () => {
    expect(String(ResetRequestedPage())).not.toContain("@");
  });
});
