import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findAccountByEmail, suspendAccount, unsuspendAccount } from "../../src/accounts/service.ts";
import { cliActor } from "../../src/audit/service.ts";
import { applyDuePlanChanges, changePlan, closeMonth, currentPlan, listInvoices } from "../../src/billing/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { newKey } from "../support/fixtures.ts";
import { email, signUpWithKey } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const HOSTILE = "<img src=x onerror=alert(1)>";
const ESCAPED = "&lt;img src=x onerror=alert(1)&gt;";
/** 15 January 2026, 12:00 UTC: the middle of a month. */
const MID_JANUARY = Date.UTC(2026, 0, 15, 12, 0, 0);
/** The month's first instant: an account made then has the whole month's included calls (one made later, its share). */
const JANUARY = Date.UTC(2026, 0, 1);
const EMAIL_ENDPOINT = "GET /v1/email/:address";

/** A browser signed up on a fresh account, and that account's id. */
async function signedUp(h: Harness): Promise<{ b: Browser; accountId: string; address: string }> {
  const b = new Browser(h);
  const address = email();
  await b.signUp(address);
  return { b, accountId: (await findAccountByEmail(h.deps, address))!.id, address };
}

/** `n` calls of `environment` counted for a key by the meter, and flushed into the usage rows. */
async function use(h: Harness, keyId: string, accountId: string, environment: "live" | "test", n: number, status = 200): Promise<void> {
  h.deps.meter.record(keyId, accountId, environment, EMAIL_ENDPOINT, status, 3, n);
  await h.deps.meter.flush();
}

