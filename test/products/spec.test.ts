import { describe, expect, it } from "bun:test";
import { compileProduct, matchOperation, type Product } from "../../src/products/registry.ts";
import { MAX_SPEC_BYTES, checkSpec, compileTemplate, defaultScope, namespacedSpec, parseSpecText } from "../../src/products/spec.ts";
import type { RequestParts } from "../../src/products/validate.ts";

type Json = Record<string, unknown>;

const ok = (description = "ok") => ({ "200": { description } });

/** A small valid document of the given OpenAPI version with the given paths. */
const doc = (paths: Json, extra: Json = {}, openapi = "3.1.0"): Json => ({ openapi, info: { title: "Tracking", version: "1.0.0" }, paths, ...extra });

/** A spec that passed checkSpec: its document and operations (throws with its errors otherwise). */
async function checked(raw: unknown, id = "tracking") {
  const r = await checkSpec(raw, id);
  if (!r.ok) throw new Error(`spec refused: ${JSON.stringify(r.errors)}`);
  return r;
}

/** The messages of a refused spec (throws if it was accepted); each must be a `spec` field error. */
async function refusal(raw: unknown, id = "tracking"): Promise<string[]> {
  const r = await checkSpec(raw, id);
  if (r.ok) throw new Error("expected the spec to be refused, and it was accepted");
  for (const e of r.errors) expect(e.field).toBe("spec");
  return r.errors.map((e) => e.message);
}

describe("parseSpecText", () => {
  it("reads a JSON document", () => {
    expect(parseSpecText(JSON.stringify(doc({ "/a": { get: { responses: ok() } } })))).toEqual({ ok: true, value: doc({ "/a": { get: { responses: ok() } } }) });
  });

  it("reads a YAML document", () => {
    const yaml = ["openapi: 3.0.3", "info:", "  title: Tracking", "  version: '1'", "paths:", "  /shipments/{id}:", "    get:", "      responses:", "        '200':", "          description: ok", ""].join("\n");
    const r = parseSpecText(yaml);
    expect(r).toEqual({ ok: true, value: { openapi: "3.0.3", info: { title: "Tracking", version: "1" }, paths: { "/shipments/{id}": { get: { responses: { "200": { description: "ok" } } } } } } });
  });

  it.each([
    ["broken JSON", '{"openapi": "3.1.0", "info": ', /^is not valid JSON: /],
    ["broken YAML", "openapi: [3.1.0\n  info: : :\n- ]", /^is neither JSON nor YAML: /],
    ["binary noise", "\u0000\u0001 : : ]", /^is neither JSON nor YAML: /],
  ])("answers one readable message for %s", (_, text, message) => {
    const r = parseSpecText(text);
    if (r.ok) throw new Error(`expected a refusal, got ${JSON.stringify(r.value)}`);
    expect(r.message).toMatch(message);
    expect(r.message).not.toContain("\n");
    expect(r.message.length).toBeLessThan(200);
  });

  it("refuses a text over the size limit without parsing it", () => {
    const r = parseSpecText(`{"x": "${"a".repeat(MAX_SPEC_BYTES)}"}`);
    expect(r).toEqual({ ok: false, message: "is larger than 5 MB" });
  });
});

