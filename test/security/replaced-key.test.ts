import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { eq } from "drizzle-orm";
import { cliActor } from "../../src/audit/service.ts";
import { apiKeys, keyRotations } from "../../src/db/schema.ts";
import { hashKey } from "../../src/keys/format.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { emergencyRotation, getPolicy, runSweep } from "../../src/rotation/service.ts";
import { backends } from "../support/backends.ts";
import { bearer, newAccount, newKey, problem, roll, schedule } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const MANAGE = ["keys:manage", "email:read"];

/**
 * Issue 21 #3: a rotation is the remedy for a suspected leak, so whoever holds the key being
 * replaced must gain nothing from it. A key in a roll's or a rotation's grace (`expiring`)
 * may still read the management API, but change nothing; the old key of an emergency
 * rotation, and a key a leak report flagged, may not use it at all.
 */
for (const backend of backends) {
  describe(`a key being replaced cannot manage keys [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    /** An account with a manage key `old` (already cached by one request) and the owner's own manage key. */
    async function tenant() {
      const a = await newAccount(h);
      const old = await newKey(h, a.id, { name: "automation", scopes: MANAGE });
      const owner = await newKey(h, a.id, { name: "owner", scopes: MANAGE });
      expect((await h.req("/api/keys", { headers: bearer(old.secret) })).status).toBe(200);
      return { a, old, owner };
    }

    /** A scheduled rotation of `keyId`, started by the sweep: the key is `expiring`, the new secret waits sealed. */
    async function rotated(accountId: string, keyId: string) {
      const r = await schedule(h, accountId, keyId, { at: new Date(clock.now()).toISOString(), gracePeriodHours: 24 });
      expect((await runSweep(h.deps)).started).toBeGreaterThanOrEqual(1);
      const [row] = await h.deps.db.select().from(keyRotations).where(eq(keyRotations.id, r.id));
      expect(row!.secretSealed).not.toBeNull();
      return row!;
    }

    const refusedAs = async (res: Response) => {
      const body = await problem(res);
      return `${res.status} ${body.code}`;
    };

    it("answers 403 key_replaced when the key being rotated asks for its replacement's secret, and the owner still gets it", async () => {
      const { a, old, owner } = await tenant();
      const r = await rotated(a.id, old.key.id);
      const stolen = await h.req(`/api/rotations/${r.id}/reveal`, { method: "POST", headers: bearer(old.secret) });
      expect(await refusedAs(stolen)).toBe("403 key_replaced");
      const [still] = await h.deps.db.select().from(keyRotations).where(eq(keyRotations.id, r.id));
      expect(still!.secretSealed).not.toBeNull();

      const revealed = await h.req(`/api/rotations/${r.id}/reveal`, { method: "POST", headers: bearer(owner.secret) });
      expect(revealed.status).toBe(200);
      const { secret } = (await revealed.json()) as { secret: string };
      // The replacement manages keys as the old one did.
      expect((await h.req("/api/keys", { headers: bearer(secret) })).status).toBe(200);
      const made = await h.req("/api/keys", { method: "POST", headers: bearer(secret), json: { name: "made by the replacement", scopes: ["email:read"] } });
      expect(made.status).toBe(201);
    });

    it("refuses every change an expiring key asks for during a rotation's grace (keys, rotations, webhook, policies) and still lets it read", async () => {
      const { a, old, owner } = await tenant();
      const r = await rotated(a.id, old.key.id);
      const other = await newKey(h, a.id, { name: "another" });
      const before = await getPolicy(h.deps, a.id);
      const changes: [string, string, unknown?][] = [
        ["POST", "/api/keys", { name: "planted", scopes: ["keys:manage"] }],
        ["PATCH", `/api/keys/${r.newKeyId}`, { ipAllowlist: ["192.0.2.1"] }],
        ["DELETE", `/api/keys/${r.newKeyId}`],
        ["POST", `/api/keys/${r.newKeyId}/roll`, { gracePeriodHours: 0 }],
        ["POST", `/api/keys/${other.key.id}/rotations`, { at: new Date(clock.now() + 3_600_000).toISOString() }],
        ["POST", `/api/keys/${r.newKeyId}/rotations/emergency`, { reason: "take over" }],
        ["POST", `/api/rotations/${r.id}/reveal`],
        ["DELETE", `/api/rotations/${r.id}`],
        ["PUT", "/api/webhook", { url: "https://hooks.example.com/keyport" }],
        ["DELETE", "/api/webhook"],
        ["POST", "/api/webhook/rotate-secret"],
        ["POST", "/api/webhook/test"],
        ["PUT", "/api/rotation-policy", { maxKeyAgeDays: 0, defaultGraceHours: 168, emergencyGraceHours: 168 }],
        ["PUT", "/api/leak-policy", { policy: "notify" }],
      ];
      for (const [method, path, json] of changes) {
        const res = await h.req(path, { method, headers: bearer(old.secret), ...(json === undefined ? {} : { json }) });
        expect(`${method} ${path} → ${await refusedAs(res)}`).toBe(`${method} ${path} → 403 key_replaced`);
      }
      // Nothing changed: the replacement is intact, no key was planted, the policy is the same.
      const keys = (await (await h.req("/api/keys", { headers: bearer(owner.secret) })).json()) as { data: { id: string; name: string; status: string; ipAllowlist: string[] }[] };
      expect(keys.data.find((k) => k.id === r.newKeyId)).toMatchObject({ status: "active", ipAllowlist: [] });
      expect(keys.data.map((k) => k.name)).not.toContain("planted");
      expect(await getPolicy(h.deps, a.id)).toEqual(before);
      // Reading is no claim on the replacement.
      for (const path of ["/api/keys", `/api/keys/${old.key.id}`, "/api/rotations", "/api/rotation-policy", "/api/webhook", "/api/audit"]) {
        expect(`${path} → ${(await h.req(path, { headers: bearer(old.secret) })).status}`).toBe(`${path} → 200`);
      }
    });

    it("refuses changes to a key in a roll's grace period too", async () => {
      const { a, old } = await tenant();
      const rolled = await roll(h, a.id, old.key.id, { gracePeriodHours: 24 });
      expect(rolled.previous.status).toBe("expiring");
      expect(await refusedAs(await h.req(`/api/keys/${rolled.key.id}`, { method: "DELETE", headers: bearer(old.secret) }))).toBe("403 key_replaced");
      expect(await refusedAs(await h.req("/api/keys", { method: "POST", headers: bearer(old.secret), json: { name: "planted", scopes: ["email:read"] } }))).toBe("403 key_replaced");
      expect((await h.req("/api/keys", { headers: bearer(old.secret) })).status).toBe(200);
      // The data API is no management: the old key answers there until its grace ends.
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(old.secret) })).status).toBe(200);
    });

    it("refuses all management, reads too, to the old key of an emergency rotation", async () => {
      const { a, old } = await tenant();
      const { rotation } = await emergencyRotation(h.deps, a.id, old.key.id, { reason: "committed to a public repository" }, cliActor);
      expect(rotation.gracePeriodHours).toBeGreaterThan(0);
      for (const path of ["/api/keys", "/api/rotations", "/api/audit", "/api/webhook"]) {
        expect(`${path} → ${await refusedAs(await h.req(path, { headers: bearer(old.secret) }))}`).toBe(`${path} → 403 key_replaced`);
      }
      expect(await refusedAs(await h.req(`/api/keys/${rotation.newKeyId}`, { method: "DELETE", headers: bearer(old.secret) }))).toBe("403 key_replaced");
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(old.secret) })).status).toBe(200);
    });

    it("refuses all management to a key a leak report flagged, from the very next request", async () => {
      const { old, owner } = await tenant();
      // As src/leaks/service.ts marks a reported key (the "notify" policy: the key stays active).
      await h.deps.db.update(apiKeys).set({ leakedAt: new Date(clock.now()), leakedUrl: "https://github.com/acme/app/blob/1/a.js" }).where(eq(apiKeys.id, old.key.id));
      await h.deps.keyCache.announce(hashKey(old.secret));
      const refused = await h.req("/api/keys", { headers: bearer(old.secret) });
      expect(await refusedAs(refused)).toBe("403 key_replaced");
      expect(await refusedAs(await h.req("/api/keys", { method: "POST", headers: bearer(old.secret), json: { name: "planted", scopes: ["keys:manage"] } }))).toBe("403 key_replaced");
      expect(await refusedAs(await h.req(`/api/keys/${owner.key.id}`, { method: "DELETE", headers: bearer(old.secret) }))).toBe("403 key_replaced");
      expect((await h.req(`/api/keys/${owner.key.id}`, { headers: bearer(owner.secret) })).status).toBe(200);
    });
  });
}

/** Issue 21 #8: what a key's owner may send — names without bidi controls, whole grace hours. */
for (const backend of backends) {
  describe(`key and rotation input [${backend.name}]`, () => {
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend);
    });
    afterAll(() => h.close());

    const fields = async (res: Response) => {
      const body = await problem(res);
      return `${res.status} ${body.code} ${(body.errors ?? []).map((e) => e.field).sort().join(",")}`;
    };

    // Trojan Source (CVE-2021-42574): embeddings, overrides, isolates and marks reorder what
    // an operator reads in a list or an audit line.
    const BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069", "\u200e", "\u200f"];

    it("refuses a key name holding a bidirectional control character, on create and on change", async () => {
      const a = await newAccount(h);
      const { key, secret } = await newKey(h, a.id, { scopes: MANAGE });
      for (const c of BIDI) {
        const name = `invoice${c}fdp.exe`;
        const code = c.codePointAt(0)!.toString(16);
        expect(`${code} ${await fields(await h.req("/api/keys", { method: "POST", headers: bearer(secret), json: { name, scopes: ["email:read"] } }))}`).toBe(`${code} 400 invalid_request name`);
        expect(`${code} ${await fields(await h.req(`/api/keys/${key.id}`, { method: "PATCH", headers: bearer(secret), json: { name } }))}`).toBe(`${code} 400 invalid_request name`);
      }
      // Other scripts are welcome, right-to-left ones too.
      expect((await h.req("/api/keys", { method: "POST", headers: bearer(secret), json: { name: "مفتاح الإنتاج — prod ✓", scopes: ["email:read"] } })).status).toBe(201);
    });

    it("refuses fractional grace hours for a roll, a rotation and the policy, and takes whole ones", async () => {
      const a = await newAccount(h);
      const { key, secret } = await newKey(h, a.id, { scopes: MANAGE });
      const other = await newKey(h, a.id);
      const at = new Date(Date.now() + 3_600_000).toISOString();
      expect(await fields(await h.req(`/api/keys/${other.key.id}/roll`, { method: "POST", headers: bearer(secret), json: { gracePeriodHours: 1.5 } }))).toBe("400 invalid_request gracePeriodHours");
      expect(await fields(await h.req(`/api/keys/${other.key.id}/rotations`, { method: "POST", headers: bearer(secret), json: { at, gracePeriodHours: 0.25 } }))).toBe("400 invalid_request gracePeriodHours");
      const policy = { maxKeyAgeDays: 90, defaultGraceHours: 2.5, emergencyGraceHours: 0.5 };
      expect(await fields(await h.req("/api/rotation-policy", { method: "PUT", headers: bearer(secret), json: policy }))).toBe("400 invalid_request defaultGraceHours,emergencyGraceHours");
      expect((await h.req("/api/rotation-policy", { method: "PUT", headers: bearer(secret), json: { ...policy, defaultGraceHours: 2, emergencyGraceHours: 1 } })).status).toBe(200);
      expect((await h.req(`/api/keys/${other.key.id}/rotations`, { method: "POST", headers: bearer(secret), json: { at, gracePeriodHours: 3 } })).status).toBe(201);
      expect((await h.req(`/api/keys/${key.id}/roll`, { method: "POST", headers: bearer(secret), json: { gracePeriodHours: 2 } })).status).toBe(201);
    });
  });
}
