import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { asc, eq } from "drizzle-orm";
import { auditEvents } from "../../src/audit/audit.sql.ts";
import type { Actor } from "../../src/audit/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { STATUS } from "../../src/plugins/problem.ts";
import { RESERVED_PRODUCT_IDS } from "../../src/products/model.ts";
import { productSpecs, products } from "../../src/products/products.sql.ts";
import { checkSpec } from "../../src/products/spec.ts";
import { activateVersion, getProduct, listProducts, productLog, registerProduct, removeProduct, rotateGatewaySecret, updateProduct, uploadSpec } from "../../src/products/service.ts";
import { UNMETERED_PLANS, backends } from "../support/backends.ts";
import { fails } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

type Json = Record<string, unknown>;

const OPERATOR: Actor = { actor: "account:acct_operator", ip: "127.0.0.1", userAgent: "test" };
const UPSTREAM = "http://127.0.0.1:9";

/** A product id no other test uses (products are the instance's, not an account's). */
const newId = () => `trk-${randomBytes(4).toString("hex")}`;

/** The first version of a tracking API's spec: a list and one shipment. */
const SPEC_V1 = {
  openapi: "3.1.0",
  info: { title: "Parcel Tracking", version: "1.0.0", description: "Where parcels are.\n\nA second paragraph the product's description leaves out." },
  paths: {
    "/shipments": { get: { operationId: "listShipments", responses: { "200": { description: "ok" } } } },
    "/shipments/{id}": { get: { operationId: "getShipment", responses: { "200": { description: "ok" } } } },
  },
};

/** The second: adds labels, under a scope of its own. */
const SPEC_V2 = {
  ...SPEC_V1,
  info: { ...SPEC_V1.info, version: "2.0.0" },
  paths: { ...SPEC_V1.paths, "/labels": { post: { operationId: "createLabel", "x-keyport-scope": "SCOPE", responses: { "201": { description: "made" } } } } },
};

const upload = (spec: Json, name = "openapi.json") => ({ text: JSON.stringify(spec), name });
const v2For = (id: string) => upload(JSON.parse(JSON.stringify(SPEC_V2).replace("SCOPE", `${id}:labels`)), "v2.json");

/** The operations the registry serves for a product, as `METHOD template`, sorted. */
const served = (h: Harness, id: string) =>
  h.deps.products
    .get(id)
    ?.operations.map((o) => `${o.method} ${o.template}`)
    .sort();

