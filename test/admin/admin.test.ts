import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { and, eq } from "drizzle-orm";
import { createAccount, findAccountByEmail } from "../../src/accounts/service.ts";
import { auditEvents } from "../../src/audit/audit.sql.ts";
import { cliActor } from "../../src/audit/service.ts";
import { changePlan, closeMonth, currentPlan, listInvoices } from "../../src/billing/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { bearer, newKey, problem } from "../support/fixtures.ts";
import { email } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { revokeKey } from "../../src/keys/service.ts";

const HOSTILE = "<img src=x onerror=alert(1)>";
const ESCAPED = "&lt;img src=x onerror=alert(1)&gt;";
const JANUARY = Date.UTC(2026, 0, 1);
const MID_JANUARY = Date.UTC(2026, 0, 15, 12);
const OPERATOR_PASSWORD = "operator passphrase 1";

/** A page's words: tags as spaces, whitespace collapsed, quotes and ampersands unescaped (never < or >). */
const text = (html: string) =>
  html
    .replace(/<[^>]+>/g, " ")
    .replace(/\s+/g, " ")
    .replace(/&#x27;|&#39;/g, "'")
    .replace(/&#34;|&quot;/g, '"')
    .replace(/&amp;/g, "&");

/** Every operator page, as GET addresses. */
const ADMIN_PAGES = (accountId: string) => [
  "/admin/accounts",
  "/admin/accounts?q=example",
  `/admin/accounts/${accountId}`,
  "/admin/plans",
  "/admin/invoices",
  "/admin/invoices?month=2026-01",
  "/admin/invoices.csv?month=2026-01",
  "/admin/usage",
  "/admin/compliance",
  "/admin/compliance.csv",
];

for (const backend of backends) {
  describe(`operator pages [${backend.name}]`, () => {
    const clock = new ManualClock(JANUARY);
    let h: Harness;
    let op: Browser;
    let opId: string;

    /** A browser signed up on a fresh account, and that account's id. */
    async function user(address = email()): Promise<{ b: Browser; accountId: string; address: string }> {
      const b = new Browser(h);
      await b.signUp(address);
      return { b, accountId: (await findAccountByEmail(h.deps, address))!.id, address };
    }

    /** The operator signed in again (the clock may have jumped past the session's life). */
    async function operatorBrowser(): Promise<Browser> {
      const b = new Browser(h);
      const address = (await h.deps.db.query.accounts.findFirst({ where: (a, { eq }) => eq(a.id, opId) }))!.email;
      const res = await b.post("/login", { email: address, password: OPERATOR_PASSWORD });
      if (res.status !== 303) throw new Error(`operator login: ${res.status}`);
      await b.page("/admin/accounts");
      return b;
    }

    /** The account's audit events of one action: who did it. */
    async function actorsOf(accountId: string, action: string): Promise<string[]> {
      const rows = await h.deps.db
        .select({ actor: auditEvents.actor })
        .from(auditEvents)
        .where(and(eq(auditEvents.accountId, accountId), eq(auditEvents.action, action)));
      return rows.map((r) => r.actor);
    }

    beforeAll(async () => {
      h = await startHarness(backend, { clock });
      // The first account of a database is an operator.
      const opAccount = await createAccount(h.deps, { email: `op-${randomBytes(3).toString("hex")}@example.com`, password: OPERATOR_PASSWORD }, cliActor);
      opId = opAccount.id;
      op = await operatorBrowser();
    });
    afterAll(() => h.close());

    it("shows every /admin page to an operator, with the operator's links, and the 404 page to everyone else", async () => {
      clock.set(JANUARY);
      const { b, accountId } = await user();
      for (const path of ADMIN_PAGES(accountId)) {
        const shown = await op.get(path);
        expect({ path, status: shown.status }).toEqual({ path, status: 200 });
        const denied = await b.get(path);
        expect({ path, status: denied.status }).toEqual({ path, status: 404 });
        expect(await denied.text()).toContain("There is no such page");
      }
      const home = await op.page("/admin/accounts");
      expect(home).toContain('<a href="/admin/accounts" aria-current="page">Operator</a>');
      for (const link of ["/admin/plans", "/admin/invoices", "/admin/usage", "/admin/compliance"]) expect(home).toContain(`href="${link}"`);
      // Only operators see the header's link.
      expect(await b.page("/portal")).not.toContain('href="/admin/accounts"');
      expect((await op.get("/admin/accounts/acct_none")).status).toBe(404);
    });

    it("lists accounts by email search, 50 a page, with plan, active keys, calls this month, last activity and status", async () => {
      clock.set(JANUARY);
      const marker = `crowd${randomBytes(3).toString("hex")}`;
      for (let i = 0; i < 54; i++) await createAccount(h.deps, { email: `${marker}-${String(i).padStart(2, "0")}@example.com`, password: "correct horse battery" }, cliActor);
      const { accountId } = await user(`${marker}-zz@example.com`);
      const [a, b2, revoked] = [await newKey(h, accountId, { name: "a" }), await newKey(h, accountId, { name: "b" }), await newKey(h, accountId, { name: "c" })];
      await revokeKey(h.deps, accountId, revoked.key.id, cliActor);
      await changePlan(h.deps, accountId, "starter", cliActor);
      clock.set(MID_JANUARY);
      h.deps.meter.record(a.key.id, accountId, "live", "GET /v1/email/:address", 200, 2, 40);
      h.deps.meter.record(b2.key.id, accountId, "live", "GET /v1/ip/:address", 200, 2, 2);
      h.deps.meter.record(b2.key.id, accountId, "live", "GET /v1/ip/:address", 429, 2, 5);
      const sandbox = await newKey(h, accountId, { name: "t", environment: "test" });
      h.deps.meter.record(sandbox.key.id, accountId, "test", "GET /v1/ip/:address", 200, 2, 7);
      await h.deps.meter.flush();
      op = await operatorBrowser();

      const first = await op.page(`/admin/accounts?q=${marker.toUpperCase()}`);
      expect(text(first)).toContain("55 matching");
      expect(first.match(/href="\/admin\/accounts\/acct_/g)?.length).toBe(50);
      expect(first).toContain(`href="/admin/accounts?q=${marker.toUpperCase()}&page=2"`);
      const second = await op.page(`/admin/accounts?q=${marker}&page=2`);
      expect(second.match(/href="\/admin\/accounts\/acct_/g)?.length).toBe(5);
      // One row: email, Starter, 3 active keys (the test key too; the revoked one not), 42 live successes, last activity today, active.
      expect(text(await op.page(`/admin/accounts?q=${marker}-zz`))).toContain(`${marker}-zz@example.com Starter 3 42 2026-01-15 12:00 UTC active`);
      // A search metacharacter is taken literally.
      expect(text(await op.page("/admin/accounts?q=%25"))).toContain("0 matching");
    });

    it("suspends an account with a reason (required), the keys refused and the users told; unsuspends; both audited with the operator as actor", async () => {
      clock.set(MID_JANUARY);
      op = await operatorBrowser();
      const { b, accountId, address } = await user();
      const { secret } = await newKey(h, accountId, { name: HOSTILE });
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(secret) })).status).toBe(200);

      const refused = await op.post(`/admin/accounts/${accountId}/suspend`, { reason: "  " });
      expect(refused.status).toBe(422);
      expect(text(await refused.text())).toContain("is required: the account's users are shown it");
      expect((await findAccountByEmail(h.deps, address))!.suspendedAt).toBeNull();

      const done = await op.post(`/admin/accounts/${accountId}/suspend`, { reason: `Chargeback ${HOSTILE}` });
      expect(done.status).toBe(303);
      expect(done.headers.get("location")).toBe(`/admin/accounts/${accountId}?done=suspended`);
      const page = await op.page(`/admin/accounts/${accountId}?done=suspended`);
      expect(page).toContain(`Chargeback ${ESCAPED}`);
      // The key's hostile name, in the keys table and the audit sentences.
      expect(page).toContain(ESCAPED);
      expect(page).not.toContain(HOSTILE);
      expect(text(page)).toContain("Suspended: the account's keys answer 403 account_suspended");
      const answer = await h.req("/v1/email/a@example.com", { headers: bearer(secret) });
      expect(answer.status).toBe(403);
      expect((await problem(answer)).code).toBe("account_suspended");
      expect(await actorsOf(accountId, "account.suspended")).toEqual([`account:${opId}`]);
      const seen = await b.page("/portal");
      expect(seen).toContain(`Reason: Chargeback ${ESCAPED}`);
      const list = await op.page(`/admin/accounts?q=${encodeURIComponent(address)}`);
      expect(list).toContain('<span class="badge badge-suspended">');

      const lifted = await op.post(`/admin/accounts/${accountId}/unsuspend`, {});
      expect(lifted.headers.get("location")).toBe(`/admin/accounts/${accountId}?done=unsuspended`);
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(secret) })).status).toBe(200);
      expect(await actorsOf(accountId, "account.unsuspended")).toEqual([`account:${opId}`]);
      // The account's own audit log names the operator.
      const audit = text(await b.page("/portal/audit"));
      const operatorEmail = (await h.deps.db.query.accounts.findFirst({ where: (a, { eq }) => eq(a.id, opId) }))!.email;
      expect(audit).toContain(`Account suspended: “Chargeback`);
      expect(audit).toContain("Suspension lifted");
      expect(audit).toContain(operatorEmail);
      expect((await op.post("/admin/accounts/acct_none/suspend", { reason: "x" })).status).toBe(404);
    });

    it("changes an account's plan by the same rules (an upgrade at once, a downgrade scheduled), audited with the operator as actor", async () => {
      clock.set(MID_JANUARY);
      op = await operatorBrowser();
      const { accountId } = await user();
      const up = await op.post(`/admin/accounts/${accountId}/plan`, { plan: "enterprise" });
      expect(up.headers.get("location")).toBe(`/admin/accounts/${accountId}?done=upgrade`);
      expect((await currentPlan(h.deps, accountId)).plan.id).toBe("enterprise");
      const down = await op.post(`/admin/accounts/${accountId}/plan`, { plan: "starter" });
      expect(down.headers.get("location")).toBe(`/admin/accounts/${accountId}?done=downgrade`);
      const page = text(await op.page(`/admin/accounts/${accountId}?done=downgrade`));
      expect(page).toContain("Scheduled: the account moves to Starter on 2026-02-01");
      expect(page).toContain("Changes to Starter on 2026-02-01 00:00 UTC");
      expect(page).toContain("Plan changed from Free to Enterprise, at once");
      expect(page).toContain("Plan change from Enterprise to Starter scheduled for 2026-02-01 00:00 UTC");
      expect(await actorsOf(accountId, "plan.changed")).toEqual([`account:${opId}`]);
      expect(await actorsOf(accountId, "plan.scheduled")).toEqual([`account:${opId}`]);
      const bad = await op.post(`/admin/accounts/${accountId}/plan`, { plan: "platinum" });
      expect(bad.status).toBe(422);
      expect(text(await bad.text())).toContain("is not a plan; choose free, starter, enterprise");

      const plans = text(await op.page("/admin/plans"));
      expect(plans).toMatch(/Enterprise enterprise \$299\.00 100,000 \$1\.50 per started 1,000 100 [1-9]\d* 0/);
      expect(plans).toMatch(/Starter starter \$49\.00 10,000 \$3\.00 per started 1,000 20 \d+ [1-9]\d*/);
    });

    it("lists a month's invoices, marks them paid and void (audited with the operator as actor), refuses a second void, and exports CSV", async () => {
      clock.set(JANUARY);
      const { accountId, address } = await user();
      const live = await newKey(h, accountId);
      await changePlan(h.deps, accountId, "starter", cliActor);
      clock.set(MID_JANUARY);
      h.deps.meter.record(live.key.id, accountId, "live", "GET /v1/email/:address", 200, 2, 10_001);
      await h.deps.meter.flush();
      clock.set(Date.UTC(2026, 1, 1, 2));
      await closeMonth(h.deps, "2026-01");
      op = await operatorBrowser();
      const [invoice] = await listInvoices(h.deps, accountId);
      expect(invoice).toMatchObject({ month: "2026-01", totalCents: 5200, status: "open" });

      // The last month closed is the default.
      const page = await op.page("/admin/invoices");
      expect(page).toContain("Invoices, 2026-01");
      expect(text(page)).toContain(`${invoice!.number} ${address} 10,001 10,000 $52.00 open Mark paid Void`);

      const paid = await op.post(`/admin/invoices/${invoice!.id}/status`, { status: "paid" });
      expect(paid.headers.get("location")).toBe(`/admin/invoices?month=2026-01&updated=${invoice!.id}`);
      expect(text(await op.page(paid.headers.get("location")!))).toContain(`Invoice ${invoice!.number} is now paid.`);
      const voided = await op.post(`/admin/invoices/${invoice!.id}/status`, { status: "void" });
      expect(voided.status).toBe(303);
      const again = await op.post(`/admin/invoices/${invoice!.id}/status`, { status: "void" });
      expect(again.status).toBe(422);
      expect(text(await again.text())).toContain("cannot change: the invoice is void");
      expect((await op.post("/admin/invoices/inv_none/status", { status: "paid" })).status).toBe(404);
      expect(await actorsOf(accountId, "invoice.paid")).toEqual([`account:${opId}`]);
      expect(await actorsOf(accountId, "invoice.voided")).toEqual([`account:${opId}`]);
      const account = text(await op.page(`/admin/accounts/${accountId}`));
      expect(account).toContain(`Invoice ${invoice!.number} marked paid`);
      expect(account).toContain(`Invoice ${invoice!.number} voided (it had been marked paid)`);

      const csv = await op.get("/admin/invoices.csv?month=2026-01");
      expect(csv.headers.get("content-type")).toContain("text/csv");
      const lines = (await csv.text()).trim().split("\n");
      expect(lines[0]).toBe("number,account,email,month,status,calls,included_calls,total_cents,currency,finalized_at");
      expect(lines).toContain(`${invoice!.number},${accountId},${address},2026-01,void,10001,10000,5200,USD,2026-02-01T02:00:00.000Z`);
      expect((await op.get("/admin/invoices.csv?month=2026-13")).status).toBe(400);
      const wrongMonth = await op.get(`/admin/invoices?month=${encodeURIComponent(HOSTILE)}`);
      expect(wrongMonth.status).toBe(422);
      expect(await wrongMonth.text()).not.toContain(HOSTILE);
    });

    it("shows global usage, live and test apart over 30 days, and the compliance summary", async () => {
      clock.set(MID_JANUARY);
      op = await operatorBrowser();
      const { accountId } = await user();
      const live = await newKey(h, accountId);
      const test = await newKey(h, accountId, { environment: "test" });
      const before = await h.deps.db.query.keyUsage.findMany();
      const sum = (env: string) => before.filter((r) => r.environment === env && r.day >= "2025-12-17").reduce((n, r) => n + r.successes + r.errors, 0);
      const [liveBefore, testBefore] = [sum("live"), sum("test")];
      h.deps.meter.record(live.key.id, accountId, "live", "GET /v1/email/:address", 200, 2, 11);
      h.deps.meter.record(test.key.id, accountId, "test", "GET /v1/email/:address", 200, 2, 4);
      await h.deps.meter.flush();
      const page = await op.page("/admin/usage");
      const words = text(page);
      expect(words).toContain(`Live keys: ${(liveBefore + 11).toLocaleString("en-US")} requests`);
      expect(words).toContain(`Test keys: ${(testBefore + 4).toLocaleString("en-US")} requests`);
      expect(page.match(/<svg /g)?.length).toBe(2);
      expect(words).toContain("Keys in use");
      expect(page).toContain('href="/admin/compliance"');
    });
  });
}
