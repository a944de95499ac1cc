import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { cliActor } from "../../src/audit/service.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { bearer, newKey, schedule } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { createAccount } from "../../src/accounts/service.ts";

/**
 * OWASP API1/API5: for every route that takes an object id, another account gets 404 (never
 * 403, so ids cannot be probed); /admin is 404 for non-operators; a key without keys:manage,
 * and a test key, cannot manage keys.
 */
for (const backend of backends) {
  describe(`access control [${backend.name}]`, () => {
    let h: Harness;
    let victim: { accountId: string; keyId: string; rotationId: string; deliveryId: string };
    let intruder: { browser: Browser; apiKey: string };
    beforeAll(async () => {
      h = await startHarness(backend);
      await createAccount(h.deps, { email: `op-${randomBytes(3).toString("hex")}@example.com`, password: "operator passphrase 1" }, cliActor);
      const vb = new Browser(h);
      await vb.signUp(`victim-${randomBytes(3).toString("hex")}@example.com`);
      const acct = (await h.deps.db.query.accounts.findFirst({ where: (a, { like }) => like(a.email, "victim-%") }))!;
      const { key } = await newKey(h, acct.id, { name: "victim key" });
      const rotation = await schedule(h, acct.id, key.id, { at: new Date(Date.now() + 3_600_000).toISOString() });
      victim = { accountId: acct.id, keyId: key.id, rotationId: rotation.id, deliveryId: "dlv_doesnotmatter00" };
      const ib = new Browser(h);
      await ib.signUp(`intruder-${randomBytes(3).toString("hex")}@example.com`);
      const iacct = (await h.deps.db.query.accounts.findFirst({ where: (a, { like }) => like(a.email, "intruder-%") }))!;
      intruder = { browser: ib, apiKey: (await newKey(h, iacct.id, { scopes: ["keys:manage"], rateLimit: 10_000 })).secret };
    });
    afterAll(() => h.close());

    const apiRoutes = () =>
      [
        ["GET", `/api/keys/${victim.keyId}`],
        ["PATCH", `/api/keys/${victim.keyId}`, { name: "mine now" }],
        ["DELETE", `/api/keys/${victim.keyId}`],
        ["POST", `/api/keys/${victim.keyId}/roll`, { gracePeriodHours: 0 }],
        ["GET", `/api/keys/${victim.keyId}/usage?days=7`],
        ["GET", `/api/keys/${victim.keyId}/rotations`],
        ["POST", `/api/keys/${victim.keyId}/rotations`, { at: new Date(Date.now() + 7_200_000).toISOString() }],
        ["POST", `/api/keys/${victim.keyId}/rotations/emergency`, { reason: "x" }],
        ["DELETE", `/api/rotations/${victim.rotationId}`],
        ["POST", `/api/rotations/${victim.rotationId}/reveal`],
      ] as const;

    it("answers 404 to another account on every /api route with an object id, by key and by session", async () => {
      for (const [method, path, json] of apiRoutes()) {
        const byKey = await h.req(path, { method, headers: bearer(intruder.apiKey), json });
        expect(`${method} ${path} → ${byKey.status}`).toBe(`${method} ${path} → 404`);
        const b = intruder.browser;
        const bySession = await h.req(path, { method, headers: { cookie: b.cookie!, "x-csrf-token": b.csrf!, "sec-fetch-site": "same-origin" }, json });
        expect(`${method} ${path} → ${bySession.status}`).toBe(`${method} ${path} → 404`);
      }
    });

    it("answers 404 to another account on every portal route with an object id", async () => {
      const b = intruder.browser;
      for (const path of [`/portal/keys/${victim.keyId}`, `/portal/keys/${victim.keyId}/usage?days=7`, `/portal/keys/${victim.keyId}/usage.csv`]) {
        expect(`GET ${path} → ${(await b.get(path)).status}`).toBe(`GET ${path} → 404`);
      }
      for (const path of [
        `/portal/keys/${victim.keyId}`,
        `/portal/keys/${victim.keyId}/revoke`,
        `/portal/keys/${victim.keyId}/roll`,
        `/portal/keys/${victim.keyId}/rotations`,
        `/portal/keys/${victim.keyId}/rotations/emergency`,
        `/portal/rotations/${victim.rotationId}/cancel`,
        `/portal/rotations/${victim.rotationId}/reveal`,
        `/portal/settings/webhook/deliveries/${victim.deliveryId}/resend`,
      ]) {
        const res = await b.post(path, { name: "x", scopes: "email:read", rateLimit: "1", gracePeriodHours: "0", reason: "x", at: "2030-01-01T00:00" });
        expect(`POST ${path} → ${res.status}`).toBe(`POST ${path} → 404`);
      }
    });

    it("leaves the victim's key and rotation untouched", async () => {
      const key = await h.deps.db.query.apiKeys.findFirst({ where: (k, { eq }) => eq(k.id, victim.keyId) });
      expect(key).toMatchObject({ name: "victim key", revokedAt: null, graceEndsAt: null });
      const rotation = await h.deps.db.query.keyRotations.findFirst({ where: (r, { eq }) => eq(r.id, victim.rotationId) });
      expect(rotation!.state).toBe("scheduled");
    });

    it("hides /admin from non-operators (404)", async () => {
      expect((await intruder.browser.get("/admin/compliance")).status).toBe(404);
      expect((await intruder.browser.get("/admin/compliance.csv")).status).toBe(404);
    });

    it("refuses key management to a key without keys:manage and to a test key", async () => {
      const acct = (await h.deps.db.query.accounts.findFirst({ where: (a, { like }) => like(a.email, "intruder-%") }))!;
      const { secret: dataOnly } = await newKey(h, acct.id, { scopes: ["email:read"] });
      const { secret: testKey } = await newKey(h, acct.id, { scopes: ["keys:manage"], environment: "test" });
      for (const [method, path, json] of [["GET", "/api/keys"], ["POST", "/api/keys", { name: "x", scopes: ["email:read"] }], ["GET", "/api/audit"]] as const) {
        const a = await h.req(path, { method, headers: bearer(dataOnly), json });
        expect(a.status).toBe(403);
        expect((await a.json()).code).toBe("insufficient_scope");
        const t = await h.req(path, { method, headers: bearer(testKey), json });
        expect(t.status).toBe(403);
        expect((await t.json()).code).toBe("test_key_not_allowed");
      }
      // The test key still calls the data API.
      const { secret: testData } = await newKey(h, acct.id, { scopes: ["email:read"], environment: "test" });
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(testData) })).status).toBe(200);
    });

    it("needs a credential on every /api route", async () => {
      for (const [method, path, json] of apiRoutes()) {
        const res = await h.req(path, { method, json });
        expect(res.status).toBe(401);
      }
    });
  });
}