for (const backend of backends) {
  describe(`product registration [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock, config: { plansFile: UNMETERED_PLANS } });
      // The OpenAPI 3.1 schema is compiled on its first use (a second of CPU): here, not in a test's time.
      await checkSpec(SPEC_V1, "warm");
    });
    afterAll(() => h.close());

    /** Registers a product from SPEC_V1 with the given settings; time moves on first, as it does between an operator's actions. */
    const register = (input: Json = {}, source: Parameters<typeof registerProduct>[2] = upload(SPEC_V1), who: Actor = OPERATOR) => {
      clock.advance(1000);
      return registerProduct(h.deps, { id: newId(), upstreamUrl: UPSTREAM, ...input }, source, who);
    };

    /** A product's audit events, oldest first. */
    const events = (id: string) => h.deps.db.select().from(auditEvents).where(eq(auditEvents.accountId, productLog(id))).orderBy(asc(auditEvents.createdAt), asc(auditEvents.id));

    it("answers the gateway secret once, and stores it sealed: no row holds it in plain text", async () => {
      const { product, secret } = await register();
      expect(secret).toMatch(/^kpgw_[A-Za-z0-9_-]{43}$/);
      expect(JSON.stringify(product)).not.toContain(secret);
      const [row] = await h.deps.db.select().from(products).where(eq(products.id, product.id));
      expect(row!.secretSealed).toStartWith("v1.");
      expect(JSON.stringify(row)).not.toContain(secret);
      expect(JSON.stringify(await h.deps.db.select().from(productSpecs).where(eq(productSpecs.productId, product.id)))).not.toContain(secret);
      expect(JSON.stringify(await events(product.id))).not.toContain(secret);
      expect(JSON.stringify(await getProduct(h.deps, product.id))).not.toContain(secret);
      expect(JSON.stringify(await listProducts(h.deps))).not.toContain(secret);
      // The registry opens it to send it upstream: the same secret, from the next request.
      expect(h.deps.products.get(product.id)?.secret).toBe(secret);
      // Sealed with fresh randomness: the same secret sealed again reads differently.
      const again = await register();
      expect(again.secret).not.toBe(secret);
    });

    it("serves the product from the registry at once, with version 1 active and its operations' scopes", async () => {
      const { product } = await register({ sandboxUrl: "http://127.0.0.1:10/sandbox/" });
      expect(product).toMatchObject({ status: "active", upstreamUrl: UPSTREAM, sandboxUrl: "http://127.0.0.1:10/sandbox", timeoutMs: 30_000, maxBodyBytes: 10 * 1024 * 1024, validateRequests: false, activeVersion: 1, scopes: [`${product.id}:read`] });
      expect(served(h, product.id)).toEqual(["GET /shipments", "GET /shipments/{id}"]);
      expect(h.deps.products.scopes().map((s) => s.name)).toContain(`${product.id}:read`);
    });

    it("takes the name and description from the spec's info when none is given, and keeps those given", async () => {
      const { product } = await register();
      expect(product.name).toBe("Parcel Tracking");
      expect(product.description).toBe("Where parcels are.");
      const named = await register({ name: "Parcels", description: "Our own words." });
      expect(named.product).toMatchObject({ name: "Parcels", description: "Our own words." });
    });

    it("refuses an id already registered with product_exists (409), changing nothing", async () => {
      const { product } = await register();
      clock.advance(1000);
      const err = await fails(registerProduct(h.deps, { id: product.id, upstreamUrl: "http://127.0.0.1:11" }, v2For(product.id), OPERATOR));
      expect(err.code).toBe("product_exists");
      expect(STATUS[err.code]).toBe(409);
      expect(err.errors).toEqual([{ field: "id", message: "is already registered" }]);
      const { product: kept, versions } = await getProduct(h.deps, product.id);
      expect(kept.upstreamUrl).toBe(UPSTREAM);
      expect(versions.map((v) => v.version)).toEqual([1]);
      expect((await events(product.id)).map((e) => e.action)).toEqual(["product.registered"]);
    });

    it.each(RESERVED_PRODUCT_IDS)("refuses the id %s, which Keyport's own routes and scopes use", async (id) => {
      const err = await fails(registerProduct(h.deps, { id, upstreamUrl: UPSTREAM }, upload(SPEC_V1), OPERATOR));
      expect(err.code).toBe("invalid_request");
      expect(err.errors).toEqual([{ field: "id", message: expect.stringContaining("is taken by Keyport itself") }]);
      expect(h.deps.products.get(id)).toBeUndefined();
    });

    it.each([
      ["not a URL", "upstream"],
      ["ftp://127.0.0.1/files", "ftp"],
      ["http://127.0.0.1:9/api?key=1", "a query"],
      ["http://127.0.0.1:9/api#top", "a fragment"],
    ])("refuses the upstream URL %s (%s)", async (upstreamUrl) => {
      const err = await fails(register({ upstreamUrl }));
      expect(err.code).toBe("invalid_request");
      expect(err.errors?.map((e) => e.field)).toEqual(["upstreamUrl"]);
    });

    it("refuses a spec that does not validate, listing its problems as spec field errors", async () => {
      const err = await fails(register({}, upload({ openapi: "3.1.0", info: { title: "T", version: "1" }, paths: { "/a": { get: { responses: 5 } }, "/b": { post: { "x-keyport-scope": "email:write", responses: { "200": { description: "ok" } } } } } })));
      expect(err.code).toBe("invalid_request");
      expect(err.errors?.every((e) => e.field === "spec")).toBe(true);
      expect(err.errors?.map((e) => e.message)).toContain("/paths/~1a/get/responses must be object");
    });

    it("refuses a spec that is not JSON or YAML with one spec error", async () => {
      const err = await fails(register({}, { text: "{ this is not", name: "broken.json" }));
      expect(err.errors).toEqual([{ field: "spec", message: expect.stringMatching(/^is not valid JSON/) }]);
    });

    it("reports every mistake at once: the settings' fields and the spec's problems together", async () => {
      const err = await fails(registerProduct(h.deps, { id: "Not An Id", upstreamUrl: "nowhere", timeoutMs: 5, status: "retired" }, upload({ swagger: "2.0", info: { title: "Old", version: "1" }, paths: {} }), OPERATOR));
      expect(err.code).toBe("invalid_request");
      expect(err.errors!.map((e) => e.field).sort()).toEqual(["id", "spec", "status", "timeoutMs", "upstreamUrl"]);
      expect(err.errors!.find((e) => e.field === "spec")!.message).toContain("swagger 2.0");
    });

    it("makes an uploaded spec version 2 and serves it at once; inactive when asked, until activated", async () => {
      const { product } = await register();
      const id = product.id;
      clock.advance(1000);
      const two = await uploadSpec(h.deps, id, v2For(id), OPERATOR);
      expect(two.version).toBe(2);
      expect(two.product.activeVersion).toBe(2);
      expect(two.product.scopes).toEqual([`${id}:labels`, `${id}:read`]);
      expect(served(h, id)).toEqual(["GET /shipments", "GET /shipments/{id}", "POST /labels"]);

      clock.advance(1000);
      const three = await uploadSpec(h.deps, id, upload(SPEC_V1, "v3.json"), OPERATOR, false);
      expect(three.version).toBe(3);
      expect(three.product.activeVersion).toBe(2);
      expect(three.product.scopes).toEqual([`${id}:labels`, `${id}:read`]);
      expect(h.deps.products.get(id)?.version).toBe(2);
      expect(served(h, id)).toContain("POST /labels");

      const { versions } = await getProduct(h.deps, id);
      expect(versions.map((v) => [v.version, v.source, v.specVersion, v.operations])).toEqual([
        [3, "v3.json", "1.0.0", 2],
        [2, "v2.json", "2.0.0", 3],
        [1, "openapi.json", "1.0.0", 2],
      ]);
    });

    it("refuses a spec upload that does not validate, keeping the active version", async () => {
      const { product } = await register();
      clock.advance(1000);
      const err = await fails(uploadSpec(h.deps, product.id, upload({ openapi: "3.1.0", info: { title: "T", version: "1" }, paths: {} }), OPERATOR));
      expect(err.errors).toEqual([{ field: "spec", message: "/paths has no operation: a product needs at least one" }]);
      expect((await getProduct(h.deps, product.id)).versions.map((v) => v.version)).toEqual([1]);
      expect(h.deps.products.get(product.id)?.version).toBe(1);
    });

    it("goes back to an earlier version with activateVersion, and refuses a version that does not exist", async () => {
      const { product } = await register();
      const id = product.id;
      clock.advance(1000);
      await uploadSpec(h.deps, id, v2For(id), OPERATOR);
      clock.advance(1000);
      const back = await activateVersion(h.deps, id, 1, OPERATOR);
      expect(back.activeVersion).toBe(1);
      expect(back.scopes).toEqual([`${id}:read`]);
      expect(h.deps.products.get(id)?.version).toBe(1);
      expect(served(h, id)).toEqual(["GET /shipments", "GET /shipments/{id}"]);
      const err = await fails(activateVersion(h.deps, id, 7, OPERATOR));
      expect(err.errors).toEqual([{ field: "version", message: `is not a version of ${id}` }]);
    });

    it("rotates the gateway secret: answered once, sent by the registry from then on", async () => {
      const { product, secret } = await register();
      clock.advance(1000);
      const next = await rotateGatewaySecret(h.deps, product.id, OPERATOR);
      expect(next).toMatch(/^kpgw_[A-Za-z0-9_-]{43}$/);
      expect(next).not.toBe(secret);
      expect(h.deps.products.get(product.id)?.secret).toBe(next);
      const [row] = await h.deps.db.select().from(products).where(eq(products.id, product.id));
      expect(JSON.stringify(row)).not.toContain(next);
      expect(JSON.stringify(await events(product.id))).not.toContain(next);
    });

    it("changes only the settings given, and audits only what changed", async () => {
      const { product } = await register({ description: "Kept." });
      clock.advance(1000);
      const changed = await updateProduct(h.deps, product.id, { name: "Parcels", timeoutMs: 30_000, sandboxUrl: "http://127.0.0.1:12/" }, OPERATOR);
      expect(changed).toMatchObject({ name: "Parcels", description: "Kept.", status: "active", upstreamUrl: UPSTREAM, sandboxUrl: "http://127.0.0.1:12", timeoutMs: 30_000, maxBodyBytes: 10 * 1024 * 1024, validateRequests: false, activeVersion: 1 });
      expect(changed.operations).toHaveLength(2);
      const updated = (await events(product.id)).filter((e) => e.action === "product.updated");
      expect(updated.map((e) => e.changes)).toEqual([{ name: "Parcels", sandboxUrl: "http://127.0.0.1:12" }]);
      expect(h.deps.products.get(product.id)).toMatchObject({ name: "Parcels", sandboxUrl: "http://127.0.0.1:12", description: "Kept." });

      // Nothing different: nothing written, nothing audited.
      clock.advance(1000);
      await updateProduct(h.deps, product.id, { name: "Parcels" }, OPERATOR);
      expect((await events(product.id)).filter((e) => e.action === "product.updated")).toHaveLength(1);

      const err = await fails(updateProduct(h.deps, product.id, { status: "gone", maxBodyBytes: -1, secretSealed: "x" }, OPERATOR));
      expect(err.errors!.map((e) => e.field).sort()).toEqual(["body", "maxBodyBytes", "status"]);
      expect((await fails(updateProduct(h.deps, newId(), { name: "x" }, OPERATOR))).code).toBe("not_found");
    });

    it("removes a product from the registry at once, with its versions; its audit log stays", async () => {
      const { product } = await register();
      clock.advance(1000);
      await uploadSpec(h.deps, product.id, v2For(product.id), OPERATOR);
      clock.advance(1000);
      await removeProduct(h.deps, product.id, OPERATOR);
      expect(h.deps.products.get(product.id)).toBeUndefined();
      expect(h.deps.products.scopes().map((s) => s.name)).not.toContain(`${product.id}:read`);
      expect((await fails(getProduct(h.deps, product.id))).code).toBe("not_found");
      expect(await h.deps.db.select().from(productSpecs).where(eq(productSpecs.productId, product.id))).toEqual([]);
      expect((await listProducts(h.deps)).map((p) => p.id)).not.toContain(product.id);
      expect((await events(product.id)).map((e) => e.action)).toEqual(["product.registered", "product.spec_uploaded", "product.removed"]);
      expect((await fails(removeProduct(h.deps, product.id, OPERATOR))).code).toBe("not_found");
    });

    it("writes every action to audit_events under product:<id>, with who did it", async () => {
      const { product } = await register();
      const id = product.id;
      for (const act of [
        () => uploadSpec(h.deps, id, v2For(id), OPERATOR),
        () => activateVersion(h.deps, id, 1, OPERATOR),
        () => rotateGatewaySecret(h.deps, id, OPERATOR),
        () => updateProduct(h.deps, id, { status: "beta" }, OPERATOR),
        () => removeProduct(h.deps, id, OPERATOR),
      ]) {
        clock.advance(1000);
        await act();
      }
      const log = await events(id);
      expect(log.map((e) => e.action)).toEqual(["product.registered", "product.spec_uploaded", "product.version_activated", "product.secret_rotated", "product.updated", "product.removed"]);
      expect(new Set(log.map((e) => e.accountId))).toEqual(new Set([`product:${id}`]));
      expect(new Set(log.map((e) => e.actor))).toEqual(new Set([OPERATOR.actor]));
      expect(log.every((e) => e.ip === "127.0.0.1")).toBe(true);
      expect(log[0]!.changes).toMatchObject({ name: "Parcel Tracking", upstreamUrl: UPSTREAM, version: 1, source: "openapi.json", operations: 2 });
      expect(log[1]!.changes).toEqual({ version: 2, source: "v2.json", operations: 3, active: true });
      expect(log[2]!.changes).toEqual({ from: 2, to: 1 });
      expect(log[4]!.changes).toEqual({ status: "beta" });
      expect(log[5]!.changes).toEqual({ name: "Parcel Tracking", version: 1 });
    });

    describe("a spec given by URL", () => {
      /** A loopback server answering the spec at /openapi.json and 404 elsewhere, counting what it is asked. */
      function specServer() {
        const asked: string[] = [];
        const server = Bun.serve({
          port: 0,
          hostname: "127.0.0.1",
          fetch(req) {
            asked.push(new URL(req.url).pathname);
            if (new URL(req.url).pathname === "/openapi.json") return Response.json(SPEC_V1);
            return new Response("no such file", { status: 404 });
          },
        });
        return { asked, url: (path: string) => `http://127.0.0.1:${server.port}${path}`, stop: () => server.stop(true) };
      }

      it("fetches the spec once, at registration, and records where it came from", async () => {
        const s = specServer();
        try {
          const { product } = await register({}, { url: s.url("/openapi.json") });
          expect(s.asked).toEqual(["/openapi.json"]);
          expect(served(h, product.id)).toEqual(["GET /shipments", "GET /shipments/{id}"]);
          // Reading, listing and reloading use the stored document, never the URL.
          const { versions } = await getProduct(h.deps, product.id);
          await listProducts(h.deps);
          await h.deps.products.reload();
          await h.deps.products.poll();
          expect(versions.map((v) => v.source)).toEqual([s.url("/openapi.json")]);
          expect(s.asked).toEqual(["/openapi.json"]);
        } finally {
          await s.stop();
        }
      });

      it("refuses a URL that answers 404 as a specUrl field error", async () => {
        const s = specServer();
        try {
          const err = await fails(register({}, { url: s.url("/missing.json") }));
          expect(err.code).toBe("invalid_request");
          expect(err.errors).toEqual([{ field: "specUrl", message: "answered 404" }]);
          expect(s.asked).toEqual(["/missing.json"]);
        } finally {
          await s.stop();
        }
      });

      it("refuses a URL nothing answers at as a specUrl field error", async () => {
        const s = specServer();
        const url = s.url("/openapi.json");
        await s.stop();
        const err = await fails(register({}, { url }));
        expect(err.errors).toEqual([{ field: "specUrl", message: expect.stringMatching(/^could not be fetched/) }]);
      });

      it("refuses a URL that is not http or https as a specUrl field error, without fetching", async () => {
        for (const url of ["file:///etc/passwd", "not a url"]) {
          const err = await fails(register({}, { url }));
          expect(err.errors).toEqual([{ field: "specUrl", message: "must be an http or https URL" }]);
        }
      });
    });
  });
}
