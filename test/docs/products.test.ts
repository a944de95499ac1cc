import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";
import { Validator } from "@seriousme/openapi-schema-validator";
import { cliActor } from "../../src/audit/service.ts";
import { buildReference, searchReference } from "../../src/docs/reference.ts";
import { registerProduct, removeProduct } from "../../src/products/service.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { email } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const HOSTILE = `<img src=x onerror=alert(1)>`;
const ESCAPED = "&lt;img src=x onerror=alert(1)&gt;";
/** The markup outside quoted attribute values (where `<` is text, and kitajs escapes the quote). */
const outsideAttributes = (html: string) => html.replace(/="[^"]*"/g, '=""');
/** The try-it result's status line: `<span class="badge …">200 OK</span>`. */
const statusIn = (html: string) => /id="try-result"><span class="badge [^"]+">([^<]+)<\/span>/.exec(html)?.[1];
/** The operation pages the index links to. */
const linked = (html: string) =>
  [...html.matchAll(/href="\/docs\/([\w.-]+)"/g)].map((m) => m[1]).filter((id) => id !== "getting-started" && id !== "errors");
/** A page's words: tags as spaces, whitespace collapsed, quotes unescaped (never < or >). */
const text = (html: string) =>
  html
    .replace(/<[^>]+>/g, " ")
    .replace(/\s+/g, " ")
    .replace(/&#x27;|&#x27;/g, "'")
    .replace(/&#34;|&quot;/g, '"')
    .replace(/&amp;/g, "&");

/** A product's spec in OpenAPI 3.0, with hostile text wherever a spec holds text, and references of every kind. */
const trackingSpec = () => ({
  openapi: "3.0.3",
  info: { title: `Tracking ${HOSTILE}`, version: "2.1.0", description: `Parcels \`${HOSTILE}\`` },
  paths: {
    "/shipments/{id}": {
      parameters: [{ $ref: "#/components/parameters/ShipmentId" }],
      get: {
        operationId: "getShipment",
        summary: `Get a shipment ${HOSTILE}`,
        description: `Where a parcel is now. ${HOSTILE}`,
        parameters: [
          { name: "fields", in: "query", schema: { type: "string", enum: ["all", "brief"] } },
          { name: `q"${HOSTILE}`, in: "query", description: HOSTILE, schema: { type: "string", pattern: HOSTILE } },
          { name: "X-Trace", in: "header", description: "Passed on to the carrier.", schema: { type: "string" }, example: "trace-1" },
        ],
        responses: {
          "200": {
            description: `The shipment ${HOSTILE}`,
            content: { "application/json": { schema: { $ref: "#/components/schemas/Shipment" }, example: { id: "shp_1", status: "in_transit", eta: null, carrier: { name: HOSTILE } } } },
          },
          "404": { $ref: "#/components/responses/NotFound" },
        },
      },
    },
    "/shipments": {
      post: {
        operationId: "createShipment",
        summary: "Create a shipment",
        "x-keyport-scope": "tracking:admin",
        requestBody: { $ref: "#/components/requestBodies/NewShipment" },
        responses: { "201": { description: "Created.", content: { "application/json": { schema: { $ref: "#/components/schemas/Shipment" } } } } },
      },
    },
  },
  components: {
    parameters: { ShipmentId: { name: "id", in: "path", required: true, description: "The shipment's id.", schema: { type: "string", minLength: 3 }, example: "shp_1" } },
    schemas: {
      Shipment: {
        type: "object",
        required: ["id", "status"],
        properties: {
          id: { type: "string", description: `Its id ${HOSTILE}` },
          status: { type: "string", enum: ["pending", "in_transit", "delivered"] },
          eta: { type: "string", format: "date-time", nullable: true },
          weight: { type: "number", minimum: 0, exclusiveMinimum: true },
          carrier: { $ref: "#/components/schemas/Carrier" },
        },
      },
      Carrier: { type: "object", properties: { name: { type: "string", maxLength: 40 } } },
      Error: { type: "object", properties: { message: { type: "string", description: "What went wrong." } } },
    },
    requestBodies: {
      NewShipment: {
        required: true,
        content: { "application/json": { schema: { type: "object", required: ["to"], properties: { to: { type: "string", description: "The address." }, weight: { type: "number" } } }, example: { to: "1 Main St", weight: 2.5 } } },
      },
    },
    responses: { NotFound: { description: "No such shipment.", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } } },
  },
});

/** A product in OpenAPI 3.1 with one operation. */
const smallSpec = (title: string, path: string, operationId: string, summary: string) => ({
  openapi: "3.1.0",
  info: { title, version: "1" },
  paths: {
    [path]: {
      get: {
        operationId,
        summary,
        responses: { "200": { description: "The list.", content: { "application/json": { schema: { type: "array", items: { $ref: "#/components/schemas/Entry" } } } } } },
      },
    },
  },
  components: { schemas: { Entry: { type: "object", properties: { amount: { type: ["integer", "null"], description: "In cents." } } } } },
});

/** A plans file whose `free` plan includes everything (it lists nothing) and whose `partner` plan lists two products. */
function plansFile(): string {
  const dir = mkdtempSync(join(tmpdir(), "kp-plans-"));
  const file = join(dir, "plans.json");
  const unmetered = { priceCents: 0, includedCalls: 1_000_000_000, overageCentsPer1000: 0, requestsPerSecond: 100_000 };
  writeFileSync(
    file,
    JSON.stringify({
      products: [
        { id: "email", name: "Email check", description: "Email addresses." },
        { id: "ip", name: "IP lookup", description: "IP addresses." },
        { id: "batch", name: "Batch", description: "Many at once." },
      ],
      plans: [
        { id: "free", name: "Free", description: "Everything.", ...unmetered },
        { id: "partner", name: "Partner", description: "Email and tracking.", ...unmetered, priceCents: 1000, products: ["email", "tracking"] },
      ],
    }),
  );
  return file;
}

/** An upstream that records what reaches it and answers JSON. */
interface Upstream {
  server: Server<undefined>;
  url: string;
  received: { method: string; path: string; headers: Headers; body: string }[];
}

function startUpstream(name: string): Upstream {
  const received: Upstream["received"] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      const url = new URL(req.url);
      received.push({ method: req.method, path: url.pathname + url.search, headers: req.headers, body: await req.text() });
      const status = req.method === "POST" ? 201 : 200;
      return Response.json({ id: "shp_1", status: "in_transit", eta: null, from: name, note: HOSTILE }, { status });
    },
  });
  return { server, url: `http://127.0.0.1:${server.port}`, received };
}