/** A page's words: tags as spaces, whitespace collapsed, quotes and ampersands unescaped (never < or >). */
const text = (html: string) =>
  html
    .replace(/<[^>]+>/g, " ")
    .replace(/\s+/g, " ")
    .replace(/&#x27;|&#39;/g, "'")
    .replace(/&#34;|&quot;/g, '"')
    .replace(/&amp;/g, "&");

for (const backend of backends) {
  describe(`pricing and billing pages [${backend.name}]`, () => {
    const clock = new ManualClock(MID_JANUARY);
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    it("shows every plan with its figures and the billing rules on the public pricing page, signed out and signed in", async () => {
      const res = await h.req("/pricing", { headers: { accept: "text/html" } });
      expect(res.status).toBe(200);
      // Public: a cache may keep the signed-out page, never the account's (below).
      expect(res.headers.get("cache-control")).toBeNull();
      const page = await res.text();
      const words = text(page);
      for (const figure of ["Free", "Starter", "Enterprise", "$0.00", "$49.00", "$299.00", "500", "10,000", "100,000", "hard cap", "$3.00 per started 1,000", "$1.50 per started 1,000"]) {
        expect(words).toContain(figure);
      }
      // Requests per second, in the plans' order.
      expect(words).toMatch(/Requests per second \(all keys together\) 2 20 100/);
      expect(words).toContain("Email check");
      expect(words).toContain("IP lookup");
      for (const rule of [
        "applies at once",
        "split by the fraction of the month, in seconds",
        "the counter is not reset",
        "priced at the new plan's rate",
        "start of next month",
        "live keys",
        "one per item for a batch",
        "Test keys",
        "never billed",
      ]) {
        expect(words).toContain(rule);
      }
      expect(page).toContain('href="/signup"');
      // The signed-out navigation and the home page link to it.
      expect(await (await h.req("/")).text()).toContain('href="/pricing"');

      const { b } = await signedUp(h);
      expect((await b.get("/pricing")).headers.get("cache-control")).toBe("no-store");
      const signedIn = await b.page("/pricing");
      expect(signedIn).toContain("Log out");
      expect(signedIn).toContain('href="/portal/billing"');
      expect(signedIn).toMatch(/<th scope="col" aria-current="true"><span>Free<\/span><span class="badge badge-active">your plan<\/span><\/th>/);
    });

    it("shows this month's meter from the live calls in the usage rows, with the hard cap and the projection", async () => {
      clock.set(JANUARY);
      const { b, accountId } = await signedUp(h);
      clock.set(MID_JANUARY);
      const live = await newKey(h, accountId, { name: "live" });
      const test = await newKey(h, accountId, { name: "sandbox", environment: "test" });
      await use(h, live.key.id, accountId, "live", 120);
      await use(h, live.key.id, accountId, "live", 9, 500);
      await use(h, test.key.id, accountId, "test", 30);
      const page = await b.page("/portal/billing");
      const words = text(page);
      expect(page).toContain('<meter id="calls-meter" min="0" max="500"');
      expect(page).toContain('value="120"');
      expect(words).toContain("120 of 500 included calls (24 %)");
      expect(words).toContain("Hard cap: past 500 calls this month, calls with live keys answer 429 quota_exceeded");
      // 120 calls in 14.5 of January's 31 days: 256.6 at that pace.
      expect(words).toMatch(/Projected calls\s*257/);
      expect(words).toMatch(/Projected cost\s*\$0\.00/);
      expect(words).toContain("Plan: Free");
      expect(page).toContain('aria-current="page">Billing</a>');

      // Past the cap: said so.
      await use(h, live.key.id, accountId, "live", 380);
      expect(text(await b.page("/portal/billing"))).toContain("Hard cap reached");
    });

    it("previews an upgrade before confirming it, then applies it at once and audits it", async () => {
      clock.set(JANUARY);
      const { b, accountId, address } = await signedUp(h);
      clock.set(MID_JANUARY);
      const live = await newKey(h, accountId, { name: "live" });
      await use(h, live.key.id, accountId, "live", 12_000);
      const billing = await b.page("/portal/billing");
      expect(billing).toContain('action="/portal/billing/change"');
      expect(billing).toContain('hx-get="/portal/billing/change"');
      expect(text(billing)).toContain("An upgrade applies at once");

      // Without JavaScript: the preview page with a Confirm form; nothing changed yet.
      const previewRes = await b.get("/portal/billing/change?plan=starter");
      expect(previewRes.status).toBe(200);
      expect(previewRes.headers.get("vary")).toContain("HX-Request");
      const preview = await previewRes.text();
      const words = text(preview);
      expect(words).toContain("Upgrade to Starter");
      expect(words).toContain("split by the time (in seconds) spent on Free and on Starter");
      expect(words).toContain("Confirm: upgrade to Starter");
      expect(words).toContain("Takes effect at once.");
      expect(preview).toContain('<form method="post" action="/portal/billing/plan"');
      expect(preview).toContain('<input type="hidden" name="plan" value="starter"/>');
      expect(preview).toMatch(/<input type="radio" name="plan" value="starter" checked/);
      expect((await currentPlan(h.deps, accountId)).plan.id).toBe("free");

      // With htmx: the fragment alone.
      const fragment = await (await b.get("/portal/billing/change?plan=starter", { "hx-request": "true" })).text();
      expect(fragment).toStartWith('<div id="plan-preview"');
      expect(fragment).not.toContain("<html");

      const confirmed = await b.post("/portal/billing/plan", { plan: "starter" });
      expect(confirmed.status).toBe(303);
      expect(confirmed.headers.get("location")).toBe("/portal/billing?changed=upgrade");
      expect((await currentPlan(h.deps, accountId)).plan.id).toBe("starter");
      const after = text(await b.page("/portal/billing?changed=upgrade"));
      expect(after).toContain("Done: your plan is now Starter");
      expect(after).toContain("Plan: Starter");
      // 14.5 days of Free's 500 and 16.5 of Starter's 10,000: 5,556 included this month; the 12,000 calls still count.
      expect(after).toContain("12,000 of 5,556 included calls");
      expect(after).toContain("6,444 calls over the included ones so far, billed at $3.00 per started 1,000");

      const audit = text(await b.page("/portal/audit"));
      expect(audit).toContain("Plan changed from Free to Starter, at once");
      expect(audit).toContain(address);
    });

    it("schedules a downgrade for the start of next month, shows it as scheduled, and withdraws it", async () => {
      clock.set(MID_JANUARY);
      const { b, accountId } = await signedUp(h);
      await changePlan(h.deps, accountId, "enterprise", cliActor);
      const preview = text(await b.page("/portal/billing/change?plan=starter"));
      expect(preview).toContain("Downgrade to Starter");
      expect(preview).toContain("Takes effect 2026-02-01 00:00 UTC");
      expect(preview).toContain("scheduled for the start of next month");

      // An htmx confirm is told where to go.
      const confirmed = await b.post("/portal/billing/plan", { plan: "starter" }, { htmx: true });
      expect(confirmed.status).toBe(200);
      expect(confirmed.headers.get("hx-redirect")).toBe("/portal/billing?changed=downgrade");
      const now = await currentPlan(h.deps, accountId);
      expect(now.plan.id).toBe("enterprise");
      expect(now.scheduled).toMatchObject({ toPlan: { id: "starter" }, effectiveAt: "2026-02-01T00:00:00.000Z" });
      const billing = text(await b.page("/portal/billing?changed=downgrade"));
      expect(billing).toContain("Scheduled: your plan changes to Starter at the start of next month (2026-02-01)");
      expect(billing).toContain("Scheduled change: your plan changes from Enterprise to Starter on 2026-02-01 00:00 UTC");
      expect(billing).toContain("Plan: Enterprise");
      expect(text(await b.page("/portal/audit"))).toContain("Plan change from Enterprise to Starter scheduled for 2026-02-01 00:00 UTC");

      // Choosing the plan in force withdraws the scheduled change.
      expect(text(await b.page("/portal/billing/change?plan=enterprise"))).toContain("Stay on Enterprise");
      const kept = await b.post("/portal/billing/plan", { plan: "enterprise" });
      expect(kept.headers.get("location")).toBe("/portal/billing?changed=cancel");
      expect((await currentPlan(h.deps, accountId)).scheduled).toBeNull();
      expect(text(await b.page("/portal/billing"))).not.toContain("Scheduled change");
      expect(text(await b.page("/portal/audit"))).toContain("Scheduled plan change from Enterprise to Starter (for 2026-02-01 00:00 UTC) cancelled");
    });

    it("refuses an unknown plan beside the form (422), as a page and as a fragment, and changes nothing", async () => {
      clock.set(MID_JANUARY);
      const { b, accountId } = await signedUp(h);
      const page = await b.get("/portal/billing/change?plan=platinum");
      expect(page.status).toBe(422);
      expect(text(await page.text())).toContain("The plan is not a plan; choose free, starter, enterprise.");
      const fragment = await b.get(`/portal/billing/change?plan=${encodeURIComponent(HOSTILE)}`, { "hx-request": "true" });
      expect(fragment.status).toBe(422);
      const body = await fragment.text();
      expect(body).toStartWith('<div id="plan-preview"');
      expect(body).not.toContain("<img");
      const post = await b.post("/portal/billing/plan", { plan: "platinum" });
      expect(post.status).toBe(422);
      expect((await currentPlan(h.deps, accountId)).plan.id).toBe("free");
    });

    it("tells a suspended account's users why on every page, escaped, and still renders their key actions", async () => {
      clock.set(MID_JANUARY);
      const { b, id } = await signUpWithKey(h);
      const accountId = (await h.deps.db.query.apiKeys.findFirst({ where: (k, { eq }) => eq(k.id, id) }))!.accountId;
      await suspendAccount(h.deps, accountId, `Unpaid invoice ${HOSTILE}`, cliActor);
      for (const path of ["/portal", "/portal/keys", `/portal/keys/${id}`, "/portal/billing", "/portal/audit", "/portal/settings", "/portal/notifications", "/pricing"]) {
        const res = await b.get(path);
        expect(res.status).toBe(200);
        const page = await res.text();
        expect({ path, banner: page.includes("This account is suspended") }).toEqual({ path, banner: true });
        expect(page).toContain(`Reason: Unpaid invoice ${ESCAPED}`);
        expect(page).not.toContain(HOSTILE);
      }
      expect(await b.page("/portal/keys")).toContain('action="/portal/keys"');
      const key = await b.page(`/portal/keys/${id}`);
      expect(key).toContain(`action="/portal/keys/${id}/revoke"`);
      expect(key).toContain(`action="/portal/keys/${id}/roll"`);
      const audit = await b.page("/portal/audit");
      expect(audit).toContain(`Account suspended: “Unpaid invoice ${ESCAPED}”`);
      expect(audit).not.toContain(HOSTILE);

      await unsuspendAccount(h.deps, accountId, cliActor);
      expect(await b.page("/portal")).not.toContain("This account is suspended");
    });
  });

  describe(`invoices in the portal [${backend.name}]`, () => {
    const clock = new ManualClock(MID_JANUARY);
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    it("shows the account's invoice as a printable page and as CSV, and another account's as the 404 page", async () => {
      const { b, accountId, address } = await signedUp(h);
      const live = await newKey(h, accountId, { name: "live" });
      // The whole of February on Starter: upgraded at its first instant.
      clock.set(Date.UTC(2026, 1, 1));
      await changePlan(h.deps, accountId, "starter", cliActor);
      clock.set(Date.UTC(2026, 1, 10));
      await use(h, live.key.id, accountId, "live", 12_345);
      clock.set(Date.UTC(2026, 2, 1, 1));
      // The session lapsed in the idle weeks (30-day sliding expiry): log in again.
      expect((await b.post("/login", { email: address, password: "a long and unusual passphrase" })).status).toBe(303);
      await closeMonth(h.deps, "2026-02");
      const [invoice] = (await listInvoices(h.deps, accountId)).filter((i) => i.month === "2026-02");
      expect(invoice).toMatchObject({ calls: 12_345, totalCents: 5800, status: "open" });

      const billing = await b.page("/portal/billing");
      expect(billing).toContain(`href="/portal/billing/invoices/${invoice!.id}"`);
      expect(billing).toContain(`href="/portal/billing/invoices/${invoice!.id}.csv"`);
      expect(text(billing)).toContain(`${invoice!.number} 2026-02 12,345 $58.00 open`);

      const res = await b.get(`/portal/billing/invoices/${invoice!.id}`);
      expect(res.status).toBe(200);
      const page = text(await res.text());
      expect(invoice!.number).toMatch(/^KP-202602-\d{6}$/);
      expect(page).toContain(`Invoice ${invoice!.number}`);
      expect(page).toContain("Period 2026-02-01 – 2026-02-28 (UTC)");
      expect(page).toContain(`Billed to ${address}`);
      expect(page).toContain("Starter plan, February 2026 100 % of the month $49.00");
      expect(page).toContain("2,345 calls $9.00");
      expect(page).toContain("Total $58.00 USD");
      expect(page).toContain("Status open");

      const csv = await b.get(`/portal/billing/invoices/${invoice!.id}.csv`);
      expect(csv.headers.get("content-type")).toContain("text/csv");
      expect(csv.headers.get("content-disposition")).toContain(`${invoice!.number}.csv`);
      const lines = (await csv.text()).trim().split("\n");
      expect(lines[0]).toBe("number,month,status,line,plan,description,quantity,amount_cents,currency");
      expect(lines[1]).toBe(`${invoice!.number},2026-02,open,base,starter,"Starter plan, February 2026",2419200,4900,USD`);
      expect(lines[2]).toStartWith(`${invoice!.number},2026-02,open,overage,starter,`);
      expect(lines[2]).toEndWith(",2345,900,USD");
      expect(lines[3]).toBe(`${invoice!.number},2026-02,open,total,,"Total (12345 calls, 10000 included)",12345,5800,USD`);

      expect(text(await b.page("/portal/audit"))).toContain(`Invoice ${invoice!.number} for 2026-02 finalized: $58.00 for 12,345 calls`);

      const other = await signedUp(h);
      for (const path of [`/portal/billing/invoices/${invoice!.id}`, `/portal/billing/invoices/${invoice!.id}.csv`, "/portal/billing/invoices/inv_none", "/portal/billing/invoices/.csv"]) {
        const denied = await other.b.get(path);
        expect({ path, status: denied.status }).toEqual({ path, status: 404 });
        expect(await denied.text()).toContain("There is no such page, or it belongs to another account.");
      }
    });
  });

  describe(`a scheduled downgrade taking effect [${backend.name}]`, () => {
    const clock = new ManualClock(MID_JANUARY);
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    it("shows the new plan and says in the audit log that the scheduled downgrade took effect", async () => {
      const { b, accountId } = await signedUp(h);
      await changePlan(h.deps, accountId, "starter", cliActor);
      await b.post("/portal/billing/plan", { plan: "free" });
      clock.set(Date.UTC(2026, 1, 1, 0, 5));
      expect(await applyDuePlanChanges(h.deps)).toBeGreaterThanOrEqual(1);
      const billing = text(await b.page("/portal/billing"));
      expect(billing).toContain("Plan: Free");
      expect(billing).not.toContain("Scheduled change");
      expect(text(await b.page("/portal/audit"))).toContain("Plan changed from Starter to Free: the downgrade scheduled for 2026-02-01 00:00 UTC took effect");
    });
  });

  describe(`pricing from a plans file with hostile names [${backend.name}]`, () => {
    let h: Harness;
    beforeAll(async () => {
      const dir = mkdtempSync(join(tmpdir(), "kp-plans-"));
      const file = join(dir, "plans.json");
      writeFileSync(
        file,
        JSON.stringify({
          products: [{ id: "email", name: `Email ${HOSTILE}`, description: HOSTILE }],
          plans: [
            { id: "free", name: `Free ${HOSTILE}`, description: HOSTILE, priceCents: 0, includedCalls: 100, overageCentsPer1000: null, requestsPerSecond: 1 },
            { id: "pro", name: `Pro ${HOSTILE}`, description: HOSTILE, priceCents: 1234, includedCalls: 5000, overageCentsPer1000: 250, requestsPerSecond: 9 },
          ],
        }),
      );
      h = await startHarness(backend, { clock: new ManualClock(MID_JANUARY), config: { plansFile: file } });
    });
    afterAll(() => h.close());

    it("renders the plans file's text escaped on the pricing, billing and preview pages", async () => {
      const pricing = await (await h.req("/pricing")).text();
      expect(pricing).toContain(`Pro ${ESCAPED}`);
      expect(text(pricing)).toContain("$12.34");
      expect(text(pricing)).toContain("$2.50 per started 1,000");
      expect(pricing).not.toContain(HOSTILE);
      const { b } = await signedUp(h);
      for (const path of ["/portal/billing", "/portal/billing/change?plan=pro"]) {
        const page = await b.page(path);
        expect(page).toContain(ESCAPED);
        expect(page).not.toContain(HOSTILE);
      }
      const fragment = await (await b.get("/portal/billing/change?plan=pro", { "hx-request": "true" })).text();
      expect(fragment).toContain(`Upgrade to Pro ${ESCAPED}`);
      expect(fragment).not.toContain(HOSTILE);
    });
  });
}
