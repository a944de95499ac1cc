import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { cliActor } from "../../src/audit/service.ts";
import { createKeySchema } from "../../src/keys/model.ts";
import { parseInput } from "../../src/errors.ts";
import { checkSpec } from "../../src/products/spec.ts";
import { registerProduct, removeProduct } from "../../src/products/service.ts";
import { UNMETERED_PLANS, backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { bearer, changeKey, fails, newAccount, newKey, problem } from "../support/fixtures.ts";
import { email, secretIn } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const HOSTILE = "<img src=x onerror=alert(1)>";
const ESCAPED = "&lt;img src=x onerror=alert(1)&gt;";

/** A product id no other test uses: products are the instance's, every account sees them. */
const newId = () => `trk-${randomBytes(4).toString("hex")}`;

/** A tracking API: two reads, and label printing under a scope of its own. */
const specFor = (id: string) => ({
  openapi: "3.1.0",
  info: { title: "Parcel Tracking", version: "1.0.0" },
  paths: {
    "/shipments": { get: { responses: { "200": { description: "ok" } } } },
    "/shipments/{id}": { get: { responses: { "200": { description: "ok" } } }, delete: { responses: { "204": { description: "gone" } } } },
    "/labels": { post: { "x-keyport-scope": `${id}:labels`, responses: { "201": { description: "made" } } } },
  },
});

for (const backend of backends) {
  describe(`registered products' scopes on keys [${backend.name}]`, () => {
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { config: { plansFile: UNMETERED_PLANS } });
      // The OpenAPI 3.1 schema is compiled on its first use (a second of CPU): here, not in a test's time.
      await checkSpec(specFor("warm"), "warm");
    });
    afterAll(() => h.close());

    const register = (id: string, name?: string) => registerProduct(h.deps, { id, upstreamUrl: "http://127.0.0.1:9", ...(name ? { name } : {}) }, { text: JSON.stringify(specFor(id)), name: "openapi.json" }, cliActor);

    /** An account with a management key: its id and the headers that carry the key. */
    const manager = async () => {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { name: "admin", scopes: ["keys:manage"], rateLimit: 10_000 });
      return { accountId: account.id, headers: bearer(secret) };
    };

    it("refuses a product's scope before the product is registered, naming the unknown scope", async () => {
      const id = newId();
      const { accountId, headers } = await manager();
      const res = await h.req("/api/keys", { method: "POST", headers, json: { name: "early", scopes: [`${id}:read`] } });
      expect(res.status).toBe(400);
      const p = await problem(res);
      expect(p.code).toBe("invalid_request");
      expect(p.errors).toEqual([{ field: "scopes", message: expect.stringContaining(`unknown scope "${id}:read"`) }]);

      const err = await fails(newKey(h, accountId, { scopes: ["email:read", `${id}:read`] }));
      expect(err.code).toBe("invalid_request");
      expect(err.errors).toEqual([{ field: "scopes", message: expect.stringContaining(`unknown scope "${id}:read"`) }]);
      // The message lists what does exist.
      expect(err.errors![0]!.message).toContain("known: email:read, ip:read, batch:write, keys:manage");
    });

    it("takes a registered product's scopes through POST /api/keys and through the service", async () => {
      const id = newId();
      await register(id);
      const { accountId, headers } = await manager();
      const res = await h.req("/api/keys", { method: "POST", headers, json: { name: "tracking", scopes: [`${id}:read`, `${id}:labels`, "email:read"] } });
      expect(res.status).toBe(201);
      const body = await res.json();
      expect(body.scopes).toEqual(["email:read", `${id}:labels`, `${id}:read`]);
      expect(body.secret).toMatch(/^kp_live_/);

      const { key } = await newKey(h, accountId, { scopes: [`${id}:write`] });
      expect(key.scopes).toEqual([`${id}:write`]);
      // A product scope it does not have is still refused.
      const wrong = await fails(newKey(h, accountId, { scopes: [`${id}:admin`] }));
      expect(wrong.errors?.[0]?.message).toContain(`unknown scope "${id}:admin"`);
      expect(wrong.errors?.[0]?.message).toContain(`${id}:labels`);
    });

    it("adds and removes a product's scope on an existing key through PATCH /api/keys/:id", async () => {
      const id = newId();
      await register(id);
      const { accountId, headers } = await manager();
      const { key } = await newKey(h, accountId, { scopes: ["email:read"] });
      const patched = await h.req(`/api/keys/${key.id}`, { method: "PATCH", headers, json: { scopes: ["email:read", `${id}:read`] } });
      expect(patched.status).toBe(200);
      expect((await patched.json()).scopes).toEqual(["email:read", `${id}:read`]);
      const back = await changeKey(h, accountId, key.id, { scopes: ["email:read"] });
      expect(back.scopes).toEqual(["email:read"]);
    });

    it("refuses the scope again once the product is removed", async () => {
      const id = newId();
      await register(id);
      const { accountId } = await manager();
      await newKey(h, accountId, { scopes: [`${id}:read`] });
      await removeProduct(h.deps, id, cliActor);
      const err = await fails(newKey(h, accountId, { scopes: [`${id}:read`] }));
      expect(err.errors?.[0]?.message).toContain(`unknown scope "${id}:read"`);
    });

    it("still refuses a typo under a built-in prefix (email:write) in the schema, products registered or not", async () => {
      await register(newId());
      const { headers } = await manager();
      const res = await h.req("/api/keys", { method: "POST", headers, json: { name: "typo", scopes: ["email:write"] } });
      expect(res.status).toBe(400);
      const p = await problem(res);
      expect(p.errors).toEqual([{ field: "scopes", message: expect.stringContaining('unknown scope "email:write"') }]);
      let thrown: unknown;
      try {
        parseInput(createKeySchema, { name: "typo", scopes: ["email:write"] }, "key");
      } catch (err) {
        thrown = err;
      }
      expect((thrown as { errors?: { field: string }[] }).errors?.map((e) => e.field)).toEqual(["scopes"]);
      // Nor does a shape no product's scope can have get past the schema.
      const bad = await h.req("/api/keys", { method: "POST", headers, json: { name: "shape", scopes: ["Tracking:Read"] } });
      expect((await problem(bad)).errors?.[0]?.field).toBe("scopes");
    });

    it("lists the product's scopes on the portal's key form, its name escaped, and creates a key with one there", async () => {
      const id = newId();
      await register(id, HOSTILE);
      const b = new Browser(h);
      await b.signUp(email());
      const html = await b.page("/portal/keys");
      for (const scope of [`${id}:read`, `${id}:write`, `${id}:labels`]) expect(html).toContain(`<input type="checkbox" name="scopes" value="${scope}"`);
      expect(html).toContain(`<code>${id}:labels</code> <span>${ESCAPED}: POST /labels</span>`);
      expect(html).toContain(`<span>${ESCAPED}: GET /shipments, GET /shipments/{id}</span>`);
      expect(html).not.toContain(HOSTILE);

      const res = await b.post("/portal/keys", { name: "labels", environment: "live", scopes: [`${id}:labels`], rateLimit: "60" }, { htmx: true });
      expect(res.status).toBe(201);
      const created = await res.text();
      expect(secretIn(created)).toBeDefined();
      expect(created).toMatch(new RegExp(`value="${id}:labels"`));
    });
  });
}
