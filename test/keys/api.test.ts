import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { afterResponse, bearer, newAccount, newKey, problem } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

for (const backend of backends) {
  describe(`management API /api/keys [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    const admin = async () => {
      const account = await newAccount(h);
      const { secret, key } = await newKey(h, account.id, { name: "admin", scopes: ["keys:manage"], rateLimit: 10_000 });
      return { account, secret, keyId: key.id, headers: bearer(secret) };
    };

    it("creates a key (201, secret once, no-store), lists, gets, patches, rolls and revokes it", async () => {
      const { headers } = await admin();
      const created = await h.req("/api/keys", { method: "POST", headers, json: { name: "billing", scopes: ["email:read"], rateLimit: 30 } });
      expect(created.status).toBe(201);
      expect(created.headers.get("cache-control")).toBe("no-store");
      const body = await created.json();
      expect(body.secret).toMatch(/^kp_live_[0-9A-Za-z]{46}$/);
      expect(body).toMatchObject({ name: "billing", scopes: ["email:read"], rateLimit: 30, status: "active" });

      const list = await (await h.req("/api/keys", { headers })).json();
      expect(list.data.map((k: { id: string }) => k.id)).toContain(body.id);
      expect(JSON.stringify(list)).not.toContain(body.secret);

      const got = await (await h.req(`/api/keys/${body.id}`, { headers })).json();
      expect(got.secret).toBeUndefined();
      expect(got.display).toBe(`kp_live_${body.secret.slice(8, 12)}…${body.secret.slice(-4)}`);

      const patched = await h.req(`/api/keys/${body.id}`, { method: "PATCH", headers, json: { name: "billing v2", rateLimit: 40 } });
      expect(await patched.json()).toMatchObject({ name: "billing v2", rateLimit: 40 });

      const rolled = await h.req(`/api/keys/${body.id}/roll`, { method: "POST", headers, json: { gracePeriodHours: 72 } });
      expect(rolled.status).toBe(201);
      const r = await rolled.json();
      expect(r.secret).toMatch(/^kp_live_/);
      expect(r.previous).toMatchObject({ id: body.id, status: "expiring", replacedBy: r.id });

      const revoked = await h.req(`/api/keys/${r.id}`, { method: "DELETE", headers });
      expect((await revoked.json()).status).toBe("revoked");

      // The new key works on the data API until revoked; then it does not.
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(r.secret) })).status).toBe(401);
    });

    it("returns field errors as problem+json for bad input", async () => {
      const { headers } = await admin();
      const res = await h.req("/api/keys", { method: "POST", headers, json: { name: "", scopes: ["nope"], rateLimit: "fast", ipAllowlist: ["1.2.3"] } });
      expect(res.status).toBe(400);
      const p = await problem(res);
      expect(p.code).toBe("invalid_request");
      expect(p.errors!.map((e) => e.field).sort()).toEqual(["ipAllowlist", "name", "rateLimit", "scopes"]);
      const notJson = await h.req("/api/keys", { method: "POST", headers: { ...headers, "content-type": "application/json" }, body: "{not json" });
      expect(notJson.status).toBe(400);
      expect((await problem(notJson)).code).toBe("invalid_request");
      const array = await h.req("/api/keys", { method: "POST", headers, json: [1, 2] });
      expect((await problem(array)).code).toBe("invalid_request");
    });

    it("needs a key with keys:manage", async () => {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { scopes: ["email:read"] });
      const res = await h.req("/api/keys", { headers: bearer(secret) });
      expect(res.status).toBe(403);
      expect((await problem(res)).code).toBe("insufficient_scope");
      expect((await problem(await h.req("/api/keys"))).code).toBe("missing_api_key");
    });

    it("answers 404 for another account's key on every route, and never lists it", async () => {
      const mine = await admin();
      const theirs = await admin();
      const { key } = await newKey(h, theirs.account.id);
      for (const [method, path, json] of [
        ["GET", `/api/keys/${key.id}`, undefined],
        ["PATCH", `/api/keys/${key.id}`, { name: "stolen" }],
        ["DELETE", `/api/keys/${key.id}`, undefined],
        ["POST", `/api/keys/${key.id}/roll`, { gracePeriodHours: 1 }],
        ["GET", `/api/keys/${key.id}/usage?days=7`, undefined],
      ] as const) {
        const res = await h.req(path, { method, headers: mine.headers, json });
        expect(res.status).toBe(404);
        expect((await problem(res)).code).toBe("not_found");
      }
      const list = await (await h.req("/api/keys", { headers: mine.headers })).json();
      expect(list.data.map((k: { id: string }) => k.id)).not.toContain(key.id);
      const audit = await (await h.req(`/api/audit?keyId=${key.id}`, { headers: mine.headers })).json();
      expect(audit.data).toEqual([]);
    });

    it("serves usage for 1-366 days and refuses other values", async () => {
      const { account, headers } = await admin();
      const { key, secret } = await newKey(h, account.id);
      await h.req("/v1/email/a@example.com", { headers: bearer(secret) });
      await afterResponse();
      await h.deps.meter.flush();
      const res = await h.req(`/api/keys/${key.id}/usage?days=7`, { headers });
      const body = await res.json();
      expect(body.daily.length).toBe(7);
      expect(body.summary.total).toBe(1);
      for (const bad of ["0", "367", "abc", "1.5"]) {
        const r = await h.req(`/api/keys/${key.id}/usage?days=${bad}`, { headers });
        expect(r.status).toBe(400);
        expect((await problem(r)).errors?.[0]?.field).toBe("days");
      }
    });

    it("lists the account's audit events newest first, filtered and paginated", async () => {
      const { account, headers, keyId } = await admin();
      for (let i = 0; i < 60; i++) {
        clock.advance(1000);
        await h.req(`/api/keys/${keyId}`, { method: "PATCH", headers, json: { name: `admin ${i}` } });
      }
      const first = await (await h.req(`/api/audit?action=key.updated`, { headers })).json();
      expect(first.data.length).toBe(50);
      expect(first.data[0].changes.name.to).toBe("admin 59");
      expect(first.data[0]).toMatchObject({ action: "key.updated", keyId, actor: `key:${keyId}` });
      const second = await (await h.req(`/api/audit?action=key.updated&cursor=${first.nextCursor}`, { headers })).json();
      expect(second.data.length).toBe(10);
      expect(second.nextCursor).toBeNull();
      expect(second.data.at(-1).changes.name.to).toBe("admin 0");
      const byKey = await (await h.req(`/api/audit?keyId=${keyId}&action=key.created`, { headers })).json();
      expect(byKey.data.length).toBe(1);
      expect((await h.req(`/api/audit?cursor=garbage`, { headers })).status).toBe(400);
      void account;
    });
  });
}