describe("checkSpec", () => {
  it("refuses a Swagger 2.0 document with one line saying which versions it takes", async () => {
    const messages = await refusal({ swagger: "2.0", info: { title: "Old", version: "1" }, paths: { "/a": { get: { responses: ok() } } } });
    expect(messages).toEqual(['declares "swagger 2.0"; Keyport takes OpenAPI 3.0.x or 3.1.x']);
  });

  it("refuses an OpenAPI 3.2 document, and a document declaring no version, the same way", async () => {
    expect(await refusal(doc({ "/a": { get: { responses: ok() } } }, {}, "3.2.0"))).toEqual(['declares "3.2.0"; Keyport takes OpenAPI 3.0.x or 3.1.x']);
    expect(await refusal({ info: { title: "T", version: "1" }, paths: {} })).toEqual(["declares no OpenAPI version; Keyport takes OpenAPI 3.0.x or 3.1.x"]);
  });

  it("refuses what is not a document at all: a string, a list, null", async () => {
    for (const raw of ["just text", [1, 2], null]) expect((await refusal(raw))[0]).toContain("is not an OpenAPI document");
  });

  // Two tests: each version's OpenAPI schema is compiled on its first use, a second of CPU.
  it("accepts a 3.0 document, answering its version and operations", async () => {
    const three0 = await checked(doc({ "/shipments/{id}": { get: { operationId: "getShipment", summary: "One shipment", parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }], responses: ok() } } }, {}, "3.0.3"));
    expect(three0.version).toBe("3.0");
    expect(three0.operations).toEqual([{ method: "GET", template: "/shipments/{id}", operationId: "getShipment", summary: "One shipment", scope: "tracking:read", pointer: "/paths/~1shipments~1{id}/get" }]);
  });

  it("accepts a 3.1 document, answering its version and operations", async () => {
    const three1 = await checked(doc({ "/shipments": { post: { responses: ok() } } }));
    expect(three1.version).toBe("3.1");
    expect(three1.operations.map((o) => `${o.method} ${o.template} ${o.scope}`)).toEqual(["POST /shipments tracking:write"]);
  });

  it("lists every way a document fails the OpenAPI schema at once, each as a spec field error", async () => {
    const messages = await refusal({ openapi: "3.1.0", info: { version: 1 }, paths: { "/a": { get: { responses: 5 }, post: { parameters: "x", responses: ok() } } }, bogus: true });
    expect(messages).toContain("/info must have required property 'title'");
    expect(messages).toContain("/info/version must be string");
    expect(messages).toContain("/paths/~1a/get/responses must be object");
    expect(messages).toContain("/paths/~1a/post/parameters must be array");
    expect(messages.some((m) => m.includes("(bogus)"))).toBe(true);
  });

  it("lists a 3.0 document's mistakes without the noise of the schema's alternatives", async () => {
    const messages = await refusal(doc({ "/a/{id}": { get: { parameters: [{ name: "id", schema: { type: "strin" } }], responses: { "200": { content: {} } } } } }, {}, "3.0.3"));
    expect(messages).toContain("/paths/~1a~1{id}/get/parameters/0 must have required property 'in'");
    expect(messages).toContain("/paths/~1a~1{id}/get/responses/200 must have required property 'description'");
    expect(messages.find((m) => m.startsWith("/paths/~1a~1{id}/get/parameters/0/schema/type"))).toContain('"integer", "number", "object", "string"');
    // The Reference branch of each oneOf and the oneOf summaries say nothing the lines above do not.
    expect(messages.filter((m) => m.includes("'$ref'") || m.includes("oneOf"))).toEqual([]);
  });

  it("lists at most 20 errors, then how many more there are", async () => {
    const paths = Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`/p${i}`, { get: { responses: 5 } }]));
    const messages = await refusal(doc(paths));
    expect(messages).toHaveLength(21);
    expect(messages.slice(0, 20).every((m) => / must be object$/.test(m))).toBe(true);
    const more = /^and (\d+) more$/.exec(messages[20]!);
    expect(more).not.toBeNull();
    expect(Number(more![1])).toBeGreaterThanOrEqual(10);
  });

  it("refuses a $ref outside the document, saying where it is", async () => {
    const messages = await refusal(doc({ "/a": { get: { responses: { "200": { description: "ok", content: { "application/json": { schema: { $ref: "https://example.com/shared.json#/Shipment" } } } } } } } }));
    expect(messages).toEqual(['/paths/~1a/get/responses/200/content/application~1json/schema: $ref "https://example.com/shared.json#/Shipment" points outside the spec; inline it']);
  });

  it("refuses a $ref to a component that does not exist, with a line naming it", async () => {
    const messages = await refusal(doc({ "/a": { get: { responses: { "200": { description: "ok", content: { "application/json": { schema: { $ref: "#/components/schemas/Missing" } } } } } } } }));
    expect(messages).toHaveLength(1);
    expect(messages[0]).toContain("#/components/schemas/Missing");
  });

  it("refuses two operations that match the same requests, whatever their parameters are called", async () => {
    const messages = await refusal(
      doc({
        "/a/{x}": { get: { responses: ok() } },
        "/a/{y}": { get: { responses: ok() }, post: { responses: ok() } },
      }),
    );
    expect(messages).toEqual(["/paths/~1a~1{y}/get: matches the same requests as GET /a/{x}"]);
  });

  it("takes an x-keyport-scope of the product's own, and refuses one of another prefix or of a bad shape", async () => {
    const own = await checked(doc({ "/labels": { post: { "x-keyport-scope": "tracking:labels", responses: ok() } } }));
    expect(own.operations[0]!.scope).toBe("tracking:labels");
    for (const scope of ["email:read", "billing:write", "tracking:", "tracking:Read", "tracking:re ad", `tracking:${"a".repeat(33)}`, 42, "tracking"]) {
      const messages = await refusal(doc({ "/labels": { post: { "x-keyport-scope": scope, responses: ok() } } }));
      expect(messages).toEqual(['/paths/~1labels/post/x-keyport-scope must be "tracking:" then 1-32 lowercase letters, digits, "_" or "-"']);
    }
  });

  it("refuses a document without any operation", async () => {
    expect(await refusal(doc({}))).toEqual(["/paths has no operation: a product needs at least one"]);
    expect(await refusal({ openapi: "3.1.0", info: { title: "T", version: "1" }, components: { schemas: { A: { type: "string" } } } })).toEqual(["/paths has no operation: a product needs at least one"]);
  });

  it("gives GET and HEAD the read scope and every other method the write scope", async () => {
    const methods = ["get", "head", "post", "put", "patch", "delete", "options"] as const;
    const r = await checked(doc({ "/things": Object.fromEntries(methods.map((m) => [m, { responses: ok() }])) }));
    expect(Object.fromEntries(r.operations.map((o) => [o.method, o.scope]))).toEqual({ GET: "tracking:read", HEAD: "tracking:read", POST: "tracking:write", PUT: "tracking:write", PATCH: "tracking:write", DELETE: "tracking:write", OPTIONS: "tracking:write" });
    expect(defaultScope("tracking", "HEAD")).toBe("tracking:read");
  });

  it("makes up operation ids from the method and path, unique, never taking one the spec gives", async () => {
    const r = await checked(
      doc({
        "/a-b": { get: { responses: ok() } },
        "/a/b": { get: { responses: ok() } },
        "/a/b/c": { get: { operationId: "get-a-b-2", responses: ok() } },
        "/shipments/{id}": { delete: { operationId: "not a valid id!", responses: ok() } },
      }),
    );
    expect(r.operations.map((o) => o.operationId)).toEqual(["get-a-b", "get-a-b-3", "get-a-b-2", "delete-shipments-id"]);
  });

  it("refuses an operation id the spec gives twice", async () => {
    const messages = await refusal(doc({ "/a": { get: { operationId: "list", responses: ok() } }, "/b": { get: { operationId: "list", responses: ok() } } }));
    expect(messages).toEqual(['/paths/~1b/get/operationId "list" is used twice']);
  });
});

