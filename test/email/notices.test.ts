import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { and, eq } from "drizzle-orm";
import { accounts } from "../../src/accounts/accounts.sql.ts";
import { createAccount, findAccountByEmail } from "../../src/accounts/service.ts";
import { auditEvents } from "../../src/audit/audit.sql.ts";
import { cliActor } from "../../src/audit/service.ts";
import { closeMonth } from "../../src/billing/service.ts";
import { emailOutbox } from "../../src/email/email.sql.ts";
import { unsubscribeUrl } from "../../src/email/messages.ts";
import { accountMail, deliverMail, type MailRun } from "../../src/email/outbox.ts";
import { setMailPreferences } from "../../src/email/preferences.ts";
import { revokeKey } from "../../src/keys/service.ts";
import { notifications } from "../../src/notify/notify.sql.ts";
import { emit, type NotificationInput } from "../../src/notify/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { emergencyRotation } from "../../src/rotation/service.ts";
import { backends, UNMETERED_PLANS } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { newAccount, newKey } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { email } from "../support/pages.ts";
import { TestSmtpServer, type ReceivedMail } from "../support/smtp.ts";

/** Sends whatever is due until nothing is, and what it did in all. */
async function deliverAll(h: Harness): Promise<MailRun> {
  const total: MailRun = { attempted: 0, sent: 0, skipped: 0, retrying: 0, failed: 0 };
  for (let i = 0; i < 20; i++) {
    const run = await deliverMail(h.deps);
    if (run.attempted === 0) return total;
    for (const k of Object.keys(total) as (keyof MailRun)[]) total[k] += run[k];
  }
  throw new Error("the outbox did not drain in 20 runs");
}

/** A header's value as the message carries it (unfolded), or undefined. */
function header(mail: ReceivedMail, name: string): string | undefined {
  const line = mail.parsed.headerLines.find((l) => l.key === name.toLowerCase())?.line;
  return line === undefined ? undefined : line.slice(line.indexOf(":") + 1).replace(/\r?\n[ \t]+/g, " ").trim();
}

/** The one-click URL of a notice's List-Unsubscribe header. */
function unsubscribeLinkOf(mail: ReceivedMail): URL {
  const value = header(mail, "List-Unsubscribe");
  const m = value ? /^<([^>]+)>$/.exec(value) : null;
  if (!m) throw new Error(`no List-Unsubscribe URL in ${value}`);
  return new URL(m[1]!);
}

/** The whole message as sent, with quoted-printable soft line breaks undone (a secret split by one is still found). */
const rawText = (mail: ReceivedMail) => mail.raw.replace(/=\r?\n/g, "");

/** The newest message to `address` whose subject is `subject`. */
function lastTo(smtp: TestSmtpServer, address: string, subject: string): ReceivedMail {
  const found = smtp.to(address).filter((m) => m.parsed.subject === subject);
  if (!found.length) throw new Error(`no "${subject}" to ${address}; got: ${smtp.to(address).map((m) => m.parsed.subject).join(" | ")}`);
  return found[found.length - 1]!;
}

async function optOutOf(h: Harness, accountId: string): Promise<string[]> {
  const [row] = await h.deps.db.select({ optOut: accounts.emailOptOut }).from(accounts).where(eq(accounts.id, accountId));
  return row!.optOut;
}

async function auditOf(h: Harness, accountId: string, action: string) {
  return h.deps.db
    .select()
    .from(auditEvents)
    .where(and(eq(auditEvents.accountId, accountId), eq(auditEvents.action, action)));
}

