import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { and, eq } from "drizzle-orm";
import { accounts } from "../../src/accounts/accounts.sql.ts";
import { logIn } from "../../src/accounts/login.ts";
import { createAccount } from "../../src/accounts/service.ts";
import { auditEvents } from "../../src/audit/audit.sql.ts";
import { cliActor } from "../../src/audit/service.ts";
import { emailOutbox, emailTokens } from "../../src/email/email.sql.ts";
import { accountMail, deliverMail } from "../../src/email/outbox.ts";
import { CHANGE_EMAIL_PER_HOUR, CHANGE_EMAIL_TTL_MS } from "../../src/email/preferences.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { EmailSection, MailSection } from "../../views/accounts/settings.tsx";
import { ConfirmEmailPage, UnsubscribePage } from "../../views/email/preferences.tsx";
import { backends, UNMETERED_PLANS } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { fails } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { email } from "../support/pages.ts";
import { linkIn, TestSmtpServer, type ReceivedMail } from "../support/smtp.ts";

const PASSWORD = "a long and unusual passphrase";

async function deliverAll(h: Harness): Promise<void> {
  for (let i = 0; i < 20; i++) if ((await deliverMail(h.deps)).attempted === 0) return;
  throw new Error("the outbox did not drain in 20 runs");
}

function lastTo(smtp: TestSmtpServer, address: string, subject: string): ReceivedMail {
  const found = smtp.to(address).filter((m) => m.parsed.subject === subject);
  if (!found.length) throw new Error(`no "${subject}" to ${address}; got: ${smtp.to(address).map((m) => m.parsed.subject).join(" | ")}`);
  return found[found.length - 1]!;
}

async function account(h: Harness, id: string) {
  const [row] = await h.deps.db.select().from(accounts).where(eq(accounts.id, id));
  return row!;
}

async function auditOf(h: Harness, accountId: string, action: string) {
  return h.deps.db
    .select()
    .from(auditEvents)
    .where(and(eq(auditEvents.accountId, accountId), eq(auditEvents.action, action)));
}

/** A browser signed in to a fresh account (made as the CLI makes one: verified, so no mail of its own). */
async function signedIn(h: Harness) {
  const address = email();
  const { id } = await createAccount(h.deps, { email: address, password: PASSWORD }, cliActor);
  const b = new Browser(h);
  const res = await b.post("/login", { email: address, password: PASSWORD });
  if (res.status !== 303) throw new Error(`log-in failed: ${res.status} ${await res.text()}`);
  await b.page("/portal/settings");
  return { b, address, id };
}

/** The confirmation link mailed to `to`, as a path on the app. */
async function changeLink(h: Harness, smtp: TestSmtpServer, to: string): Promise<string> {
  await deliverAll(h);
  const url = new URL(linkIn(lastTo(smtp, to, "Confirm your new email address for Keyport"), `${h.deps.config.publicUrl}/confirm-email?token=`));
  return url.pathname + url.search;
}

const tokenOf = (path: string) => new URL(path, "http://x").searchParams.get("token")!;

/** The first message over a transport pays for its TLS set-up and the code's first run: the set-up pays it, not a test. */
async function warmUp(h: Harness): Promise<void> {
  await h.deps.mailer.transport.send(h.deps.config.mailFrom, { to: "warm-up@example.com", subject: "warm-up", text: "warm-up", html: "<p>warm-up</p>", headers: {} }, "mail_warmup");
}

