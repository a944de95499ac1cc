import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { asc, eq } from "drizzle-orm";
import { suspendAccount, unsuspendAccount } from "../../src/accounts/service.ts";
import type { Actor } from "../../src/audit/service.ts";
import { accounts, auditEvents } from "../../src/db/schema.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { bearer, fails, newAccount, newKey, problem } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const EMAIL = "/v1/email/someone@example.com";
const service = backends.find((b) => b.name === "service");
const operator: Actor = { actor: "account:acct_operator", ip: "192.0.2.1", userAgent: "test" };

/** A call a second after the last: the free plan's 2 requests a second are not what these tests are about. */
function later(h: Harness, clock: ManualClock, path: string, secret: string): Promise<Response> {
  clock.advance(1000);
  return h.req(path, { headers: bearer(secret) });
}

for (const backend of backends) {
  describe(`account suspension [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    it("answers 403 account_suspended on the next request for every key of the account, and serves again once lifted", async () => {
      const account = await newAccount(h);
      const live = await newKey(h, account.id);
      const test = await newKey(h, account.id, { environment: "test" });
      const other = await newKey(h, (await newAccount(h)).id);
      for (const k of [live, test, other]) expect((await later(h, clock, EMAIL, k.secret)).status).toBe(200);

      const suspended = await suspendAccount(h.deps, account.id, "  Unpaid invoices since March.  ", operator);
      expect(suspended).toMatchObject({ suspendedReason: "Unpaid invoices since March." });
      expect(suspended.suspendedAt).toBeInstanceOf(Date);
      for (const k of [live, test]) {
        const res = await later(h, clock, EMAIL, k.secret);
        expect(res.status).toBe(403);
        expect(await problem(res)).toMatchObject({ code: "account_suspended", status: 403 });
        // Still a gateway answer: it names the key's limit, and the reason stays in the portal.
        expect(res.headers.get("ratelimit-policy")).toStartWith('"default";');
      }
      expect((await later(h, clock, EMAIL, other.secret)).status).toBe(200);

      await unsuspendAccount(h.deps, account.id, operator);
      for (const k of [live, test]) expect((await later(h, clock, EMAIL, k.secret)).status).toBe(200);
    });

    it("refuses the management API to a suspended account's keys too", async () => {
      const account = await newAccount(h);
      const admin = await newKey(h, account.id, { scopes: ["keys:manage"] });
      expect((await later(h, clock, "/api/keys", admin.secret)).status).toBe(200);
      await suspendAccount(h.deps, account.id, "Abuse report", operator);
      const res = await later(h, clock, "/api/keys", admin.secret);
      expect(res.status).toBe(403);
      expect((await problem(res)).code).toBe("account_suspended");
      await unsuspendAccount(h.deps, account.id, operator);
      expect((await later(h, clock, "/api/keys", admin.secret)).status).toBe(200);
    });

    it("audits both with the operator as actor; a new reason replaces the old, and lifting an active account changes nothing", async () => {
      const account = await newAccount(h);
      // A second between the changes, so the audit events sort by time.
      clock.advance(1000);
      await suspendAccount(h.deps, account.id, "first", operator);
      const [first] = await h.deps.db.select().from(accounts).where(eq(accounts.id, account.id));
      clock.advance(1000);
      await suspendAccount(h.deps, account.id, "second", operator);
      const [second] = await h.deps.db.select().from(accounts).where(eq(accounts.id, account.id));
      expect(second).toMatchObject({ suspendedReason: "second", suspendedAt: first!.suspendedAt });
      clock.advance(1000);
      await unsuspendAccount(h.deps, account.id, operator);
      clock.advance(1000);
      await unsuspendAccount(h.deps, account.id, operator);
      const [after] = await h.deps.db.select().from(accounts).where(eq(accounts.id, account.id));
      expect(after).toMatchObject({ suspendedAt: null, suspendedReason: null });
      const events = await h.deps.db.select().from(auditEvents).where(eq(auditEvents.accountId, account.id)).orderBy(asc(auditEvents.createdAt), asc(auditEvents.id));
      expect(events.filter((e) => e.action.startsWith("account.") && e.action !== "account.created").map((e) => ({ action: e.action, actor: e.actor, ip: e.ip, changes: e.changes }))).toEqual([
        { action: "account.suspended", actor: operator.actor, ip: "192.0.2.1", changes: { reason: "first" } },
        { action: "account.suspended", actor: operator.actor, ip: "192.0.2.1", changes: { reason: "second" } },
        { action: "account.unsuspended", actor: operator.actor, ip: "192.0.2.1", changes: {} },
      ]);
    });

    it("refuses an empty or overlong reason and an unknown account", async () => {
      const account = await newAccount(h);
      for (const reason of ["   ", "x".repeat(501)]) {
        const err = await fails(suspendAccount(h.deps, account.id, reason, operator));
        expect(err.code).toBe("invalid_request");
        expect(err.errors?.[0]?.field).toBe("reason");
      }
      expect((await fails(suspendAccount(h.deps, "acct_nope", "why", operator))).code).toBe("not_found");
      expect((await fails(unsuspendAccount(h.deps, "acct_nope", operator))).code).toBe("not_found");
      const [row] = await h.deps.db.select().from(accounts).where(eq(accounts.id, account.id));
      expect(row!.suspendedAt).toBeNull();
    });
  });
}

describe.skipIf(!service)("account suspension across two instances [service]", () => {
  const clock = new ManualClock();
  let a: Harness;
  let b: Harness;
  beforeAll(async () => {
    a = await startHarness(service!, { clock });
    b = await startHarness(service!, { share: a, clock });
  });
  afterAll(async () => {
    await b.close();
    await a.close();
  });

  /** Listens on instance `h`; the function returned waits until `count` key evictions have arrived there (pub/sub is asynchronous). */
  async function evictions(h: Harness, count: number): Promise<() => Promise<void>> {
    let seen = 0;
    let arrived!: () => void;
    const all = new Promise<void>((resolve) => (arrived = resolve));
    const unsubscribe = await h.deps.state.subscribe("keys:evict", () => {
      if (++seen === count) arrived();
    });
    return () => all.then(unsubscribe);
  }

  it("refuses every key of a suspended account on the other instance's next request, and serves them again once lifted", async () => {
    const account = await newAccount(a);
    const keys = [await newKey(a, account.id), await newKey(a, account.id)];
    // Cached on B.
    for (const k of keys) expect((await later(b, clock, EMAIL, k.secret)).status).toBe(200);

    let evicted = await evictions(b, keys.length);
    await suspendAccount(a.deps, account.id, "Chargeback", operator);
    await evicted();
    for (const k of keys) expect((await problem(await later(b, clock, EMAIL, k.secret))).code).toBe("account_suspended");

    evicted = await evictions(b, keys.length);
    await unsuspendAccount(a.deps, account.id, operator);
    await evicted();
    for (const k of keys) expect((await later(b, clock, EMAIL, k.secret)).status).toBe(200);
  });

  it("refuses them after the revocation epoch moves even when the eviction messages were lost", async () => {
    const account = await newAccount(a);
    const { secret } = await newKey(a, account.id);
    expect((await later(b, clock, EMAIL, secret)).status).toBe(200);
    await b.deps.keyCache.stop();
    await suspendAccount(a.deps, account.id, "Chargeback", operator);
    await b.deps.keyCache.pollEpoch();
    expect((await problem(await later(b, clock, EMAIL, secret))).code).toBe("account_suspended");
    await b.deps.keyCache.start();
  });
});
