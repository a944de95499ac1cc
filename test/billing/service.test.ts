import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { and, asc, eq } from "drizzle-orm";
import { cliActor } from "../../src/audit/service.ts";
import { loadCatalog } from "../../src/billing/plans.ts";
import { monthEnd, monthSegments, monthStart, priceMonth, secondsInMonth, segmentSeconds, type Segment } from "../../src/billing/invoices.ts";
import { applyDuePlanChanges, changePlan, currentPlan, monthMeter, planAt, previewPlanChange } from "../../src/billing/service.ts";
import { accounts, auditEvents, planChanges } from "../../src/db/schema.ts";
import { hashKey } from "../../src/keys/format.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { fails, newAccount, newKey } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const catalog = loadCatalog(undefined);
const plans = catalog.byId;
const at = (iso: string) => Date.parse(iso);
const whole = (planId: string, month: string): Segment[] => [{ planId, from: monthStart(month), to: monthEnd(month) }];

describe("invoice arithmetic (priceMonth)", () => {
  it.each([
    ["starter", 12_345, 5_800],
    ["starter", 10_000, 4_900],
    ["starter", 10_001, 5_200],
    ["enterprise", 250_001, 52_550],
    ["free", 500, 0],
    ["free", 501, 0],
    ["starter", 0, 4_900],
    ["enterprise", 100_000, 29_900],
  ])("prices a whole month on %s at %d calls at %d ¢", (planId, calls, cents) => {
    const priced = priceMonth("2026-11", whole(planId, "2026-11"), calls, plans);
    expect(priced.totalCents).toBe(cents);
    expect(priced.lines.reduce((n, l) => n + l.amountCents, 0)).toBe(cents);
  });

  it("bills a whole month at exactly the plan's price and overage per started 1,000 at the plan's rate", () => {
    const priced = priceMonth("2026-11", whole("starter", "2026-11"), 12_345, plans);
    expect(priced).toMatchObject({ calls: 12_345, includedCalls: 10_000, overCalls: 2_345, baseCents: 4_900, overageCents: 900, totalCents: 5_800 });
    expect(priced.lines).toEqual([
      { kind: "base", planId: "starter", description: "Starter plan, November 2026", quantity: secondsInMonth("2026-11"), amountCents: 4_900 },
      { kind: "overage", planId: "starter", description: "Overage on Starter: 2,345 calls over 10,000 included, 3 × 1,000 started at $3.00 per 1,000", quantity: 2_345, amountCents: 900 },
    ]);
  });

  it("gives a hard-cap plan no overage line, however many calls", () => {
    const priced = priceMonth("2026-11", whole("free", "2026-11"), 5_000, plans);
    expect(priced.lines.map((l) => l.kind)).toEqual(["base"]);
    expect(priced).toMatchObject({ overCalls: 4_500, overageCents: 0, totalCents: 0 });
  });

  it("splits base fee and included calls by the seconds on each plan for an upgrade on the 11th of a 30-day month", () => {
    const segments = monthSegments("2026-11", at("2026-10-01T00:00:00Z"), [{ toPlan: "starter", effectiveAt: at("2026-11-11T00:00:00Z") }]);
    expect(segments).toEqual([
      { planId: "free", from: at("2026-11-01T00:00:00Z"), to: at("2026-11-11T00:00:00Z") },
      { planId: "starter", from: at("2026-11-11T00:00:00Z"), to: at("2026-12-01T00:00:00Z") },
    ]);
    const priced = priceMonth("2026-11", segments, 8_000, plans);
    expect(priced.lines.filter((l) => l.kind === "base").map((l) => l.amountCents)).toEqual([0, Math.round((4900 * 20) / 30)]);
    expect(Math.round((4900 * 20) / 30)).toBe(3267);
    expect(priced.includedCalls).toBe(Math.round((500 * 10) / 30 + (10_000 * 20) / 30));
    expect(priced.includedCalls).toBe(6833);
    // Overage at the plan in force at the month's end: 1,167 over → 2 × 300 ¢.
    expect(priced).toMatchObject({ baseCents: 3267, overCalls: 1_167, overageCents: 600, totalCents: 3867 });
    expect(priced.lines[1]!.description).toBe("Starter plan, 11 Nov 00:00 – 1 Dec 00:00 UTC (20 of 30 days)");
  });

  it("prices a month with a downgrade asked mid-month entirely on the old plan, and the next entirely on the new", () => {
    // Asked on 15 November: written effective at the start of December.
    const changes = [
      { toPlan: "enterprise", effectiveAt: at("2026-10-01T00:00:00Z") },
      { toPlan: "starter", effectiveAt: at("2026-12-01T00:00:00Z") },
    ];
    const nov = monthSegments("2026-11", at("2026-09-01T00:00:00Z"), changes);
    expect(nov).toEqual(whole("enterprise", "2026-11"));
    expect(priceMonth("2026-11", nov, 120_000, plans).totalCents).toBe(29_900 + 20 * 150);
    const dec = monthSegments("2026-12", at("2026-09-01T00:00:00Z"), changes);
    expect(dec).toEqual(whole("starter", "2026-12"));
    expect(priceMonth("2026-12", dec, 120_000, plans).totalCents).toBe(4_900 + 110 * 300);
  });

  it("bills an account made during the month from its creation, and none for a month before it", () => {
    const created = at("2026-11-16T00:00:00Z");
    expect(monthSegments("2026-10", created, [])).toEqual([]);
    const segments = monthSegments("2026-11", created, [{ toPlan: "starter", effectiveAt: created + 250 }]);
    // The quarter-second on free is within one second: it bills nothing and is left out.
    expect(segments).toEqual([{ planId: "starter", from: created + 250, to: monthEnd("2026-11") }]);
    expect(priceMonth("2026-11", segments, 0, plans)).toMatchObject({ baseCents: Math.round((4900 * 15) / 30), includedCalls: 5000 });
  });

  it("adds the segments of a month up to its seconds exactly, whatever milliseconds the changes were made at", () => {
    const changes = [
      { toPlan: "starter", effectiveAt: at("2026-02-03T10:11:12.999Z") },
      { toPlan: "enterprise", effectiveAt: at("2026-02-20T23:59:59.001Z") },
    ];
    const segments = monthSegments("2026-02", at("2026-01-01T00:00:00Z"), changes);
    expect(segments.map((s) => s.planId)).toEqual(["free", "starter", "enterprise"]);
    expect(segments.reduce((n, s) => n + segmentSeconds(s), 0)).toBe(28 * 86_400);
    const priced = priceMonth("2026-02", segments, 0, plans);
    expect(priced.lines.every((l) => Number.isInteger(l.amountCents))).toBe(true);
    // Priced at the end-of-month plan: enterprise's overage rate.
    expect(priceMonth("2026-02", segments, priced.includedCalls + 1, plans).overageCents).toBe(150);
  });

  it("counts February 2028's 29 days", () => {
    expect(secondsInMonth("2028-02")).toBe(29 * 86_400);
    expect(priceMonth("2028-02", whole("starter", "2028-02"), 0, plans).totalCents).toBe(4_900);
  });
});