describe("compileTemplate", () => {
  it("matches a template's own requests and no others, with its parameters in order", () => {
    const m = compileTemplate("/accounts/{account}/shipments/{id}");
    expect(m.params).toEqual(["account", "id"]);
    expect(m.regex.exec("/accounts/a1/shipments/42")?.slice(1)).toEqual(["a1", "42"]);
    for (const miss of ["/accounts/a1/shipments/42/x", "/accounts/a1/shipments/", "/accounts//shipments/42", "/x/accounts/a1/shipments/42", "/accounts/a/b/shipments/1"]) expect(m.regex.test(miss)).toBe(false);
  });

  it("takes the template's other characters literally, a parameter beside them included", () => {
    const m = compileTemplate("/v1.0/files/{name}.json");
    expect(m.regex.exec("/v1.0/files/report.json")?.[1]).toBe("report");
    expect(m.regex.test("/v1x0/files/report.json")).toBe(false);
    expect(m.regex.test("/v1.0/files/report.jsonx")).toBe(false);
    expect(compileTemplate("/a+b/(c)").regex.test("/a+b/(c)")).toBe(true);
    expect(compileTemplate("/a+b/(c)").regex.test("/aab/c")).toBe(false);
  });

  it("counts literal characters, so a fixed path ranks before a template that also matches it", () => {
    const latest = compileTemplate("/shipments/latest");
    const byId = compileTemplate("/shipments/{id}");
    expect(latest.literal).toBe("/shipments/latest".length);
    expect(byId.literal).toBe("/shipments/".length);
    expect(latest.literal).toBeGreaterThan(byId.literal);
    expect(byId.regex.test("/shipments/latest")).toBe(true);
  });
});