/** A one-click unsubscribe as a mail provider sends it (RFC 8058 §3.1): no cookie, no CSRF token, the fixed body. */
const oneClick = (h: Harness, url: URL, headers: Record<string, string> = {}) =>
  h.req(url.pathname + url.search, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", ...headers }, body: "List-Unsubscribe=One-Click" });

const notify = (h: Harness, n: NotificationInput) => h.deps.db.transaction((tx) => emit(tx, n, new Date(h.deps.clock.now())));

/** The first message over a transport pays for its TLS set-up and the code's first run: the set-up pays it, not a test. */
async function warmUp(h: Harness): Promise<void> {
  await h.deps.mailer.transport.send(h.deps.config.mailFrom, { to: "warm-up@example.com", subject: "warm-up", text: "warm-up", html: "<p>warm-up</p>", headers: {} }, "mail_warmup");
}

for (const backend of backends) {
  describe(`mail notices and one-click unsubscribe [${backend.name}]`, () => {
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

    it("mails a revoke to the account's address in the same transaction, the key masked and never its secret, with one-click List-Unsubscribe", async () => {
      const account = await newAccount(h);
      const { key, secret } = await newKey(h, account.id, { name: "billing worker" });
      await revokeKey(h.deps, account.id, key.id, cliActor);
      const queued = (await accountMail(h.deps.db, account.id)).filter((m) => m.kind === "notice:key.revoked");
      expect(queued).toHaveLength(1);
      expect(queued[0]!.to).toBe(account.email);
      const [n] = await h.deps.db.select().from(notifications).where(eq(notifications.id, String(queued[0]!.data.notificationId)));
      expect(n?.event).toBe("key.revoked");

      expect((await deliverAll(h)).sent).toBeGreaterThanOrEqual(1);
      const mail = lastTo(smtp, account.email, "A key was revoked");
      expect(mail.parsed.text).toContain(`The key "billing worker" (${key.display}) was revoked`);
      expect(key.display).toMatch(/^kp_live_[0-9A-Za-z]{4}…[0-9A-Za-z]{4}$/);
      for (const part of [rawText(mail), mail.parsed.text ?? "", String(mail.parsed.html)]) {
        expect(part).not.toContain(secret);
        // The secret's hidden middle, in case anything printed it in pieces.
        expect(part).not.toContain(secret.slice(12, 40));
      }
      const link = unsubscribeLinkOf(mail);
      expect(link.origin).toBe(h.deps.config.publicUrl);
      expect(link.pathname).toBe("/email/unsubscribe");
      expect(link.searchParams.get("a")).toBe(account.id);
      expect(link.searchParams.get("c")).toBe("keys");
      expect(header(mail, "List-Unsubscribe-Post")).toBe("List-Unsubscribe=One-Click");
      expect(mail.parsed.text).toContain(link.toString());
    });

    it("turns the category off at once on a one-click POST: a revoke already queued and the next one are skipped", async () => {
      const account = await newAccount(h);
      const [k1, k2, k3] = [await newKey(h, account.id), await newKey(h, account.id), await newKey(h, account.id)];
      await revokeKey(h.deps, account.id, k1.key.id, cliActor);
      await deliverAll(h);
      const link = unsubscribeLinkOf(lastTo(smtp, account.email, "A key was revoked"));

      await revokeKey(h.deps, account.id, k2.key.id, cliActor);
      const res = await oneClick(h, link);
      expect(res.status).toBe(200);
      expect(await res.text()).toContain("now off");
      expect(await optOutOf(h, account.id)).toEqual(["keys"]);
      const [event, ...more] = await auditOf(h, account.id, "account.mail_opted_out");
      expect(more).toHaveLength(0);
      expect(event!.actor).toBe("unsubscribe-link");
      expect(event!.changes).toEqual({ category: "keys" });

      await revokeKey(h.deps, account.id, k3.key.id, cliActor);
      const before = smtp.to(account.email).length;
      await deliverAll(h);
      expect(smtp.to(account.email)).toHaveLength(before);
      const rows = (await accountMail(h.deps.db, account.id)).filter((m) => m.kind === "notice:key.revoked");
      expect(rows.map((r) => r.status).sort()).toEqual(["sent", "skipped", "skipped"]);
    });

    it("answers a second one-click, even cross-site from a mail provider, with 200 and changes nothing more", async () => {
      const account = await newAccount(h);
      const link = new URL(unsubscribeUrl(h.deps.config, account.id, "usage"));
      expect((await oneClick(h, link)).status).toBe(200);
      const again = await oneClick(h, link, { origin: "https://mail.example.net", "sec-fetch-site": "cross-site" });
      expect(again.status).toBe(200);
      expect(await optOutOf(h, account.id)).toEqual(["usage"]);
      expect(await auditOf(h, account.id, "account.mail_opted_out")).toHaveLength(1);
    });

    it("still mails security notices with every category off: a leaked key, and a rotation started for a leak", async () => {
      const account = await newAccount(h);
      await setMailPreferences(h.deps, account.id, [], cliActor);
      expect(await optOutOf(h, account.id)).toEqual(["rotation", "keys", "usage", "billing"]);
      const leaked = await newKey(h, account.id, { name: "leaky" });
      const routine = await newKey(h, account.id, { name: "routine" });
      await notify(h, { accountId: account.id, event: "key.leaked", keyId: leaked.key.id, data: { location: "github.com/acme/app" } });
      const rotated = await emergencyRotation(h.deps, account.id, leaked.key.id, { reason: "leaked in a public gist" }, cliActor);
      await emergencyRotation(h.deps, account.id, routine.key.id, { reason: "yearly rotation" }, cliActor);
      await deliverAll(h);
      const rows = await accountMail(h.deps.db, account.id);
      expect(rows.map((r) => `${r.kind} ${r.status}`).sort()).toEqual(["notice:key.leaked sent", "notice:key.rotation_started sent", "notice:key.rotation_started skipped"]);

      const found = lastTo(smtp, account.email, "One of your keys was found in public");
      expect(found.parsed.text).toContain(leaked.key.display);
      expect(found.parsed.text).toContain("github.com/acme/app");
      const replaced = lastTo(smtp, account.email, "A leaked key is being replaced");
      expect(replaced.parsed.text).toContain("leaked in a public gist");
      for (const mail of [found, replaced]) {
        expect(header(mail, "List-Unsubscribe")).toBeUndefined();
        expect(header(mail, "List-Unsubscribe-Post")).toBeUndefined();
        for (const s of [leaked.secret, rotated.secret]) expect(rawText(mail)).not.toContain(s);
      }
      expect(smtp.to(account.email).filter((m) => m.parsed.subject === "A key rotation started")).toHaveLength(0);
    });

    it("refuses a tampered token, another category's and another account's with a readable 404, changing nothing", async () => {
      const account = await newAccount(h);
      const other = await newAccount(h);
      const good = new URL(unsubscribeUrl(h.deps.config, account.id, "keys"));
      const t = good.searchParams.get("t")!;
      const flipped = t.slice(0, -1) + (t.endsWith("A") ? "B" : "A");
      const variants: Record<string, string>[] = [
        { a: account.id, c: "keys", t: flipped },
        { a: account.id, c: "rotation", t },
        { a: other.id, c: "keys", t },
        { a: account.id, c: "security", t },
        { a: account.id, c: "keys", t: "" },
        { a: account.id, c: "keys" },
        {},
      ];
      for (const q of variants) {
        const url = new URL(`/email/unsubscribe?${new URLSearchParams(q).toString()}`, h.deps.config.publicUrl);
        for (const res of [await h.req(url.pathname + url.search), await oneClick(h, url)]) {
          expect(res.status).toBe(404);
          const html = await res.text();
          expect(html).toContain("This link does not work");
          expect(html).not.toContain("<form method=\"post\" action=\"/email/unsubscribe");
        }
      }
      expect(await optOutOf(h, account.id)).toEqual([]);
      expect(await optOutOf(h, other.id)).toEqual([]);
    });

    it("opens the link as a page whose button posts it, and changes nothing until then", async () => {
      const account = await newAccount(h);
      const link = new URL(unsubscribeUrl(h.deps.config, account.id, "billing"));
      const page = await h.req(link.pathname + link.search, { headers: { accept: "text/html" } });
      expect(page.status).toBe(200);
      const html = await page.text();
      expect(html).toContain("an invoice finalized");
      const action = /<form method="post" action="([^"]+)"/.exec(html)?.[1]?.replaceAll("&amp;", "&");
      expect(action).toBe(link.pathname + link.search);
      expect(html).toContain("Turn these notices off");
      expect(await optOutOf(h, account.id)).toEqual([]);

      expect((await oneClick(h, new URL(action!, h.deps.config.publicUrl))).status).toBe(200);
      expect(await optOutOf(h, account.id)).toEqual(["billing"]);
      const after = await (await h.req(link.pathname + link.search)).text();
      expect(after).toContain("already off");
      expect(after).not.toContain("Turn these notices off");
    });

    it("changes the categories from the Settings checkboxes, audited, with security notices shown as always on", async () => {
      const b = new Browser(h);
      const address = email();
      await b.signUp(address);
      const account = (await findAccountByEmail(h.deps, address))!;
      const page = await b.page("/portal/settings");
      for (const c of ["rotation", "keys", "usage", "billing"]) expect(page).toMatch(new RegExp(`name="on" value="${c}" checked`));
      expect(page).toMatch(/<input type="checkbox" checked disabled[^>]*>\s*<span>Security notices/);

      const saved = await b.post("/portal/settings/mail", { on: ["rotation", "usage", "billing"] });
      expect(saved.status).toBe(200);
      const html = await saved.text();
      expect(html).toContain("Mail preferences saved.");
      expect(html).toMatch(/name="on" value="keys"\s*\/?>/);
      expect(await optOutOf(h, account.id)).toEqual(["keys"]);
      const [off] = await auditOf(h, account.id, "account.mail_opted_out");
      expect(off!.actor).toBe(`account:${account.id}`);
      expect(off!.changes).toEqual({ category: "keys" });

      const { key } = await newKey(h, account.id);
      await revokeKey(h.deps, account.id, key.id, cliActor);
      await deliverAll(h);
      expect((await accountMail(h.deps.db, account.id)).filter((m) => m.kind === "notice:key.revoked").map((m) => m.status)).toEqual(["skipped"]);

      expect((await b.post("/portal/settings/mail", { on: ["rotation", "keys", "usage", "billing"] })).status).toBe(200);
      expect(await optOutOf(h, account.id)).toEqual([]);
      expect((await auditOf(h, account.id, "account.mail_opted_in")).map((e) => e.changes)).toEqual([{ category: "keys" }]);

      const forged = await b.post("/portal/settings/mail", { on: [] }, { csrf: null });
      expect(forged.status).toBe(403);
      expect(await optOutOf(h, account.id)).toEqual([]);
    });

    it("renders plan.usage_80 as readable text, with its own unsubscribe link", async () => {
      const account = await newAccount(h);
      await notify(h, { accountId: account.id, event: "plan.usage_80", data: { used: 400, included: 500, month: "2026-01", plan: "free" } });
      await deliverAll(h);
      const mail = lastTo(smtp, account.email, "80 % of your plan's calls are used");
      expect(mail.parsed.text).toContain("This month (2026-01) your account has made 400 of the 500 calls its plan (free) includes.");
      expect(mail.parsed.text).toContain(`${h.deps.config.publicUrl}/portal/billing`);
      expect(mail.parsed.text).not.toMatch(/undefined|NaN|\[object/);
      expect(unsubscribeLinkOf(mail).searchParams.get("c")).toBe("usage");
    });
  });

  // A database of its own: closing the month invoices (and mails) every account in it.
  describe(`mail notice of a finalized invoice [${backend.name}]`, () => {
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

    it("mails invoice.finalized from closing the month as readable text", async () => {
      const account = await createAccount(h.deps, { email: email(), password: "correct horse battery" }, cliActor);
      clock.set(Date.UTC(2026, 1, 1, 1, 0, 0));
      await closeMonth(h.deps, "2026-01");
      await deliverAll(h);
      const [row] = await h.deps.db.select().from(emailOutbox).where(and(eq(emailOutbox.accountId, account.id), eq(emailOutbox.kind, "notice:invoice.finalized")));
      expect(row?.status).toBe("sent");
      const mail = smtp.to(account.email).find((m) => m.parsed.subject?.startsWith("Invoice KP-202601-"));
      expect(mail?.parsed.subject).toMatch(/^Invoice KP-202601-\d{6} for 2026-01$/);
      expect(mail!.parsed.text).toMatch(/Your invoice KP-202601-\d{6} for 2026-01 is final: \$0\.00 for 0 calls\./);
      expect(mail!.parsed.text).toMatch(new RegExp(`${h.deps.config.publicUrl}/portal/billing/invoices/inv_\\w+`));
      expect(mail!.parsed.text).not.toMatch(/undefined|NaN|\[object/);
      expect(unsubscribeLinkOf(mail!).searchParams.get("c")).toBe("billing");
    });
  });
}
