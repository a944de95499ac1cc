import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { and, eq } from "drizzle-orm";
import { cliActor } from "../../src/audit/service.ts";
import { apiKeys, auditEvents, keyRotations, notifications } from "../../src/db/schema.ts";
import { getKey, listKeys } from "../../src/keys/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { cancelRotation, emergencyRotation, getPolicy, revealRotationSecret, runSweep } from "../../src/rotation/service.ts";
import { backends } from "../support/backends.ts";
import { bearer, fails, newAccount, newKey, policy, problem, schedule } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const HOUR = 3_600_000;
const EMAIL = "/v1/email/a@example.com";

for (const backend of backends) {
  describe(`key rotation [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    const events = async (accountId: string) =>
      (await h.deps.db.select().from(notifications).where(eq(notifications.accountId, accountId))).map((n) => n.event);

    it("has the default policy and keeps a valid change, refusing bad values", async () => {
      const a = await newAccount(h);
      expect(await getPolicy(h.deps, a.id)).toEqual({ maxKeyAgeDays: 90, defaultGraceHours: 72, emergencyGraceHours: 4 });
      await policy(h, a.id, { maxKeyAgeDays: 30, defaultGraceHours: 24, emergencyGraceHours: 0 });
      expect(await getPolicy(h.deps, a.id)).toEqual({ maxKeyAgeDays: 30, defaultGraceHours: 24, emergencyGraceHours: 0 });
      const err = await fails(policy(h, a.id, { maxKeyAgeDays: -1, defaultGraceHours: 500, emergencyGraceHours: 1 }));
      expect(err.errors?.map((e) => e.field).sort()).toEqual(["defaultGraceHours", "maxKeyAgeDays"]);
    });

    it("goes scheduled → grace_period → completed; the old key answers during grace and 401 after", async () => {
      const a = await newAccount(h);
      const { key, secret } = await newKey(h, a.id, { name: "rotated", rateLimit: 500, ipAllowlist: [], monthlyQuota: 5000 });
      const at = new Date(clock.now() + HOUR).toISOString();
      const scheduled = await schedule(h, a.id, key.id, { at, gracePeriodHours: 2, reason: "quarterly" });
      expect(scheduled).toMatchObject({ state: "scheduled", reason: "quarterly", gracePeriodHours: 2, scheduledAt: at, secretAvailable: false });

      expect((await runSweep(h.deps)).started).toBe(0);
      clock.advance(HOUR);
      const sweep = await runSweep(h.deps);
      expect(sweep.started).toBe(1);
      const [row] = await h.deps.db.select().from(keyRotations).where(eq(keyRotations.id, scheduled.id));
      expect(row!.state).toBe("grace_period");
      expect(row!.secretSealed).toStartWith("v1.");
      const fresh = await getKey(h.deps, a.id, row!.newKeyId!);
      expect(fresh).toMatchObject({ name: "rotated", rateLimit: 500, monthlyQuota: 5000, status: "active" });
      expect((await getKey(h.deps, a.id, key.id)).status).toBe("expiring");
      expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);

      // A second sweep in the same instant changes nothing.
      expect(await runSweep(h.deps)).toMatchObject({ started: 0, completed: 0 });
      clock.advance(2 * HOUR);
      expect((await runSweep(h.deps)).completed).toBe(1);
      const [done] = await h.deps.db.select().from(keyRotations).where(eq(keyRotations.id, scheduled.id));
      expect(done!.state).toBe("completed");
      expect((await getKey(h.deps, a.id, key.id)).status).toBe("revoked");
      expect((await problem(await h.req(EMAIL, { headers: { ...bearer(secret), "x-forwarded-for": "192.0.2.9" } }))).code).toBe("key_revoked");
      expect(await events(a.id)).toEqual(expect.arrayContaining(["key.rotation_scheduled", "key.rotation_started", "key.rotation_completed", "key.revoked", "key.expiring"]));
      const trail = await h.deps.db.select().from(auditEvents).where(and(eq(auditEvents.accountId, a.id), eq(auditEvents.keyId, key.id)));
      expect(trail.map((e) => e.action)).toEqual(expect.arrayContaining(["rotation.scheduled", "rotation.started", "rotation.completed"]));
    });

    it("reveals the new secret once, deletes the ciphertext, and the secret works", async () => {
      const a = await newAccount(h);
      const { key } = await newKey(h, a.id);
      const r = await schedule(h, a.id, key.id, { at: new Date(clock.now()).toISOString() });
      await runSweep(h.deps);
      const { secret, rotation } = await revealRotationSecret(h.deps, a.id, r.id, cliActor);
      expect(secret).toMatch(/^kp_live_[0-9A-Za-z]{46}$/);
      expect(rotation.secretAvailable).toBe(false);
      const [row] = await h.deps.db.select().from(keyRotations).where(eq(keyRotations.id, r.id));
      expect(row!.secretSealed).toBeNull();
      expect(JSON.stringify(row)).not.toContain(secret);
      expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
      const again = await fails(revealRotationSecret(h.deps, a.id, r.id, cliActor));
      expect(again.code).toBe("secret_gone");
      const other = await newAccount(h);
      expect((await fails(revealRotationSecret(h.deps, other.id, r.id, cliActor))).code).toBe("not_found");
    });

    it("deletes an unrevealed secret when the grace period ends", async () => {
      const a = await newAccount(h);
      const { key } = await newKey(h, a.id);
      const r = await schedule(h, a.id, key.id, { at: new Date(clock.now()).toISOString(), gracePeriodHours: 48 });
      await runSweep(h.deps);
      clock.advance(48 * HOUR);
      await runSweep(h.deps);
      const [row] = await h.deps.db.select().from(keyRotations).where(eq(keyRotations.id, r.id));
      expect(row!.state).toBe("completed");
      expect(row!.secretSealed).toBeNull();
      expect((await fails(revealRotationSecret(h.deps, a.id, r.id, cliActor))).code).toBe("secret_gone");
    });

    it("cancels a rotation before it starts, and not after", async () => {
      const a = await newAccount(h);
      const { key } = await newKey(h, a.id);
      const r = await schedule(h, a.id, key.id, { at: new Date(clock.now() + HOUR).toISOString() });
      expect((await cancelRotation(h.deps, a.id, r.id, cliActor)).state).toBe("cancelled");
      clock.advance(HOUR);
      expect((await runSweep(h.deps)).started).toBe(0);
      expect((await getKey(h.deps, a.id, key.id)).status).toBe("active");
      const r2 = await schedule(h, a.id, key.id, { at: new Date(clock.now()).toISOString() });
      await runSweep(h.deps);
      expect((await fails(cancelRotation(h.deps, a.id, r2.id, cliActor))).code).toBe("rotation_not_cancellable");
    });

    it("refuses a second rotation in flight, a past time and another account's key", async () => {
      const a = await newAccount(h);
      const { key } = await newKey(h, a.id);
      await schedule(h, a.id, key.id, { at: new Date(clock.now() + HOUR).toISOString() });
      expect((await fails(schedule(h, a.id, key.id, { at: new Date(clock.now() + 2 * HOUR).toISOString() }))).code).toBe("rotation_in_progress");
      const { key: k2 } = await newKey(h, a.id);
      expect((await fails(schedule(h, a.id, k2.id, { at: "2001-01-01T00:00:00Z" }))).errors?.[0]?.field).toBe("at");
      const other = await newAccount(h);
      expect((await fails(schedule(h, other.id, k2.id, { at: new Date(clock.now()).toISOString() }))).code).toBe("not_found");
    });

    it("rotates in an emergency with the policy's grace, and with 0 revokes the old key at once", async () => {
      const a = await newAccount(h);
      const { key, secret } = await newKey(h, a.id);
      const e = await emergencyRotation(h.deps, a.id, key.id, { reason: "leaked in a gist" }, cliActor);
      expect(e.rotation).toMatchObject({ state: "grace_period", emergency: true, gracePeriodHours: 4, secretAvailable: false });
      // The answer was the one showing: nothing waits to be revealed.
      expect((await fails(revealRotationSecret(h.deps, a.id, e.rotation.id, cliActor))).code).toBe("secret_gone");
      expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
      expect((await h.req(EMAIL, { headers: bearer(e.secret) })).status).toBe(200);
      clock.advance(4 * HOUR);
      expect((await h.req(EMAIL, { headers: { ...bearer(secret), "x-forwarded-for": "192.0.2.10" } })).status).toBe(401);

      await policy(h, a.id, { maxKeyAgeDays: 90, defaultGraceHours: 72, emergencyGraceHours: 0 });
      const { key: k2, secret: s2 } = await newKey(h, a.id);
      expect((await h.req(EMAIL, { headers: bearer(s2) })).status).toBe(200);
      const now = await emergencyRotation(h.deps, a.id, k2.id, { reason: "leaked" }, cliActor);
      expect((await problem(await h.req(EMAIL, { headers: { ...bearer(s2), "x-forwarded-for": "192.0.2.11" } }))).code).toBe("key_revoked");
      expect((await h.req(EMAIL, { headers: bearer(now.secret) })).status).toBe(200);
      expect((await fails(emergencyRotation(h.deps, a.id, k2.id, { reason: "again" }, cliActor))).code).toBe("key_not_active");

      // A scheduled rotation with no grace still keeps its sealed secret a day for the reveal.
      const { key: k3 } = await newKey(h, a.id);
      const r3 = await schedule(h, a.id, k3.id, { at: new Date(clock.now()).toISOString(), gracePeriodHours: 0 });
      await runSweep(h.deps);
      clock.advance(23 * HOUR);
      await runSweep(h.deps);
      expect((await revealRotationSecret(h.deps, a.id, r3.id, cliActor)).secret).toMatch(/^kp_live_/);
    });

    it("schedules and starts rotations for keys over the policy age, once", async () => {
      const a = await newAccount(h);
      await policy(h, a.id, { maxKeyAgeDays: 30, defaultGraceHours: 24, emergencyGraceHours: 4 });
      const { key } = await newKey(h, a.id, { name: "old" });
      clock.advance(29 * 86_400_000);
      await runSweep(h.deps);
      expect((await getKey(h.deps, a.id, key.id)).status).toBe("active");
      clock.advance(86_400_000);
      await runSweep(h.deps);
      expect((await getKey(h.deps, a.id, key.id)).status).toBe("expiring");
      await runSweep(h.deps);
      const rotations = await h.deps.db.select().from(keyRotations).where(eq(keyRotations.oldKeyId, key.id));
      expect(rotations.length).toBe(1);
      expect(rotations[0]!.reason).toBe("policy: key older than 30 days");
      expect(rotations[0]!.actor).toBe("system");
      // A policy of 0 days turns it off.
      const b = await newAccount(h);
      await policy(h, b.id, { maxKeyAgeDays: 0, defaultGraceHours: 24, emergencyGraceHours: 4 });
      const { key: kb } = await newKey(h, b.id);
      clock.advance(400 * 86_400_000);
      await runSweep(h.deps);
      expect((await getKey(h.deps, b.id, kb.id)).status).toBe("active");
    });

    it("sends one key.expiring notice 24 h before a grace ends", async () => {
      const a = await newAccount(h);
      const { key } = await newKey(h, a.id);
      await schedule(h, a.id, key.id, { at: new Date(clock.now()).toISOString(), gracePeriodHours: 72 });
      await runSweep(h.deps);
      clock.advance(47 * HOUR);
      await runSweep(h.deps);
      expect((await events(a.id)).filter((e) => e === "key.expiring").length).toBe(0);
      clock.advance(HOUR);
      await runSweep(h.deps);
      await runSweep(h.deps);
      expect((await events(a.id)).filter((e) => e === "key.expiring").length).toBe(1);
    });

    it("fails a rotation visibly when its key was revoked before the start", async () => {
      const a = await newAccount(h);
      const { key } = await newKey(h, a.id);
      const r = await schedule(h, a.id, key.id, { at: new Date(clock.now() + HOUR).toISOString() });
      await h.deps.db.update(apiKeys).set({ revokedAt: new Date(clock.now()) }).where(eq(apiKeys.id, key.id));
      clock.advance(HOUR);
      await runSweep(h.deps);
      const [row] = await h.deps.db.select().from(keyRotations).where(eq(keyRotations.id, r.id));
      expect(row).toMatchObject({ state: "failed", failure: "the key is revoked" });
      expect((await listKeys(h.deps, a.id)).length).toBe(1);
    });

    it("serves the rotation API with 404 for another account's objects", async () => {
      const a = await newAccount(h);
      const { secret: admin } = await newKey(h, a.id, { scopes: ["keys:manage"], rateLimit: 1000 });
      const { key } = await newKey(h, a.id);
      const headers = bearer(admin);
      const created = await h.req(`/api/keys/${key.id}/rotations`, { method: "POST", headers, json: { at: new Date(clock.now() + HOUR).toISOString(), reason: "api" } });
      expect(created.status).toBe(201);
      const rot = await created.json();
      const bad = await h.req(`/api/keys/${key.id}/rotations`, { method: "POST", headers, json: { at: "soon" } });
      expect((await problem(bad)).errors?.[0]?.field).toBe("at");
      expect((await (await h.req(`/api/keys/${key.id}/rotations`, { headers })).json()).data[0].id).toBe(rot.id);

      const b = await newAccount(h);
      const { secret: intruder } = await newKey(h, b.id, { scopes: ["keys:manage"] });
      expect((await h.req(`/api/rotations/${rot.id}`, { method: "DELETE", headers: bearer(intruder) })).status).toBe(404);
      expect((await h.req(`/api/rotations/${rot.id}/reveal`, { method: "POST", headers: bearer(intruder) })).status).toBe(404);
      expect((await h.req(`/api/keys/${key.id}/rotations/emergency`, { method: "POST", headers: bearer(intruder), json: { reason: "x" } })).status).toBe(404);

      expect((await h.req(`/api/rotations/${rot.id}`, { method: "DELETE", headers })).status).toBe(200);
      const emergency = await h.req(`/api/keys/${key.id}/rotations/emergency`, { method: "POST", headers, json: { reason: "leak" } });
      expect(emergency.status).toBe(201);
      const e = await emergency.json();
      expect(e.secret).toMatch(/^kp_live_/);
      expect((await h.req(`/api/rotations/${e.id}/reveal`, { method: "POST", headers })).status).toBe(410);
      expect((await (await h.req("/api/rotation-policy", { headers })).json()).maxKeyAgeDays).toBe(90);
      const policy = await h.req("/api/rotation-policy", { method: "PUT", headers, json: { maxKeyAgeDays: 60, defaultGraceHours: 12, emergencyGraceHours: 1 } });
      expect((await policy.json()).maxKeyAgeDays).toBe(60);
    });
  });
}

const service = backends.find((b) => b.name === "service");

describe.skipIf(!service)("two sweepers on one Postgres [service]", () => {
  it("rotate each due key exactly once", async () => {
    const clock = new ManualClock();
    const a = await startHarness(service!, { clock });
    const b = await startHarness(service!, { clock, share: a });
    try {
      const account = await newAccount(a);
      const ids: string[] = [];
      for (let i = 0; i < 10; i++) {
        const { key } = await newKey(a, account.id, { name: `k${i}` });
        await schedule(a, account.id, key.id, { at: new Date(clock.now()).toISOString() });
        ids.push(key.id);
      }
      await Promise.all([runSweep(a.deps), runSweep(b.deps), runSweep(a.deps), runSweep(b.deps)]);
      await Promise.all([runSweep(a.deps), runSweep(b.deps)]);
      const rows = await a.deps.db.select().from(keyRotations).where(eq(keyRotations.accountId, account.id));
      expect(rows.length).toBe(10);
      expect(rows.every((r) => r.state === "grace_period" && r.newKeyId)).toBe(true);
      // 10 originals + exactly one replacement each.
      expect((await listKeys(a.deps, account.id)).length).toBe(20);
    } finally {
      await b.close();
      await a.close();
    }
    // Two harnesses on a fresh database (every migration): ~5 s on a loaded 2-core machine.
  }, 30_000);
});