const spec = (value: unknown, name = "openapi.json") => ({ text: JSON.stringify(value), name });

for (const backend of backends) {
  describe(`registered products in the docs and on /pricing [${backend.name}]`, () => {
    let h: Harness;
    let live: Upstream;
    let sandbox: Upstream;
    let trackingSecret: string;
    beforeAll(async () => {
      live = startUpstream("live");
      sandbox = startUpstream("sandbox");
      h = await startHarness(backend, { config: { plansFile: plansFile() } });
      trackingSecret = (
        await registerProduct(
          h.deps,
          { id: "tracking", name: `Tracking ${HOSTILE}`, description: `Where parcels are ${HOSTILE}`, status: "beta", upstreamUrl: live.url, sandboxUrl: sandbox.url },
          spec(trackingSpec()),
          cliActor,
        )
      ).secret;
      await registerProduct(h.deps, { id: "ledger", name: "Ledger", description: "Money in and out.", status: "deprecated", upstreamUrl: live.url }, spec(smallSpec("Ledger", "/entries", "listEntries", "List ledger entries")), cliActor);
    });
    afterAll(async () => {
      await h.close();
      live.server.stop(true);
      sandbox.server.stop(true);
    });

    it("answers a valid OpenAPI 3.1 document with the products in it: a tag each with its name and status, renamed components, 3.0 keywords upgraded", async () => {
      const doc = (await (await h.req("/openapi.json")).json()) as {
        openapi: string;
        tags: Record<string, unknown>[];
        paths: Record<string, unknown>;
        components: { schemas: Record<string, { properties?: Record<string, Record<string, unknown>> }> };
      };
      const { valid, errors } = await new Validator().validate(structuredClone(doc) as unknown as Record<string, unknown>);
      expect(errors ?? []).toEqual([]);
      expect(valid).toBe(true);
      expect(doc.openapi).toBe("3.1.0");
      expect(doc.tags.find((t) => t.name === "tracking")).toMatchObject({ "x-displayName": `Tracking ${HOSTILE}`, "x-status": "beta" });
      expect(doc.tags.find((t) => t.name === "ledger")).toMatchObject({ "x-status": "deprecated" });
      expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/v1/tracking/shipments/{id}", "/v1/tracking/shipments", "/v1/ledger/entries"]));
      const shipment = doc.components.schemas["tracking.Shipment"]!;
      expect(shipment.properties!.eta!.type).toEqual(["string", "null"]);
      expect(shipment.properties!.weight).toEqual({ type: "number", exclusiveMinimum: 0 });
      expect(shipment.properties!.carrier!.$ref).toBe("#/components/schemas/tracking.Carrier");
    });

    it("shows each product as its own section of /docs: its name, a status badge and its description, escaped", async () => {
      const html = await (await h.req("/docs")).text();
      expect(html).toContain(`<h2 id="tag-tracking"><a class="anchor" href="#tag-tracking">Tracking ${ESCAPED}</a> <span class="badge badge-beta">beta</span></h2>`);
      expect(html).toContain(`Where parcels are ${ESCAPED}`);
      expect(html).toContain('<h2 id="tag-ledger"><a class="anchor" href="#tag-ledger">Ledger</a> <span class="badge badge-deprecated">deprecated</span></h2>');
      expect(html).toContain("Money in and out.");
      // Keyport's own sections have no badge.
      expect(html).toMatch(/<h2 id="tag-email"><a class="anchor" href="#tag-email">email<\/a><\/h2>/);
      expect(linked(html)).toEqual(expect.arrayContaining(["tracking.getShipment", "tracking.createShipment", "ledger.listEntries", "analyzeEmail"]));
      expect(html).toContain(`<span class="method method-get">GET</span> <code>/v1/tracking/shipments/{id}</code> <span>Get a shipment ${ESCAPED}</span>`);
      expect(outsideAttributes(html)).not.toContain("<img");
    });

    it("renders a product's operation page from its spec: parameters, body and answers through its renamed references, its scope and the gateway's error codes", async () => {
      const res = await h.req("/docs/tracking.getShipment");
      expect(res.status).toBe(200);
      const html = await res.text();
      expect(html).toContain(`<a href="/docs#tag-tracking">Tracking ${ESCAPED}</a> · <code>tracking.getShipment</code> <span class="badge badge-beta">beta</span>`);
      expect(html).toContain(`<h1>Get a shipment ${ESCAPED}</h1>`);
      expect(html).toContain(`Where a parcel is now. ${ESCAPED}`);
      expect(html).toContain('<span class="method method-get">GET</span> <code>/v1/tracking/shipments/{id}</code>');
      expect(html).toContain("<code>tracking:read</code>");
      // The path item's parameter (a component reference), the operation's, a header.
      expect(html).toContain("<td><code>id</code></td><td>path</td><td>string</td><td>yes</td><td>at least 3 characters</td><td><span>The shipment&#x27;s id.</span></td><td><code>shp_1</code></td>");
      expect(html).toContain('<td><code>fields</code></td><td>query</td><td>&quot;all&quot; | &quot;brief&quot;</td><td>no</td>');
      expect(html).toContain("<td><code>X-Trace</code></td><td>header</td>");
      // The answer's fields from tracking.Shipment, 3.0's nullable and exclusiveMinimum upgraded, and tracking.Carrier nested.
      expect(html).toContain(`<td><code>id</code></td><td>string</td><td>yes</td><td></td><td><span>Its id ${ESCAPED}</span></td>`);
      expect(html).toContain("<td><code>status</code></td><td>&quot;pending&quot; | &quot;in_transit&quot; | &quot;delivered&quot;</td><td>yes</td>");
      expect(html).toContain("<td><code>eta</code></td><td>string | null</td><td>no</td><td>format date-time</td>");
      expect(html).toContain("<td><code>weight</code></td><td>number</td><td>no</td><td>&gt; 0</td>");
      expect(html).toContain("<td><code>carrier.name</code></td><td>string</td><td>no</td><td>at most 40 characters</td>");
      // The 404 answer is a reference to the spec's responses.
      expect(html).toContain("No such shipment.");
      expect(html).toContain("<td><code>message</code></td><td>string</td><td>no</td><td></td><td><span>What went wrong.</span></td>");
      // The gateway's own refusals, each linked to its explanation.
      for (const code of ["missing_api_key", "insufficient_scope", "product_not_in_plan", "sandbox_unavailable", "rate_limited", "upstream_unavailable", "upstream_timeout"]) {
        expect(html).toContain(`<a href="/docs/errors#${code}"><code>${code}</code></a>`);
      }
      expect(html).toContain("a test key's to its sandbox");
      expect(html).toContain('action="/docs/tracking.getShipment/try"');
      expect(html).toContain('name="param_id" value="shp_1"');
      expect(html).toContain('name="param_X-Trace" value="trace-1"');
      // The hostile parameter's name stays inside its attribute: its quote is escaped.
      expect(html).toContain(`name="param_q&#34;${HOSTILE}"`);
      expect(outsideAttributes(html)).not.toContain("<img");

      const post = await (await h.req("/docs/tracking.createShipment")).text();
      expect(post).toContain("<code>tracking:admin</code>");
      expect(post).toContain("Request body (application/json, required)");
      expect(post).toContain("<td><code>to</code></td><td>string</td><td>yes</td><td></td><td><span>The address.</span></td>");
      expect(post).toContain("&quot;to&quot;: &quot;1 Main St&quot;");

      const ledger = await (await h.req("/docs/ledger.listEntries")).text();
      expect(ledger).toContain('<span class="badge badge-deprecated">deprecated</span>');
      expect(ledger).toContain("<td><code>[].amount</code></td><td>integer | null</td><td>no</td><td></td><td><span>In cents.</span></td>");
    });

    it("finds product operations in the search: by the product's id and name, a summary's words, the path", async () => {
      const byId = linked(await (await h.req("/docs?q=tracking")).text());
      expect(byId).toEqual(expect.arrayContaining(["tracking.getShipment", "tracking.createShipment"]));
      expect(byId).not.toContain("analyzeEmail");
      expect(byId).not.toContain("ledger.listEntries");
      const frag = await (await h.req("/docs?q=ledger%20entries", { headers: { "hx-request": "true" } })).text();
      expect(frag).toStartWith('<div id="operations"');
      expect(linked(frag)).toEqual(["ledger.listEntries"]);
      expect(linked(await (await h.req("/docs?q=POST%20%2Fv1%2Ftracking")).text())).toEqual(["tracking.createShipment"]);
      const ref = buildReference((await (await h.req("/openapi.json")).json()) as Record<string, unknown>);
      expect(searchReference(ref, "get a shipment").flatMap((t) => t.operations.map((o) => o.id))).toEqual(["tracking.getShipment"]);
      const hostile = await (await h.req(`/docs?q=${encodeURIComponent("img src")}`)).text();
      expect(linked(hostile)).toContain("tracking.getShipment");
      expect(outsideAttributes(hostile)).not.toContain("<img");
    });

    it("tries a product's operation with the sandbox key: through the chain to the product's sandbox, as a test key, never to its live server", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const page = await b.page("/docs/tracking.getShipment");
      expect(page).toMatch(/name="credential" value="sandbox" checked/);
      const before = live.received.length;

      const res = await b.post("/docs/tracking.getShipment/try", { param_id: "shp_42", param_fields: "brief", "param_X-Trace": "t-9", credential: "sandbox" }, { htmx: true });
      expect(res.status).toBe(200);
      const html = await res.text();
      expect(statusIn(html)).toBe("200 OK");
      expect(html).toContain("&quot;from&quot;: &quot;sandbox&quot;");
      expect(html).toContain("<code>GET http://localhost/v1/tracking/shipments/shp_42?fields=brief</code>");
      // The sandbox's own text in the answer is shown, escaped.
      expect(outsideAttributes(html)).not.toContain("<img");
      const call = sandbox.received.at(-1)!;
      expect(call.method).toBe("GET");
      expect(call.path).toBe("/shipments/shp_42?fields=brief");
      expect(call.headers.get("keyport-environment")).toBe("test");
      expect(call.headers.get("keyport-gateway-secret")).toBe(trackingSecret);
      expect(call.headers.get("x-trace")).toBe("t-9");
      expect(call.headers.get("authorization")).toBeNull();
      expect(live.received.length).toBe(before);
      // The gateway's rate-limit headers on the product's answer, explained.
      expect(html).toMatch(/<tr class="rate"><td><code>ratelimit<\/code><\/td><td><code>&quot;default&quot;;r=59;/);
      // The sample carries the header parameter too.
      expect(html).toContain("-H &#x27;X-Trace: t-9&#x27;");

      const created = await (await b.post("/docs/tracking.createShipment/try", { body: JSON.stringify({ to: "2 High St", weight: 1 }), credential: "sandbox" }, { htmx: true })).text();
      expect(statusIn(created)).toBe("201 Created");
      const posted = sandbox.received.at(-1)!;
      expect(posted.method).toBe("POST");
      expect(posted.path).toBe("/shipments");
      expect(posted.headers.get("content-type")).toBe("application/json");
      expect(JSON.parse(posted.body)).toEqual({ to: "2 High St", weight: 1 });

      // The sandbox key holds every product's scopes; a product registered after it was made adds its own.
      const keys = async () => (await h.deps.db.query.apiKeys.findMany()).filter((k) => k.sandboxSessionId);
      const mine = (await keys()).filter((k) => k.scopes.includes("tracking:read"));
      expect(mine.length).toBeGreaterThanOrEqual(1);
      const key = mine.at(-1)!;
      expect(key.scopes).toEqual(expect.arrayContaining(["tracking:read", "tracking:admin", "ledger:read", "email:read"]));
      await registerProduct(h.deps, { id: "parcels", name: "Parcels", upstreamUrl: live.url, sandboxUrl: sandbox.url }, spec(smallSpec("Parcels", "/lockers", "listLockers", "List lockers")), cliActor);
      const later = await (await b.post("/docs/parcels.listLockers/try", { credential: "sandbox" }, { htmx: true })).text();
      expect(statusIn(later)).toBe("200 OK");
      expect(sandbox.received.at(-1)!.path).toBe("/lockers");
      const again = (await keys()).find((k) => k.id === key.id)!;
      expect(again.scopes).toContain("parcels:read");
      expect(live.received.length).toBe(before);
    });

    it("shows a product without a sandbox refusing the sandbox key as a readable 403 sandbox_unavailable", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const before = live.received.length;
      const res = await b.post("/docs/ledger.listEntries/try", { credential: "sandbox" }, { htmx: true });
      expect(res.status).toBe(200);
      const html = await res.text();
      expect(statusIn(html)).toBe("403 Forbidden");
      expect(html).toContain('Code <a href="/docs/errors#sandbox_unavailable"><code>sandbox_unavailable</code></a>: what it means and what to do.');
      expect(text(html)).toContain("A test key's calls go to the product's sandbox, and this product has none. Call it with a live key");
      expect(html).toContain("&quot;code&quot;: &quot;sandbox_unavailable&quot;");
      expect(live.received.length).toBe(before);
    });

    it("lists the registered products on /pricing beside Keyport's own, with their status, and which plans include each", async () => {
      const html = await (await h.req("/pricing")).text();
      const words = text(html);
      for (const name of ["Email check", "IP lookup", "Batch", "Ledger", "Money in and out."]) expect(words).toContain(name);
      expect(html).toContain(`<a href="/docs#tag-tracking">Tracking ${ESCAPED}</a> <span class="badge badge-beta">beta</span>`);
      expect(html).toContain(`<dd>Where parcels are ${ESCAPED}</dd>`);
      expect(html).toContain('<a href="/docs#tag-ledger">Ledger</a> <span class="badge badge-deprecated">deprecated</span>');
      expect(html).toMatch(/<a href="\/docs#tag-email">Email check<\/a><\/dt>/);
      expect(outsideAttributes(html)).not.toContain("<img");
      // Free lists nothing: every product. Partner lists email and tracking.
      const row = (name: string) => {
        const m = new RegExp(`<tr class="plan-product"><th scope="row">${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}</th>(.*?)</tr>`).exec(html);
        return m ? [...m[1]!.matchAll(/<td class="([a-z-]+)"/g)].map((c) => c[1]) : undefined;
      };
      expect(row("Email check")).toEqual(["included", "included"]);
      expect(row("IP lookup")).toEqual(["included", "not-included"]);
      expect(row(`Tracking ${ESCAPED}`)).toEqual(["included", "included"]);
      expect(row("Ledger")).toEqual(["included", "not-included"]);
      expect(words).toContain("✓ included, — not included");
    });

    it("drops a removed product from /docs, its pages, /openapi.json and /pricing", async () => {
      await registerProduct(h.deps, { id: "gone", name: "Soon gone", description: "Here today.", upstreamUrl: live.url }, spec(smallSpec("Gone", "/things", "listThings", "List things")), cliActor);
      expect(await (await h.req("/docs")).text()).toContain('id="tag-gone"');
      expect((await h.req("/docs/gone.listThings")).status).toBe(200);
      expect(text(await (await h.req("/pricing")).text())).toContain("Soon gone");

      await removeProduct(h.deps, "gone", cliActor);
      const index = await (await h.req("/docs")).text();
      expect(index).not.toContain('id="tag-gone"');
      expect(linked(index)).not.toContain("gone.listThings");
      expect(index).toContain('id="tag-tracking"');
      expect((await h.req("/docs/gone.listThings")).status).toBe(404);
      const doc = (await (await h.req("/openapi.json")).json()) as { paths: Record<string, unknown>; tags: { name: string }[] };
      expect(Object.keys(doc.paths)).not.toContain("/v1/gone/things");
      expect(doc.tags.map((t) => t.name)).not.toContain("gone");
      const pricing = text(await (await h.req("/pricing")).text());
      expect(pricing).not.toContain("Soon gone");
      expect(pricing).toContain("Ledger");
    });
  });
}