for (const backend of backends) {
  describe(`plan changes [${backend.name}]`, () => {
    const clock = new ManualClock(at("2026-10-20T12:00:00Z"));
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    /** An account made on 20 October, so it exists all of November. */
    const october = async () => {
      clock.set(at("2026-10-20T12:00:00Z"));
      return newAccount(h);
    };
    const audit = async (accountId: string) =>
      (await h.deps.db.select().from(auditEvents).where(eq(auditEvents.accountId, accountId)).orderBy(asc(auditEvents.createdAt))).filter((e) => e.action.startsWith("plan.")).map((e) => ({ action: e.action, actor: e.actor, changes: e.changes }));
    const planRow = async (accountId: string) => (await h.deps.db.select({ planId: accounts.planId }).from(accounts).where(eq(accounts.id, accountId)))[0]!.planId;
    const live = (accountId: string, keyId: string, n: number) => h.deps.meter.record(keyId, accountId, "live", "GET /v1/ip/:address", 200, 3, n);

    it("puts a new account on free with nothing scheduled", async () => {
      const account = await october();
      expect(await currentPlan(h.deps, account.id)).toEqual({ plan: plans.get("free")!, scheduled: null });
      expect(await planRow(account.id)).toBe("free");
    });

    it("applies an upgrade at once: a change effective now, accounts.plan_id, audited, and the keys evicted from the cache", async () => {
      const account = await october();
      const { secret } = await newKey(h, account.id);
      const hash = hashKey(secret);
      await h.deps.keyCache.load(hash);
      expect(h.deps.keyCache.peek(hash)).toBeTruthy();
      clock.set(at("2026-11-11T00:00:00Z"));
      expect(await changePlan(h.deps, account.id, "starter", cliActor)).toEqual({ kind: "upgrade", effectiveAt: "2026-11-11T00:00:00.000Z" });
      expect(h.deps.keyCache.peek(hash)).toBeUndefined();
      expect(await planRow(account.id)).toBe("starter");
      const rows = await h.deps.db.select().from(planChanges).where(eq(planChanges.accountId, account.id));
      expect(rows).toMatchObject([{ fromPlan: "free", toPlan: "starter", effectiveAt: new Date("2026-11-11T00:00:00Z"), actor: "cli", cancelledAt: null }]);
      expect(await audit(account.id)).toEqual([{ action: "plan.changed", actor: "cli", changes: { plan: { from: "free", to: "starter" } } }]);
      expect((await currentPlan(h.deps, account.id)).plan.id).toBe("starter");
    });

    it("schedules a downgrade for the next month's start; the plan read from the changes turns then, before the sweep copies it", async () => {
      const account = await october();
      await changePlan(h.deps, account.id, "enterprise", cliActor);
      clock.set(at("2026-11-15T09:30:00Z"));
      expect(await changePlan(h.deps, account.id, "starter", cliActor)).toEqual({ kind: "downgrade", effectiveAt: "2026-12-01T00:00:00.000Z" });
      expect(await planRow(account.id)).toBe("enterprise");
      expect(await currentPlan(h.deps, account.id)).toEqual({ plan: plans.get("enterprise")!, scheduled: { toPlan: plans.get("starter")!, effectiveAt: "2026-12-01T00:00:00.000Z" } });
      expect((await audit(account.id)).at(-1)).toEqual({ action: "plan.scheduled", actor: "cli", changes: { plan: { from: "enterprise", to: "starter" }, effectiveAt: "2026-12-01T00:00:00.000Z" } });
      // Asking again changes nothing.
      expect(await changePlan(h.deps, account.id, "starter", cliActor)).toEqual({ kind: "downgrade", effectiveAt: "2026-12-01T00:00:00.000Z" });
      expect((await audit(account.id)).length).toBe(2);
      expect((await planAt(h.deps, account.id, at("2026-11-30T23:59:59Z"))).id).toBe("enterprise");
      expect((await planAt(h.deps, account.id, at("2026-12-01T00:00:00Z"))).id).toBe("starter");
    });

    it("cancels a scheduled downgrade when the current plan is chosen, then answers same", async () => {
      const account = await october();
      await changePlan(h.deps, account.id, "starter", cliActor);
      clock.set(at("2026-11-05T00:00:00Z"));
      await changePlan(h.deps, account.id, "free", cliActor);
      clock.set(at("2026-11-05T01:00:00Z"));
      expect(await changePlan(h.deps, account.id, "starter", cliActor)).toEqual({ kind: "cancel", effectiveAt: "2026-11-05T01:00:00.000Z" });
      expect((await currentPlan(h.deps, account.id)).scheduled).toBeNull();
      const [scheduled] = await h.deps.db.select().from(planChanges).where(and(eq(planChanges.accountId, account.id), eq(planChanges.toPlan, "free")));
      expect(scheduled!.cancelledAt).toEqual(new Date("2026-11-05T01:00:00Z"));
      expect((await audit(account.id)).at(-1)).toEqual({ action: "plan.cancelled", actor: "cli", changes: { plan: { from: "starter", to: "free" }, effectiveAt: "2026-12-01T00:00:00.000Z" } });
      expect(await changePlan(h.deps, account.id, "starter", cliActor)).toEqual({ kind: "same", effectiveAt: "2026-11-05T01:00:00.000Z" });
      expect((await audit(account.id)).length).toBe(3);
      clock.set(at("2026-12-02T00:00:00Z"));
      expect((await planAt(h.deps, account.id)).id).toBe("starter");
    });

    it("withdraws a scheduled downgrade when an upgrade applies", async () => {
      const account = await october();
      await changePlan(h.deps, account.id, "starter", cliActor);
      clock.set(at("2026-11-05T00:00:00Z"));
      await changePlan(h.deps, account.id, "free", cliActor);
      clock.set(at("2026-11-06T00:00:00Z"));
      expect((await changePlan(h.deps, account.id, "enterprise", cliActor)).kind).toBe("upgrade");
      expect(await currentPlan(h.deps, account.id)).toEqual({ plan: plans.get("enterprise")!, scheduled: null });
      expect((await audit(account.id)).at(-1)).toEqual({
        action: "plan.changed",
        actor: "cli",
        changes: { plan: { from: "starter", to: "enterprise" }, cancelledScheduled: { plan: "free", effectiveAt: "2026-12-01T00:00:00.000Z" } },
      });
    });

    it("keeps two upgrades made in the same millisecond in order", async () => {
      const account = await october();
      clock.set(at("2026-11-11T00:00:00Z"));
      await changePlan(h.deps, account.id, "starter", cliActor);
      await changePlan(h.deps, account.id, "enterprise", cliActor);
      expect((await planAt(h.deps, account.id)).id).toBe("enterprise");
      expect(await planRow(account.id)).toBe("enterprise");
    });

    it("refuses an unknown plan with a field error on plan, writing nothing", async () => {
      const account = await october();
      for (const call of [changePlan(h.deps, account.id, "platinum", cliActor), previewPlanChange(h.deps, account.id, "platinum")]) {
        const err = await fails(call);
        expect(err.code).toBe("invalid_request");
        expect(err.errors).toEqual([{ field: "plan", message: "is not a plan; choose free, starter, enterprise" }]);
      }
      expect(await h.deps.db.select().from(planChanges).where(eq(planChanges.accountId, account.id))).toEqual([]);
    });

    it("applies a scheduled downgrade at the month's start (applyDuePlanChanges): plan_id, audit by system, keys evicted; once", async () => {
      const account = await october();
      const { secret } = await newKey(h, account.id);
      const hash = hashKey(secret);
      await changePlan(h.deps, account.id, "enterprise", cliActor);
      clock.set(at("2026-11-20T00:00:00Z"));
      await changePlan(h.deps, account.id, "free", cliActor);
      clock.set(at("2026-11-30T23:59:59Z"));
      await applyDuePlanChanges(h.deps);
      expect(await planRow(account.id)).toBe("enterprise");
      await h.deps.keyCache.load(hash);
      clock.set(at("2026-12-01T00:00:00Z"));
      expect(await applyDuePlanChanges(h.deps)).toBeGreaterThanOrEqual(1);
      expect(await planRow(account.id)).toBe("free");
      expect(h.deps.keyCache.peek(hash)).toBeUndefined();
      expect((await audit(account.id)).at(-1)).toEqual({ action: "plan.changed", actor: "system", changes: { plan: { from: "enterprise", to: "free" }, scheduled: true, effectiveAt: "2026-12-01T00:00:00.000Z" } });
      await h.deps.keyCache.load(hash);
      expect(await applyDuePlanChanges(h.deps)).toBe(0);
      expect(h.deps.keyCache.peek(hash)).toBeTruthy();
      expect((await audit(account.id)).length).toBe(3);
    });

    it("previews an upgrade on the 11th: at once, split base fee and included calls, the pace's total, next month's fee", async () => {
      const account = await october();
      const { key } = await newKey(h, account.id);
      clock.set(at("2026-11-05T10:00:00Z"));
      live(account.id, key.id, 300);
      await h.deps.meter.flush();
      clock.set(at("2026-11-11T00:00:00Z"));
      const p = await previewPlanChange(h.deps, account.id, "starter");
      expect(p).toMatchObject({ from: plans.get("free")!, to: plans.get("starter")!, kind: "upgrade", effectiveAt: "2026-11-11T00:00:00.000Z", projectedCalls: 900 });
      expect(p.thisMonth).toEqual({ baseCents: 3267, includedCalls: 6833, projectedCents: 3267 });
      expect(p.thisMonthWithoutChange).toEqual({ baseCents: 0, includedCalls: 500, projectedCents: 0 });
      expect(p.nextMonthCents).toBe(4900);
      expect(p.nextMonthProjectedCents).toBe(4900);
      expect(p.rule).toStartWith("An upgrade applies at once");
      // Nothing was written.
      expect((await currentPlan(h.deps, account.id)).plan.id).toBe("free");
    });

    it("previews a downgrade as next month's, this month unchanged; and the current plan as cancel while one is scheduled", async () => {
      const account = await october();
      const { key } = await newKey(h, account.id);
      await changePlan(h.deps, account.id, "starter", cliActor);
      clock.set(at("2026-11-10T00:00:00Z"));
      live(account.id, key.id, 6_000);
      await h.deps.meter.flush();
      clock.set(at("2026-11-16T00:00:00Z"));
      const p = await previewPlanChange(h.deps, account.id, "free");
      // 6,000 calls in 15 of 30 days: 12,000 at this pace → 2 × 300 ¢ over on starter.
      expect(p).toMatchObject({ kind: "downgrade", effectiveAt: "2026-12-01T00:00:00.000Z", projectedCalls: 12_000, nextMonthCents: 0, nextMonthProjectedCents: 0 });
      expect(p.thisMonth).toEqual({ baseCents: 4900, includedCalls: 10_000, projectedCents: 5500 });
      expect(p.thisMonth).toEqual(p.thisMonthWithoutChange);
      expect(p.rule).toContain("1 December 2026 00:00 UTC");
      expect(p.rule).toContain("hard cap");
      await changePlan(h.deps, account.id, "free", cliActor);
      const c = await previewPlanChange(h.deps, account.id, "starter");
      expect(c).toMatchObject({ kind: "cancel", nextMonthCents: 4900 });
      expect(c.rule).toContain("cancels it");
      expect((await previewPlanChange(h.deps, account.id, "free")).kind).toBe("downgrade");
    });

    it("meters the month: live successes only, the month's included calls, pace, projected and so-far cost", async () => {
      const account = await october();
      const liveKey = (await newKey(h, account.id)).key;
      const testKey = (await newKey(h, account.id, { environment: "test" })).key;
      await changePlan(h.deps, account.id, "starter", cliActor);
      clock.set(at("2026-10-31T23:00:00Z"));
      live(account.id, liveKey.id, 999);
      clock.set(at("2026-11-03T08:00:00Z"));
      live(account.id, liveKey.id, 4_000);
      h.deps.meter.record(liveKey.id, account.id, "live", "GET /v1/email/:address", 500, 3, 77);
      h.deps.meter.record(testKey.id, account.id, "test", "GET /v1/ip/:address", 200, 3, 5_000);
      clock.set(at("2026-11-06T08:00:00Z"));
      h.deps.meter.record(liveKey.id, account.id, "live", "GET /v1/email/:address", 200, 3, 2_000);
      await h.deps.meter.flush();
      const m = await monthMeter(h.deps, account.id, at("2026-11-11T00:00:00Z"));
      expect(m).toMatchObject({ month: "2026-11", used: 6_000, included: 10_000, hardCap: false, projectedCalls: 18_000, baseCents: 4900, costSoFarCents: 4900, endsAt: "2026-12-01T00:00:00.000Z", scheduled: null });
      expect(m.plan.id).toBe("starter");
      // 18,000 at this pace: 8 × 300 ¢ over.
      expect(m.projectedCents).toBe(4900 + 2400);
      const free = await october();
      expect(await monthMeter(h.deps, free.id, at("2026-11-11T00:00:00Z"))).toMatchObject({ used: 0, included: 500, hardCap: true, projectedCalls: 0, projectedCents: 0, costSoFarCents: 0 });
      // Made mid-month on free: the meter shows the whole cap the gateway enforces, not a prorated share.
      clock.set(at("2026-11-15T00:00:00Z"));
      const late = await newAccount(h);
      expect(await monthMeter(h.deps, late.id, at("2026-11-16T00:00:00Z"))).toMatchObject({ included: 500, hardCap: true });
    });
  });
}
