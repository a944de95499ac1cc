import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { eq } from "drizzle-orm";
import { cliActor } from "../../src/audit/service.ts";
import { auditEvents, apiKeys } from "../../src/db/schema.ts";
import { hashKey } from "../../src/keys/format.ts";
import { MAX_ACTIVE_KEYS, createKeySchema } from "../../src/keys/model.ts";
import { createKey, getKey, listKeys, replacedName, revokeKey } from "../../src/keys/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { DomainError, parseInput } from "../../src/errors.ts";
import { backends } from "../support/backends.ts";
import { changeKey, fails, newAccount, newKey, rejection, roll } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

for (const backend of backends) {
  describe(`key lifecycle [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    it("creates a key, stores only its hash, and shows the secret once", async () => {
      const account = await newAccount(h);
      const { key, secret } = await newKey(h, account.id, { name: "  checkout  ", environment: "test", rateLimit: 120 });
      expect(key).toMatchObject({ name: "checkout", environment: "test", rateLimit: 120, status: "active", monthlyQuota: null, ipAllowlist: [] });
      expect(key.display).toBe(`kp_test_${secret.slice(8, 12)}…${secret.slice(-4)}`);
      const [row] = await h.deps.db.select().from(apiKeys).where(eq(apiKeys.id, key.id));
      expect(row!.hash).toBe(hashKey(secret));
      expect(JSON.stringify(row)).not.toContain(secret);
      expect(JSON.stringify(await listKeys(h.deps, account.id))).not.toContain(secret);
      const events = await h.deps.db.select().from(auditEvents).where(eq(auditEvents.keyId, key.id));
      expect(events.map((e) => e.action)).toEqual(["key.created"]);
      expect(JSON.stringify(events)).not.toContain(secret);
    });

    it.each([
      ["an empty name", { name: " " }, "name"],
      ["a name over 100 characters", { name: "x".repeat(101) }, "name"],
      ["an unknown scope", { scopes: ["email:read", "admin:all"] }, "scopes"],
      ["no scope", { scopes: [] }, "scopes"],
      ["a rate limit of 0", { rateLimit: 0 }, "rateLimit"],
      ["a rate limit over 100000", { rateLimit: 100_001 }, "rateLimit"],
      ["a fractional rate limit", { rateLimit: 1.5 }, "rateLimit"],
      ["an unknown environment", { environment: "prod" }, "environment"],
      ["an unparsable expiry", { expiresAt: "next tuesday" }, "expiresAt"],
      ["an expiry in the past", { expiresAt: "2020-01-01T00:00:00Z" }, "expiresAt"],
      ["a bad IP", { ipAllowlist: ["10.0.0.300"] }, "ipAllowlist"],
      ["a bad CIDR", { ipAllowlist: ["10.0.0.0/33"] }, "ipAllowlist"],
      ["a zero quota", { monthlyQuota: 0 }, "monthlyQuota"],
      ["an unknown field", { colour: "red" }, "body"],
    ])("refuses %s with a field error and writes nothing", async (_, input, field) => {
      const account = await newAccount(h);
      const err = await fails(newKey(h, account.id, input as never));
      expect(err.code).toBe("invalid_request");
      expect(err.code).toBe("invalid_request");
      expect(err.errors?.map((e) => e.field)).toContain(field);
      expect(await listKeys(h.deps, account.id)).toEqual([]);
    });

    it("accepts IPv4, IPv6 and CIDR allowlist entries in canonical form", async () => {
      const account = await newAccount(h);
      const { key } = await newKey(h, account.id, { ipAllowlist: ["203.0.113.7", "10.0.0.0/8", "2001:DB8::/32", "::1"] });
      expect(key.ipAllowlist).toEqual(["203.0.113.7", "10.0.0.0/8", "2001:db8::/32", "::1"]);
    });

    it(`allows ${MAX_ACTIVE_KEYS} active keys and answers 409 key_limit_reached for the next, even under a race`, async () => {
      const account = await newAccount(h);
      const results = await Promise.allSettled(Array.from({ length: MAX_ACTIVE_KEYS + 3 }, (_, i) => newKey(h, account.id, { name: `k${i}` })));
      expect(results.filter((r) => r.status === "fulfilled").length).toBe(MAX_ACTIVE_KEYS);
      const refused = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
      expect(refused.every((r) => r.reason instanceof DomainError && r.reason.code === "key_limit_reached")).toBe(true);
      // A revoked key frees its place.
      const [first] = await listKeys(h.deps, account.id);
      await revokeKey(h.deps, account.id, first!.id, cliActor);
      await newKey(h, account.id, { name: "replacement" });
    });

    it("updates name, scopes, rate limit, IPs and expiry, auditing what changed", async () => {
      const account = await newAccount(h);
      const { key } = await newKey(h, account.id);
      const expiresAt = new Date(clock.now() + 86_400_000).toISOString();
      const updated = await changeKey(h, account.id, key.id, { name: "renamed", scopes: ["ip:read"], rateLimit: 5, ipAllowlist: ["192.0.2.0/24"], expiresAt });
      expect(updated).toMatchObject({ name: "renamed", scopes: ["ip:read"], rateLimit: 5, ipAllowlist: ["192.0.2.0/24"], expiresAt });
      const [event] = await h.deps.db.select().from(auditEvents).where(eq(auditEvents.action, "key.updated"));
      expect(event!.changes).toMatchObject({ name: { from: "test key", to: "renamed" }, rateLimit: { from: 60, to: 5 } });
      expect((await fails(changeKey(h, account.id, key.id, { rateLimit: -1 }))).errors?.[0]?.field).toBe("rateLimit");
    });

    it("revokes a key and refuses to change it afterwards", async () => {
      const account = await newAccount(h);
      const { key } = await newKey(h, account.id);
      const revoked = await revokeKey(h.deps, account.id, key.id, cliActor);
      expect(revoked.status).toBe("revoked");
      expect(revoked.revokedAt).toBe(new Date(clock.now()).toISOString());
      expect((await fails(changeKey(h, account.id, key.id, { name: "x" }))).code).toBe("key_not_active");
    });

    it("rolls a key: the new one is active at once, the old one expiring until its grace ends", async () => {
      const account = await newAccount(h);
      const { key } = await newKey(h, account.id, { name: "rolled", rateLimit: 77, ipAllowlist: ["10.0.0.0/8"], monthlyQuota: 1000 });
      const { key: next, secret, previous } = await roll(h, account.id, key.id, { gracePeriodHours: 24 });
      expect(secret).toMatch(/^kp_live_/);
      expect(next).toMatchObject({ name: "rolled", rateLimit: 77, ipAllowlist: ["10.0.0.0/8"], monthlyQuota: 1000, status: "active" });
      expect(previous).toMatchObject({ status: "expiring", replacedBy: next.id, graceEndsAt: new Date(clock.now() + 24 * 3_600_000).toISOString() });
      // Old and new differ by name in every list; the new one keeps the name.
      expect(previous.name).toBe(`rolled (rolled ${new Date(clock.now()).toISOString().slice(0, 10)})`);
      clock.advance(24 * 3_600_000 - 1);
      expect((await getKey(h.deps, account.id, key.id)).status).toBe("expiring");
      clock.advance(1);
      expect((await getKey(h.deps, account.id, key.id)).status).toBe("revoked");
      expect((await fails(roll(h, account.id, key.id, {}))).code).toBe("key_not_active");
    });

    it("names a replaced key once, within 100 characters, however often it is rolled", () => {
      const day = new Date("2026-12-01T10:00:00Z");
      expect(replacedName("ci", "rolled", day)).toBe("ci (rolled 2026-12-01)");
      expect(replacedName("ci (rolled 2026-11-01)", "rotated", day)).toBe("ci (rotated 2026-12-01)");
      const long = replacedName("x".repeat(100), "rolled", day);
      expect(long).toHaveLength(100);
      expect(long.endsWith(" (rolled 2026-12-01)")).toBe(true);
    });

    it("rolls with no grace period by revoking the old key at once", async () => {
      const account = await newAccount(h);
      const { key } = await newKey(h, account.id);
      const { previous } = await roll(h, account.id, key.id, { gracePeriodHours: 0 });
      expect(previous.status).toBe("revoked");
    });

    it("refuses a grace period outside 0-168 hours", async () => {
      const account = await newAccount(h);
      const { key } = await newKey(h, account.id);
      expect((await fails(roll(h, account.id, key.id, { gracePeriodHours: 169 }))).errors?.[0]?.field).toBe("gracePeriodHours");
      expect((await fails(roll(h, account.id, key.id, { gracePeriodHours: -1 }))).errors?.[0]?.field).toBe("gracePeriodHours");
    });

    it("answers 404 for another account's key in every operation", async () => {
      const owner = await newAccount(h);
      const other = await newAccount(h);
      const { key } = await newKey(h, owner.id);
      for (const op of [
        () => getKey(h.deps, other.id, key.id),
        () => changeKey(h, other.id, key.id, { name: "mine" }),
        () => revokeKey(h.deps, other.id, key.id, cliActor),
        () => roll(h, other.id, key.id, {}),
      ]) {
        expect((await fails(op())).code).toBe("not_found");
      }
      expect(await listKeys(h.deps, other.id)).toEqual([]);
      expect((await getKey(h.deps, owner.id, key.id)).status).toBe("active");
    });

    it("keeps the key and its audit event together: a failed audit write leaves no key", async () => {
      const account = await newAccount(h);
      const badActor = { actor: null as unknown as string };
      await rejection(createKey(h.deps, account.id, parseInput(createKeySchema, { name: "x", scopes: ["email:read"] }, "key"), badActor));
      expect(await listKeys(h.deps, account.id)).toEqual([]);
    });
  });
}