for (const backend of backends) {
  describe(`changing the email address [${backend.name}]`, () => {
    const clock = new ManualClock();
    const smtp = new TestSmtpServer();
    let h: Harness;
    beforeAll(async () => {
      await smtp.start();
      h = await startHarness(backend, { clock, config: { plansFile: UNMETERED_PLANS }, mailTransport: smtp.transport() });
      await warmUp(h);
    });
    afterAll(async () => {
      await h?.close();
      await smtp.stop();
    });

    it("mails a link to the new address, replaces the address once it is confirmed, verifies it and tells the old one", async () => {
      const { b, address, id } = await signedIn(h);
      const settings = await b.page("/portal/settings");
      expect(settings).toContain("Change email");
      expect(settings).toContain("(confirmed)");
      expect(settings).toContain(address);

      const next = email();
      const asked = await b.post("/portal/settings/email", { email: next, password: PASSWORD });
      expect(asked.status).toBe(200);
      const html = await asked.text();
      expect(html).toContain("Link sent.");
      expect(html).toContain(next);
      expect((await account(h, id)).email).toBe(address);
      expect((await auditOf(h, id, "account.email_change_requested")).map((e) => e.changes)).toEqual([{ to: next }]);

      const link = await changeLink(h, smtp, next);
      const mail = lastTo(smtp, next, "Confirm your new email address for Keyport");
      expect(mail.parsed.text).toContain(address);
      const token = tokenOf(link);
      const [stored] = await h.deps.db.select().from(emailTokens).where(and(eq(emailTokens.accountId, id), eq(emailTokens.purpose, "change_email")));
      expect(stored!.tokenHash).toBe(new Bun.CryptoHasher("sha256").update(token).digest("hex"));
      expect(stored!.email).toBe(next);
      const sent = (await accountMail(h.deps.db, id)).find((m) => m.kind === "change_email")!;
      expect(sent.secretSealed).toBeNull();
      expect(JSON.stringify(sent)).not.toContain(token);

      // Another browser, signed out: the link alone is the authority. Opening it changes nothing.
      const visitor = new Browser(h);
      const page = await visitor.get(link);
      expect(page.status).toBe(200);
      expect(page.headers.get("cache-control")).toBe("no-store");
      const confirm = await page.text();
      expect(confirm).toContain(next);
      expect(confirm).toContain('<form method="post" action="/confirm-email">');
      expect(confirm).toContain(`name="token" value="${token}"`);
      expect((await account(h, id)).email).toBe(address);

      const done = await visitor.post("/confirm-email", { token });
      expect(done.status).toBe(200);
      expect(await done.text()).toContain("The account now uses");
      const after = await account(h, id);
      expect(after.email).toBe(next);
      expect(after.emailVerifiedAt?.getTime()).toBe(clock.now());
      expect((await auditOf(h, id, "account.email_changed")).map((e) => e.changes)).toEqual([{ from: address, to: next }]);

      await deliverAll(h);
      const told = lastTo(smtp, address, "Your Keyport account's email address was changed");
      expect(told.parsed.text).toContain(`now uses ${next}`);

      for (const res of [await visitor.get(link), await visitor.post("/confirm-email", { token })]) {
        expect(res.status).toBe(404);
        expect(await res.text()).toContain("This link does not work");
      }
      expect((await logIn(h.deps, { email: next, password: PASSWORD }, {})).id).toBe(id);
      expect((await fails(logIn(h.deps, { email: address, password: PASSWORD }, {}))).code).toBe("invalid_credentials");
      expect(await b.page("/portal/settings")).toContain(next);
    });

    it("refuses a wrong password, an invalid address and the account's own beside the fields, mailing nothing", async () => {
      const { b, address, id } = await signedIn(h);
      const cases: [Record<string, string>, string, string][] = [
        [{ email: email(), password: "not the password at all" }, "password", "is not your current password"],
        [{ email: "nope", password: PASSWORD }, "email", "is not a valid email address"],
        [{ email: address.toUpperCase(), password: PASSWORD }, "email", "is already this account's address"],
      ];
      for (const [form, field, message] of cases) {
        const res = await b.post("/portal/settings/email", form);
        expect(res.status).toBe(422);
        expect(await res.text()).toMatch(new RegExp(`id="f-${field}-error"[^>]*>[^<]*${message.replace(/'/g, "(?:'|&#x27;|&#39;)")}`));
      }
      expect((await accountMail(h.deps.db, id)).filter((m) => m.kind === "change_email")).toHaveLength(0);
      expect((await account(h, id)).email).toBe(address);
    });

    it("refuses an address another account has: when asked (beside the field) and when the link is followed (409)", async () => {
      const { b, address, id } = await signedIn(h);
      const taken = await createAccount(h.deps, { email: email(), password: "correct horse battery" }, cliActor);
      const res = await b.post("/portal/settings/email", { email: taken.email, password: PASSWORD });
      expect(res.status).toBe(422);
      expect(await res.text()).toMatch(/id="f-email-error"[^>]*>is already registered/);

      const next = email();
      expect((await b.post("/portal/settings/email", { email: next, password: PASSWORD })).status).toBe(200);
      const link = await changeLink(h, smtp, next);
      await createAccount(h.deps, { email: next, password: "correct horse battery" }, cliActor);
      const confirmed = await new Browser(h).post("/confirm-email", { token: tokenOf(link) });
      expect(confirmed.status).toBe(409);
      expect(await confirmed.text()).toContain("Address already in use");
      expect((await account(h, id)).email).toBe(address);
      expect(await auditOf(h, id, "account.email_changed")).toHaveLength(0);
      expect((await accountMail(h.deps.db, id)).filter((m) => m.kind === "email_changed")).toHaveLength(0);
    });

    it("ends a link when a newer one is asked for, and any link after 24 hours", async () => {
      const { b, address, id } = await signedIn(h);
      const first = email();
      await b.post("/portal/settings/email", { email: first, password: PASSWORD });
      const older = await changeLink(h, smtp, first);
      const second = email();
      await b.post("/portal/settings/email", { email: second, password: PASSWORD });
      const newer = await changeLink(h, smtp, second);
      expect((await new Browser(h).get(older)).status).toBe(404);
      expect((await new Browser(h).post("/confirm-email", { token: tokenOf(older) })).status).toBe(404);
      expect((await new Browser(h).get(newer)).status).toBe(200);

      clock.advance(CHANGE_EMAIL_TTL_MS + 60_000);
      expect((await new Browser(h).get(newer)).status).toBe(404);
      expect((await new Browser(h).post("/confirm-email", { token: tokenOf(newer) })).status).toBe(404);
      expect((await account(h, id)).email).toBe(address);
    });

    it("refuses the confirm form posted from another site, and the link still works", async () => {
      const { b, id } = await signedIn(h);
      const next = email();
      await b.post("/portal/settings/email", { email: next, password: PASSWORD });
      const token = tokenOf(await changeLink(h, smtp, next));
      const forged = await new Browser(h).post("/confirm-email", { token }, { headers: { "sec-fetch-site": "cross-site", origin: "https://evil.example" } });
      expect(forged.status).toBe(403);
      expect((await account(h, id)).email).not.toBe(next);
      expect((await new Browser(h).post("/confirm-email", { token })).status).toBe(200);
      expect((await account(h, id)).email).toBe(next);
    });

    it(`answers 429 after ${CHANGE_EMAIL_PER_HOUR} requests in an hour, wrong passwords counted, and mails nothing more`, async () => {
      const { b, id } = await signedIn(h);
      for (let i = 0; i < CHANGE_EMAIL_PER_HOUR; i++) expect((await b.post("/portal/settings/email", { email: email(), password: "wrong wrong wrong" })).status).toBe(422);
      const res = await b.post("/portal/settings/email", { email: email(), password: PASSWORD });
      expect(res.status).toBe(429);
      expect(await res.text()).toContain("Too many requests to change the address");
      expect((await accountMail(h.deps.db, id)).filter((m) => m.kind === "change_email")).toHaveLength(0);
      expect((await h.deps.db.select().from(emailOutbox).where(eq(emailOutbox.accountId, id))).every((m) => m.kind !== "change_email")).toBe(true);
    });
  });
}

