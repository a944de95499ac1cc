import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { and, asc, eq, gte, lte, sql } from "drizzle-orm";
import { cliActor, type Actor } from "../../src/audit/service.ts";
import { invoicesCsv } from "../../src/billing/csv.ts";
import { changePlan, closeMonth, draftInvoice, findInvoice, getInvoice, listInvoices, monthInvoices, runBillingSweep, setInvoiceStatus } from "../../src/billing/service.ts";
import { accounts, auditEvents, invoiceNumbers, invoices, keyUsage, notifications } from "../../src/db/schema.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { fails, newAccount, newKey } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const at = (iso: string) => Date.parse(iso);
const operator: Actor = { actor: "account:acct_operator" };

for (const backend of backends) {
  describe(`invoices [${backend.name}]`, () => {
    const clock = new ManualClock(at("2026-10-01T00:00:00Z"));
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    /** An account made at `created`, on `plan` from then (free needs no change). */
    const accountOn = async (plan: string, created: string) => {
      clock.set(at(created));
      const account = await newAccount(h);
      if (plan !== "free") await changePlan(h.deps, account.id, plan, cliActor);
      const { key } = await newKey(h, account.id, { name: "live" });
      return { account, key };
    };
    /** `n` live successes of the key on `day` (through the meter, as the gateway records them). */
    const calls = (a: { account: { id: string }; key: { id: string } }, day: string, n: number, endpoint = "GET /v1/ip/:address") => {
      clock.set(at(`${day}T12:00:00Z`));
      h.deps.meter.record(a.key.id, a.account.id, "live", endpoint, 200, 4, n);
    };
    const invoiceOf = async (accountId: string, month: string) => {
      const [row] = await h.deps.db
        .select()
        .from(invoices)
        .where(and(eq(invoices.accountId, accountId), eq(invoices.month, month)));
      return row;
    };
    const close = async (month: string, now: string) => {
      await h.deps.meter.flush();
      clock.set(at(now));
      return closeMonth(h.deps, month);
    };

    it("prices the worked checks end to end: starter 12,345 → 5,800 ¢, 10,000 → 4,900, 10,001 → 5,200, enterprise 250,001 → 52,550, free 500 → 0", async () => {
      const cases = [
        { plan: "starter", calls: 12_345, cents: 5_800 },
        { plan: "starter", calls: 10_000, cents: 4_900 },
        { plan: "starter", calls: 10_001, cents: 5_200 },
        { plan: "enterprise", calls: 250_001, cents: 52_550 },
        { plan: "free", calls: 500, cents: 0 },
      ];
      const made = [];
      for (const c of cases) made.push({ ...c, a: await accountOn(c.plan, "2027-03-20T00:00:00Z") });
      for (const m of made) {
        // Spread over days and endpoints: the invoice sums the rows.
        calls(m.a, "2027-04-01", Math.floor(m.calls / 3));
        calls(m.a, "2027-04-15", Math.floor(m.calls / 3), "GET /v1/email/:address");
        calls(m.a, "2027-04-30", m.calls - 2 * Math.floor(m.calls / 3), "POST /v1/batch");
      }
      await close("2027-04", "2027-05-01T01:00:00Z");
      for (const m of made) {
        const invoice = await invoiceOf(m.a.account.id, "2027-04");
        expect({ plan: m.plan, calls: invoice?.calls, total: invoice?.totalCents }).toEqual({ plan: m.plan, calls: m.calls, total: m.cents });
        expect(invoice!.lines.reduce((n, l) => n + l.amountCents, 0)).toBe(m.cents);
      }
    });

    it("splits a month with an upgrade on the 11th: free then starter, base 3,267 ¢, included 6,833", async () => {
      const a = await accountOn("free", "2027-03-25T00:00:00Z");
      calls(a, "2027-04-05", 400);
      clock.set(at("2027-04-11T00:00:00Z"));
      await changePlan(h.deps, a.account.id, "starter", cliActor);
      calls(a, "2027-04-20", 7_600);
      await close("2027-04", "2027-05-01T02:00:00Z");
      const invoice = await invoiceOf(a.account.id, "2027-04");
      expect(invoice).toMatchObject({ calls: 8_000, includedCalls: 6_833, totalCents: 3_267 + 2 * 300 });
      expect(invoice!.lines.map((l) => [l.kind, l.planId, l.amountCents])).toEqual([
        ["base", "free", 0],
        ["base", "starter", 3_267],
        ["overage", "starter", 600],
      ]);
    });

    it("prices a month whose downgrade was asked mid-month entirely on the old plan, and the next month on the new", async () => {
      const a = await accountOn("enterprise", "2027-05-20T00:00:00Z");
      clock.set(at("2027-06-14T15:00:00Z"));
      expect(await changePlan(h.deps, a.account.id, "starter", cliActor)).toEqual({ kind: "downgrade", effectiveAt: "2027-07-01T00:00:00.000Z" });
      calls(a, "2027-06-20", 101_000);
      await close("2027-06", "2027-07-01T01:00:00Z");
      calls(a, "2027-07-02", 11_000);
      await close("2027-07", "2027-08-01T01:00:00Z");
      const june = await invoiceOf(a.account.id, "2027-06");
      const july = await invoiceOf(a.account.id, "2027-07");
      expect(june!.lines.map((l) => [l.kind, l.planId, l.amountCents])).toEqual([
        ["base", "enterprise", 29_900],
        ["overage", "enterprise", 150],
      ]);
      expect(july!.lines.map((l) => [l.kind, l.planId, l.amountCents])).toEqual([
        ["base", "starter", 4_900],
        ["overage", "starter", 300],
      ]);
    });

    it("counts on the invoice exactly the account's live-key successes in the month's usage rows; test keys, errors and other months never", async () => {
      const a = await accountOn("starter", "2026-10-10T00:00:00Z");
      const second = (await newKey(h, a.account.id, { name: "second live" })).key;
      const test = (await newKey(h, a.account.id, { name: "test", environment: "test" })).key;
      const other = await accountOn("starter", "2026-10-10T00:00:00Z");
      let expected = 0;
      const days = ["2026-11-01", "2026-11-02", "2026-11-09", "2026-11-17", "2026-11-30"];
      const endpoints = ["GET /v1/ip/:address", "GET /v1/email/:address", "POST /v1/batch"];
      for (const [i, day] of days.entries()) {
        clock.set(at(`${day}T${String(i * 4).padStart(2, "0")}:30:00Z`));
        for (const [j, endpoint] of endpoints.entries()) {
          const n = 37 * (i + 1) + 11 * j;
          h.deps.meter.record(a.key.id, a.account.id, "live", endpoint, 200, 5, n);
          h.deps.meter.record(second.id, a.account.id, "live", endpoint, 201, 5, j + 1);
          expected += n + j + 1;
          // Not billed: errors, test keys, another account.
          h.deps.meter.record(a.key.id, a.account.id, "live", endpoint, 429, 1, 13);
          h.deps.meter.record(test.id, a.account.id, "test", endpoint, 200, 5, 1_000);
          h.deps.meter.record(other.key.id, other.account.id, "live", endpoint, 200, 5, 7);
        }
        await h.deps.meter.flush();
      }
      // The days around the month do not count.
      calls(a, "2026-10-31", 500);
      calls(a, "2026-12-01", 500);
      await h.deps.meter.flush();
      clock.set(at("2026-12-01T03:00:00Z"));
      expect((await draftInvoice(h.deps, a.account.id, "2026-11"))!.calls).toBe(expected);
      await closeMonth(h.deps, "2026-11");
      const invoice = await invoiceOf(a.account.id, "2026-11");
      const [rows] = await h.deps.db
        .select({ n: sql<string>`sum(${keyUsage.successes})` })
        .from(keyUsage)
        .where(and(eq(keyUsage.accountId, a.account.id), eq(keyUsage.environment, "live"), gte(keyUsage.day, "2026-11-01"), lte(keyUsage.day, "2026-11-30")));
      expect(invoice!.calls).toBe(expected);
      expect(invoice!.calls).toBe(Number(rows!.n));
      expect((await invoiceOf(other.account.id, "2026-11"))!.calls).toBe(7 * days.length * endpoints.length);
    });

    it("bills a month of test-key usage nothing: a free account's invoice has 0 calls", async () => {
      const a = await accountOn("free", "2027-08-10T00:00:00Z");
      const test = (await newKey(h, a.account.id, { environment: "test" })).key;
      clock.set(at("2027-09-03T00:00:00Z"));
      h.deps.meter.record(test.id, a.account.id, "test", "GET /v1/ip/:address", 200, 5, 10_000);
      const s = await accountOn("starter", "2027-08-10T00:00:00Z");
      const sTest = (await newKey(h, s.account.id, { environment: "test" })).key;
      clock.set(at("2027-09-04T00:00:00Z"));
      h.deps.meter.record(sTest.id, s.account.id, "test", "GET /v1/ip/:address", 200, 5, 50_000);
      await close("2027-09", "2027-10-01T01:00:00Z");
      expect(await invoiceOf(a.account.id, "2027-09")).toMatchObject({ calls: 0, totalCents: 0 });
      expect(await invoiceOf(s.account.id, "2027-09")).toMatchObject({ calls: 0, totalCents: 4_900 });
    });

    it("closes a month once: a second run (and two at once) makes nothing, numbers run from 000001 without gaps, one invoice.finalized each", async () => {
      const made = [await accountOn("starter", "2027-10-05T00:00:00Z"), await accountOn("free", "2027-10-06T00:00:00Z"), await accountOn("enterprise", "2027-11-30T23:00:00Z")];
      // Made after the month ended: no invoice for it.
      const late = await accountOn("starter", "2027-12-01T00:00:00Z");
      calls(made[0]!, "2027-11-12", 10_500);
      await h.deps.meter.flush();
      clock.set(at("2027-11-30T12:00:00Z"));
      const early = await fails(closeMonth(h.deps, "2027-11"));
      expect(early.errors).toEqual([{ field: "month", message: "has not ended yet (it ends 2027-12-01 00:00 UTC)" }]);
      clock.set(at("2027-12-01T00:20:00Z"));
      const [first, second] = await Promise.all([closeMonth(h.deps, "2027-11"), closeMonth(h.deps, "2027-11")]);
      const existed = (await h.deps.db.select({ id: accounts.id }).from(accounts).where(sql`${accounts.createdAt} < '2027-12-01T00:00:00Z'`)).length;
      expect(first!.created + second!.created).toBe(existed);
      const before = await h.deps.db.select().from(invoices).where(eq(invoices.month, "2027-11")).orderBy(asc(invoices.number));
      expect(before.length).toBe(existed);
      expect(before.map((i) => i.number)).toEqual(Array.from({ length: existed }, (_, i) => `KP-202711-${String(i + 1).padStart(6, "0")}`));
      expect(new Set(before.map((i) => i.accountId)).size).toBe(existed);
      expect(await invoiceOf(late.account.id, "2027-11")).toBeUndefined();
      expect(await invoiceOf(made[0]!.account.id, "2027-11")).toMatchObject({ status: "open", currency: "USD", calls: 10_500, totalCents: 5_200 });
      // The last hour of the month, on enterprise: 1/720 of its fee.
      expect(await invoiceOf(made[2]!.account.id, "2027-11")).toMatchObject({ totalCents: Math.round(29_900 / 720), includedCalls: Math.round(100_000 / 720) });

      clock.set(at("2027-12-02T00:00:00Z"));
      expect(await closeMonth(h.deps, "2027-11")).toEqual({ month: "2027-11", created: 0, existing: existed });
      expect(await h.deps.db.select().from(invoices).where(eq(invoices.month, "2027-11")).orderBy(asc(invoices.number))).toEqual(before);
      expect(await h.deps.db.select().from(invoiceNumbers).where(eq(invoiceNumbers.month, "2027-11"))).toEqual([{ month: "2027-11", last: existed }]);
      for (const m of made) {
        const finalized = (await h.deps.db.select().from(notifications).where(eq(notifications.accountId, m.account.id))).filter((n) => n.event === "invoice.finalized");
        const invoice = await invoiceOf(m.account.id, "2027-11");
        expect(finalized.map((n) => n.data)).toEqual([{ invoiceId: invoice!.id, number: invoice!.number, month: "2027-11", totalCents: invoice!.totalCents, currency: "USD", calls: invoice!.calls }]);
      }
    });

    it("lets an operator mark an invoice paid then void, or void at once, and refuses every other move", async () => {
      const a = await accountOn("starter", "2027-12-10T00:00:00Z");
      const b = await accountOn("starter", "2027-12-10T00:00:00Z");
      await close("2027-12", "2028-01-01T01:00:00Z");
      const ia = (await invoiceOf(a.account.id, "2027-12"))!;
      const ib = (await invoiceOf(b.account.id, "2027-12"))!;
      clock.set(at("2028-01-05T10:00:00Z"));
      expect(await setInvoiceStatus(h.deps, ia.id, "paid", operator)).toMatchObject({ status: "paid", paidAt: "2028-01-05T10:00:00.000Z", voidedAt: null });
      const again = await fails(setInvoiceStatus(h.deps, ia.id, "paid", operator));
      expect(again.code).toBe("invalid_request");
      expect(again.errors).toEqual([{ field: "status", message: 'must be "void" for a paid invoice' }]);
      clock.set(at("2028-01-06T10:00:00Z"));
      expect(await setInvoiceStatus(h.deps, ia.id, "void", operator)).toMatchObject({ status: "void", paidAt: "2028-01-05T10:00:00.000Z", voidedAt: "2028-01-06T10:00:00.000Z" });
      expect(await setInvoiceStatus(h.deps, ib.id, "void", operator)).toMatchObject({ status: "void" });
      for (const [id, status] of [
        [ia.id, "paid"],
        [ia.id, "void"],
        [ib.id, "paid"],
      ] as const) {
        const err = await fails(setInvoiceStatus(h.deps, id, status, operator));
        expect(err.code).toBe("invalid_request");
        expect(err.errors).toEqual([{ field: "status", message: "cannot change: the invoice is void" }]);
      }
      expect((await fails(setInvoiceStatus(h.deps, "inv_missing", "paid", operator))).code).toBe("not_found");
      const events = await h.deps.db.select().from(auditEvents).where(eq(auditEvents.accountId, a.account.id)).orderBy(asc(auditEvents.createdAt));
      expect(events.filter((e) => e.action.startsWith("invoice.")).map((e) => [e.action, e.actor, e.changes])).toEqual([
        ["invoice.finalized", "system", { invoiceId: ia.id, number: ia.number, month: "2027-12", totalCents: Math.round((4_900 * 22) / 31), currency: "USD", calls: 0 }],
        ["invoice.paid", operator.actor, { invoiceId: ia.id, number: ia.number, status: { from: "open", to: "paid" } }],
        ["invoice.voided", operator.actor, { invoiceId: ia.id, number: ia.number, status: { from: "paid", to: "void" } }],
      ]);
    });

    it("shows an account its own invoices only; another account's is not found", async () => {
      const a = await accountOn("starter", "2028-01-10T00:00:00Z");
      const b = await accountOn("free", "2028-01-10T00:00:00Z");
      await close("2028-01", "2028-02-01T01:00:00Z");
      await close("2028-02", "2028-03-01T01:00:00Z");
      const list = await listInvoices(h.deps, a.account.id);
      expect(list.map((i) => i.month)).toEqual(["2028-02", "2028-01"]);
      expect(await getInvoice(h.deps, a.account.id, list[0]!.id)).toEqual(list[0]!);
      const err = await fails(getInvoice(h.deps, b.account.id, list[0]!.id));
      expect(err.code).toBe("not_found");
      expect(err.detail).toBe("No such invoice.");
      expect(await findInvoice(h.deps, list[0]!.id)).toEqual({ ...list[0]!, email: a.account.email });
    });

    it("lists a month's invoices with emails for operators, and exports them as CSV (a header row even for none)", async () => {
      const a = await accountOn("enterprise", "2028-02-10T00:00:00Z");
      calls(a, "2028-03-03", 123_456);
      await close("2028-03", "2028-04-01T01:00:00Z");
      const list = await monthInvoices(h.deps, "2028-03");
      expect(list.map((i) => i.number)).toEqual(list.map((i) => i.number).sort());
      const mine = list.find((i) => i.accountId === a.account.id)!;
      expect(mine).toMatchObject({ email: a.account.email, calls: 123_456, totalCents: 29_900 + 24 * 150 });
      const csv = invoicesCsv(list).trimEnd().split("\n");
      expect(csv[0]).toBe("number,account,email,month,status,calls,included_calls,total_cents,currency,finalized_at");
      expect(csv.length).toBe(list.length + 1);
      expect(csv).toContain(`${mine.number},${a.account.id},${a.account.email},2028-03,open,123456,100000,33500,USD,2028-04-01T01:00:00.000Z`);
      expect(invoicesCsv(await monthInvoices(h.deps, "2025-01"))).toBe("number,account,email,month,status,calls,included_calls,total_cents,currency,finalized_at\n");
      expect((await fails(monthInvoices(h.deps, "2028-13"))).errors).toEqual([{ field: "month", message: "must be a month as YYYY-MM, e.g. 2026-11" }]);
    });

    it("sweeps: applies due downgrades, closes the previous month once the close delay has passed, and not while another instance holds the lock", async () => {
      const a = await accountOn("enterprise", "2028-04-10T00:00:00Z");
      clock.set(at("2028-05-15T00:00:00Z"));
      await changePlan(h.deps, a.account.id, "starter", cliActor);
      calls(a, "2028-05-31", 1_000);
      // Not flushed: the sweep flushes this instance's meter before closing.
      clock.set(at("2028-06-01T00:05:00Z"));
      let r = await runBillingSweep(h.deps);
      expect(r.applied).toBeGreaterThanOrEqual(1);
      expect(r.closed).toBeNull();
      expect((await h.deps.db.select({ planId: accounts.planId }).from(accounts).where(eq(accounts.id, a.account.id)))[0]!.planId).toBe("starter");
      clock.set(at("2028-06-01T00:30:00Z"));
      const held = await h.deps.state.tryLock("billing:close:2028-05", 60_000);
      expect(held).not.toBeNull();
      expect((await runBillingSweep(h.deps)).closed).toBeNull();
      await held!.release();
      r = await runBillingSweep(h.deps);
      expect(r.closed?.month).toBe("2028-05");
      expect(r.closed!.created).toBeGreaterThanOrEqual(1);
      expect(await invoiceOf(a.account.id, "2028-05")).toMatchObject({ calls: 1_000, totalCents: 29_900 });
      expect(await runBillingSweep(h.deps)).toEqual({ applied: 0, closed: null });
    });
  });
}