describe("namespacedSpec", () => {
  const spec30 = doc(
    {
      "/": { get: { operationId: "root", responses: ok() } },
      "/items/{id}": {
        summary: "An item",
        parameters: [{ $ref: "#/components/parameters/Id" }],
        get: {
          operationId: "getItem",
          tags: ["theirs"],
          security: [{ theirs: [] }],
          responses: { "200": { description: "ok", content: { "application/json": { schema: { $ref: "#/components/schemas/Item" } } } } },
        },
      },
    },
    {
      components: {
        parameters: { Id: { name: "id", in: "path", required: true, schema: { type: "integer" } } },
        schemas: {
          Item: {
            type: "object",
            properties: {
              label: { type: "string", nullable: true },
              weight: { type: "number", minimum: 0, exclusiveMinimum: true, maximum: 100, exclusiveMaximum: false },
              parent: { nullable: true, allOf: [{ $ref: "#/components/schemas/Item" }] },
            },
          },
        },
        securitySchemes: { theirs: { type: "http", scheme: "basic" } },
      },
    },
    "3.0.3",
  );

  it("puts the paths under /v1/<id>, its own root included, and keeps path-level fields", async () => {
    const r = await checked(spec30);
    const ns = namespacedSpec("tracking", r.spec, r.version, r.operations);
    expect(Object.keys(ns.paths).sort()).toEqual(["/v1/tracking", "/v1/tracking/items/{id}"]);
    expect(ns.paths["/v1/tracking/items/{id}"]!.summary).toBe("An item");
    expect(ns.paths["/v1/tracking/items/{id}"]!.parameters).toEqual([{ $ref: "#/components/parameters/tracking.Id" }]);
  });

  it("renames components <id>.<name> and every $ref to them, and drops the spec's own security schemes", async () => {
    const r = await checked(spec30);
    const ns = namespacedSpec("tracking", r.spec, r.version, r.operations);
    expect(Object.keys(ns.components).sort()).toEqual(["parameters", "schemas"]);
    expect(Object.keys(ns.components.schemas!)).toEqual(["tracking.Item"]);
    expect(Object.keys(ns.components.parameters!)).toEqual(["tracking.Id"]);
    const get = ns.paths["/v1/tracking/items/{id}"]!.get as Json;
    expect(JSON.stringify(get.responses)).toContain('"$ref":"#/components/schemas/tracking.Item"');
    expect(JSON.stringify(ns)).not.toContain('"#/components/schemas/Item"');
  });

  it("follows a $ref into another operation to its path under /v1/<id>", async () => {
    const r = await checked(doc({ "/items/{id}": { get: { responses: { "200": { description: "one item" } } } }, "/items": { get: { responses: { "200": { $ref: "#/paths/~1items~1%7Bid%7D/get/responses/200" } } } } }));
    const ns = namespacedSpec("tracking", r.spec, r.version, r.operations);
    const ref = ((ns.paths["/v1/tracking/items"]!.get as Json).responses as Record<string, Json>)["200"]!.$ref as string;
    expect(ref).toBe("#/paths/~1v1~1tracking~1items~1%7Bid%7D/get/responses/200");
    const target = ref
      .slice(2)
      .split("/")
      .map((s) => decodeURIComponent(s).replace(/~1/g, "/").replace(/~0/g, "~"))
      .reduce<unknown>((n, k) => (n as Json)[k], ns);
    expect(target).toEqual({ description: "one item" });
  });

  it("gives each operation the gateway's id, tag, credentials and scope in place of the spec's", async () => {
    const r = await checked(spec30);
    const get = namespacedSpec("tracking", r.spec, r.version, r.operations).paths["/v1/tracking/items/{id}"]!.get as Json;
    expect(get).toMatchObject({ operationId: "tracking.getItem", tags: ["tracking"], security: [{ bearer: ["tracking:read"] }, { apiKey: ["tracking:read"] }], "x-keyport-scope": "tracking:read" });
  });

  it("upgrades a 3.0 document's nullable and boolean exclusiveMinimum/Maximum to JSON Schema 2020-12", async () => {
    const r = await checked(spec30);
    const item = namespacedSpec("tracking", r.spec, r.version, r.operations).components.schemas!["tracking.Item"] as { properties: Record<string, Json> };
    expect(item.properties.label).toEqual({ type: ["string", "null"] });
    expect(item.properties.weight).toEqual({ type: "number", exclusiveMinimum: 0, maximum: 100 });
    // Without a type, null must pass the other keywords by: a branch of its own.
    expect(item.properties.parent).toEqual({ anyOf: [{ allOf: [{ $ref: "#/components/schemas/tracking.Item" }] }, { type: "null" }] });
  });

  it("leaves a 3.1 document's schemas as they are", async () => {
    const weight = { type: "number", exclusiveMinimum: 0, maximum: 100 };
    const r = await checked(doc({ "/w": { get: { responses: { "200": { description: "ok", content: { "application/json": { schema: { type: ["string", "null"] } } } } } } } }, { components: { schemas: { W: weight } } }));
    const ns = namespacedSpec("tracking", r.spec, r.version, r.operations);
    expect(ns.components.schemas!["tracking.W"]).toEqual(weight);
    expect(JSON.stringify(ns.paths["/v1/tracking/w"])).toContain('"type":["string","null"]');
  });
});