describe("mail settings views", () => {
  const hostile = `"><script>alert(1)</script><img src=x onerror=alert(2)>`;
  /** The markup outside attribute values: a value that broke out of its quotes would show here. */
  const outsideAttributes = (html: string) => html.replace(/="[^"]*"/g, '=""');

  it("escapes the addresses and the submitted value on the Change email form", () => {
    const html = String(
      EmailSection({ current: `${hostile}@a.example`, verified: false, pending: { email: `${hostile}@b.example`, expiresAt: "2026-01-16T12:00:00.000Z" }, csrf: "c", email: hostile, errors: [{ field: "email", message: hostile }], message: hostile }),
    );
    expect(outsideAttributes(html)).not.toContain("<script>");
    expect(outsideAttributes(html)).not.toContain("<img");
    expect(html).toContain("&lt;script&gt;");
  });

  it("shows one box per category, unchecked when off, and security notices checked and disabled", () => {
    const html = String(MailSection({ optOut: ["keys"], csrf: hostile, notice: hostile }));
    expect(outsideAttributes(html)).not.toContain("<script>");
    expect(html).toMatch(/name="on" value="rotation" checked/);
    expect(html).toMatch(/name="on" value="keys"\s*\/?>/);
    expect(html).toMatch(/checked disabled[^>]*>\s*<span>Security notices/);
  });

  it("escapes what the unsubscribe and confirm pages show, and encodes the link's parameters in the form's action", () => {
    const unsubscribe = String(UnsubscribePage({ link: { a: hostile, c: "keys", t: `x"&y` }, what: hostile, state: "confirm" }));
    expect(outsideAttributes(unsubscribe)).not.toContain("<script>alert");
    expect(unsubscribe).toContain(`action="/email/unsubscribe?a=${encodeURIComponent(hostile)}&c=keys&t=${encodeURIComponent(`x"&y`)}"`);
    for (const state of ["confirm", "done"] as const) {
      const confirm = outsideAttributes(String(ConfirmEmailPage({ token: hostile, email: hostile, oldEmail: hostile, state })));
      expect(confirm).not.toContain("<script>alert");
      expect(confirm).not.toContain("<img");
    }
  });
});