describe("request checks (a product that validates requests)", () => {
  const spec = doc(
    {
      "/items/{id}": {
        parameters: [{ name: "id", in: "path", required: true, schema: { type: "integer" } }],
        get: { operationId: "getItem", parameters: [{ name: "mode", in: "query", required: true, schema: { $ref: "#/components/schemas/Mode" } }, { name: "tag", in: "query", schema: { type: "array", items: { type: "string", maxLength: 3 } } }], responses: ok() },
      },
      "/items": {
        post: { operationId: "addItem", requestBody: { $ref: "#/components/requestBodies/NewItem" }, responses: ok() },
        put: { operationId: "putItem", requestBody: { content: { "application/json": { schema: { $ref: "#/components/schemas/Item" } }, "text/csv": { schema: { type: "string" } } } }, responses: ok() },
      },
    },
    {
      components: {
        schemas: {
          Mode: { type: "string", enum: ["full", "brief"] },
          Item: { type: "object", required: ["name", "count"], properties: { name: { type: "string" }, count: { type: "integer" }, note: { nullable: true, allOf: [{ $ref: "#/components/schemas/Note" }] } } },
          Note: { type: "object", properties: { text: { type: "string" } } },
        },
        requestBodies: { NewItem: { required: true, content: { "application/json": { schema: { $ref: "#/components/schemas/Item" } } } } },
      },
    },
    "3.0.3",
  );

  let product: Promise<Product> | undefined;
  const compiled = () =>
    (product ??= compileProduct(
      {
        id: "tracking",
        name: "Tracking",
        description: "",
        status: "active",
        upstreamUrl: "http://127.0.0.1:1",
        sandboxUrl: null,
        timeoutMs: 30_000,
        maxBodyBytes: 1024,
        validateRequests: true,
        secretSealed: "unused",
        activeVersion: 1,
        createdAt: new Date(0),
        updatedAt: new Date(0),
      },
      spec,
      "kpgw_test",
    ));

  /** The checks' answer for a request reaching the product at `method path?query`. */
  async function errorsFor(method: string, target: string, body: Partial<Pick<RequestParts, "body" | "json">> = {}) {
    const [path, query = ""] = target.split("?") as [string, string?];
    const match = matchOperation(await compiled(), method, path);
    if (!match) throw new Error(`no operation for ${method} ${path}`);
    expect(match.operation.check).toBeDefined();
    return match.operation.check!({ path: match.params, query: new URLSearchParams(query), body: body.body, json: body.json ?? true });
  }

  it("coerces a path parameter to its schema's integer, and refuses one that is not", async () => {
    expect(await errorsFor("GET", "/items/12?mode=full")).toEqual([]);
    expect(await errorsFor("GET", "/items/twelve?mode=full")).toEqual([{ field: "path.id", message: "must be integer" }]);
  });

  it("refuses a missing required query parameter, and one outside its $ref'd enum, listing the values", async () => {
    expect(await errorsFor("GET", "/items/12")).toEqual([{ field: "query.mode", message: "is required" }]);
    expect(await errorsFor("GET", "/items/12?mode=all")).toEqual([{ field: "query.mode", message: 'must be equal to one of the allowed values: "full", "brief"' }]);
  });

  it("checks a repeated query parameter as the list its schema says", async () => {
    expect(await errorsFor("GET", "/items/12?mode=brief&tag=a&tag=bcd")).toEqual([]);
    expect(await errorsFor("GET", "/items/12?mode=brief&tag=a&tag=long")).toEqual([{ field: "query.tag.1", message: "must NOT have more than 3 characters" }]);
  });

  it("checks a JSON body against a $ref'd component schema, naming each failing field", async () => {
    expect(await errorsFor("PUT", "/items", { body: { name: "box", count: 2 } })).toEqual([]);
    const errors = await errorsFor("PUT", "/items", { body: { name: 7 } });
    expect(errors.sort((a, b) => a.field.localeCompare(b.field))).toEqual([
      { field: "body.count", message: "is required" },
      { field: "body.name", message: "must be string" },
    ]);
  });

  it("checks a body given as a $ref'd requestBody, required when it says so", async () => {
    expect(await errorsFor("POST", "/items", { body: { name: "box", count: 2 } })).toEqual([]);
    expect(await errorsFor("POST", "/items", { body: { name: "box" } })).toEqual([{ field: "body.count", message: "is required" }]);
    expect(await errorsFor("POST", "/items")).toEqual([{ field: "body", message: "is required" }]);
  });

  it("checks a JSON body as sent: a number sent as text is refused, since the upstream gets the text", async () => {
    expect(await errorsFor("PUT", "/items", { body: { name: "box", count: "2" } })).toEqual([{ field: "body.count", message: "must be integer" }]);
  });

  it("lets null through a 3.0 nullable field that has no type of its own", async () => {
    expect(await errorsFor("PUT", "/items", { body: { name: "box", count: 2, note: null } })).toEqual([]);
    expect(await errorsFor("PUT", "/items", { body: { name: "box", count: 2, note: { text: 5 } } })).toEqual([{ field: "body.note.text", message: "must be string" }]);
  });

  it("does not check a body that is not JSON", async () => {
    expect(await errorsFor("PUT", "/items", { body: new TextEncoder().encode("name,count\nbox,two"), json: false })).toEqual([]);
  });
});

