import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { Validator } from "@seriousme/openapi-schema-validator";
import { SCOPE_NAMES } from "../../src/keys/scopes.ts";
import { backends } from "../support/backends.ts";
import { bearer, newAccount, newKey, rejection } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { openApiChecker, pointer, type MediaType, type Operation, type OpenApiChecker } from "../support/openapi.ts";

type Document = {
  openapi: string;
  tags: { name: string }[];
  paths: Record<string, Record<string, Operation>>;
};

const METHODS = new Set(["get", "put", "post", "delete", "patch", "head", "options"]);

/** Every operation of the document with its path template and method. */
function operations(doc: Document): { template: string; method: string; op: Operation }[] {
  return Object.entries(doc.paths).flatMap(([template, item]) =>
    Object.entries(item)
      .filter(([method]) => METHODS.has(method))
      .map(([method, op]) => ({ template, method, op })),
  );
}

/** Every example in the document, where it sits, and the pointer to the schema it illustrates. */
function examples(doc: Document): { where: string; schema: string; example: unknown }[] {
  const out: { where: string; schema: string; example: unknown }[] = [];
  const media = (parts: string[], content: Record<string, MediaType> | undefined) => {
    for (const [type, m] of Object.entries(content ?? {})) {
      if (m.example !== undefined) out.push({ where: parts.concat(type).join(" "), schema: pointer(...parts, "content", type, "schema"), example: m.example });
    }
  };
  for (const { template, method, op } of operations(doc)) {
    media(["paths", template, method, "requestBody"], op.requestBody?.content);
    for (const [status, answer] of Object.entries(op.responses ?? {})) media(["paths", template, method, "responses", status], answer.content);
  }
  return out;
}

describe("GET /openapi.json", () => {
  let h: Harness;
  let doc: Document;
  let docs: OpenApiChecker;
  beforeAll(async () => {
    h = await startHarness(backends[0]!);
    const res = await h.req("/openapi.json");
    expect(res.status).toBe(200);
    doc = (await res.json()) as Document;
    docs = openApiChecker(doc);
  });
  afterAll(() => h.close());

  it("is a valid OpenAPI 3.1.0 document", async () => {
    expect(doc.openapi).toBe("3.1.0");
    const { valid, errors } = await new Validator().validate(structuredClone(doc) as unknown as Record<string, unknown>);
    expect(errors ?? []).toEqual([]);
    expect(valid).toBe(true);
  });

  it("has an operation for every /v1 and /api route of the app, and none for a route that does not exist", () => {
    // The products' proxy routes (/v1/:product/*) are documented by the registered products' specs.
    const routes = h.app.routes.filter((r) => /^\/(v1|api)\//.test(r.path) && !r.path.startsWith("/v1/:product")).map((r) => `${r.method.toUpperCase()} ${r.path.replace(/:(\w+)/g, "{$1}")}`);
    const documented = operations(doc).map(({ template, method }) => `${method.toUpperCase()} ${template}`);
    expect(routes.length).toBeGreaterThan(20);
    expect(documented.sort()).toEqual([...new Set(routes)].sort());
  });

  it("leaves out the portal, the ops routes and itself", () => {
    const paths = Object.keys(doc.paths);
    for (const absent of ["/", "/portal", "/login", "/signup", "/healthz", "/readyz", "/metrics", "/openapi.json"]) expect(paths).not.toContain(absent);
    expect(paths.filter((p) => !/^\/(v1|api)\//.test(p))).toEqual([]);
  });

  it("gives every operation a unique id, a declared tag, a scope and a documented JSON success with an example", () => {
    const tags = new Set(doc.tags.map((t) => t.name));
    const ids = new Map<string, string>();
    for (const { template, method, op } of operations(doc)) {
      const where = `${method.toUpperCase()} ${template}`;
      expect(`${where}: ${op.operationId}`).toMatch(/: \w+$/);
      expect(`${where} and ${ids.get(op.operationId!) ?? "no other"} share ${op.operationId}`).toBe(`${where} and no other share ${op.operationId}`);
      ids.set(op.operationId!, where);
      expect(`${where}: ${(op.tags ?? []).filter((t) => !tags.has(t)).join(", ")}`).toBe(`${where}: `);
      expect(op.tags?.length).toBeGreaterThan(0);
      const scopes = (op.security ?? []).flatMap((s) => Object.values(s).flat());
      expect(`${where}: ${scopes.length > 0 && scopes.every((s) => (SCOPE_NAMES as string[]).includes(s))}`).toBe(`${where}: true`);
      const successes = Object.entries(op.responses ?? {}).filter(([status, a]) => /^2\d\d$/.test(status) && a.content?.["application/json"]?.schema && a.content["application/json"].example !== undefined);
      expect(`${where}: ${successes.length > 0}`).toBe(`${where}: true`);
    }
  });

  it("names in each operation the scope its route checks", async () => {
    const account = await newAccount(h);
    const keys = new Map<string, { only: string; others: string }>();
    for (const scope of SCOPE_NAMES) {
      const others = SCOPE_NAMES.filter((s) => s !== scope);
      keys.set(scope, {
        only: (await newKey(h, account.id, { scopes: [scope], rateLimit: 10_000 })).secret,
        others: (await newKey(h, account.id, { scopes: others, rateLimit: 10_000 })).secret,
      });
    }
    for (const { template, method, op } of operations(doc)) {
      const [scope] = Object.values(op.security![0]!)[0]!;
      const path = template.replace(/\{\w+\}/g, "x");
      const json = method === "get" || method === "delete" ? undefined : {};
      const init = (secret: string) => ({ method: method.toUpperCase(), headers: bearer(secret), json });
      const granted = await h.req(path, init(keys.get(scope!)!.only));
      const refused = await h.req(path, init(keys.get(scope!)!.others));
      const code = async (res: Response) => `${res.status} ${((await res.json()) as { code?: string }).code ?? ""}`;
      expect(`${method} ${path} with ${scope}: ${await code(granted)}`).not.toBe(`${method} ${path} with ${scope}: 403 insufficient_scope`);
      expect(`${method} ${path} without ${scope}: ${await code(refused)}`).toBe(`${method} ${path} without ${scope}: 403 insufficient_scope`);
    }
  });

  it("gives every operation that takes a body an example of one", () => {
    const withBody = operations(doc).filter(({ op }) => op.requestBody);
    expect(withBody.length).toBeGreaterThan(5);
    for (const { template, method, op } of withBody) {
      expect(`${method} ${template}: ${op.requestBody?.content?.["application/json"]?.example !== undefined}`).toBe(`${method} ${template}: true`);
    }
  });

  it("holds examples that match their own schemas", () => {
    const all = examples(doc);
    expect(all.length).toBeGreaterThan(operations(doc).length);
    const wrong = all.flatMap(({ where, schema, example }) => {
      const errors = docs.validateAt(schema, example);
      return errors === undefined ? [] : [`${where}: ${errors}`];
    });
    expect(wrong).toEqual([]);
  });

  it("answers with an ETag and Cache-Control, and 304 to a matching If-None-Match", async () => {
    const first = await h.req("/openapi.json");
    const etag = first.headers.get("etag");
    expect(etag).toMatch(/^"[0-9a-f]+"$/);
    expect(first.headers.get("cache-control")).toContain("max-age=");
    const again = await h.req("/openapi.json", { headers: { "if-none-match": etag! } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe("");
    expect(again.headers.get("etag")).toBe(etag);
    expect((await h.req("/openapi.json", { headers: { "if-none-match": '"stale"' } })).status).toBe(200);
  });
});

/** The checker the harness runs on every /v1 and /api answer: it must refuse what drifts. */
describe("openApiChecker", () => {
  let h: Harness;
  let docs: OpenApiChecker;
  beforeAll(async () => {
    h = await startHarness(backends[0]!);
    docs = openApiChecker(await (await h.req("/openapi.json")).json());
  });
  afterAll(() => h.close());

  const problem = { type: "http://localhost/docs/errors#not_found", title: "Not Found", status: 404, detail: "No such key.", code: "not_found" };

  it("accepts an answer the document describes", () => {
    expect(docs.check("GET", "/api/keys/key_1", 404, "application/problem+json", problem)).toBeUndefined();
    expect(docs.check("GET", "/api/notifications", 200, "application/json; charset=utf-8", { unread: 0, data: [] })).toBeUndefined();
  });

  it("refuses a status the operation does not document", () => {
    expect(docs.check("GET", "/api/notifications", 404, "application/problem+json", problem)).toContain("status 404 is not documented");
  });

  it("refuses a content type the status does not document", () => {
    expect(docs.check("GET", "/api/keys/key_1", 404, "application/json", problem)).toContain("content type application/json is not documented");
  });

  it("refuses a body that misses a field, has an unknown one, or a code of another status", () => {
    expect(docs.check("GET", "/api/notifications", 200, "application/json", { data: [] })).toContain("must have required property 'unread'");
    expect(docs.check("GET", "/api/notifications", 200, "application/json", { unread: 0, data: [], extra: 1 })).toContain("must NOT have additional properties");
    const { title: _, ...untitled } = problem;
    expect(docs.check("GET", "/api/keys/key_1", 404, "application/problem+json", untitled)).toContain("must have required property 'title'");
    expect(docs.check("GET", "/api/keys/key_1", 404, "application/problem+json", { ...problem, code: "rate_limited" })).toContain("must be equal to one of the allowed values");
  });

  it("matches a literal path before a parameter, ignores the query and one trailing slash, and skips paths it does not document", () => {
    expect(docs.operationFor("POST", "/api/keys/key_1/rotations/emergency")?.operation.operationId).toBe("rotateNow");
    expect(docs.operationFor("GET", "/api/keys/key_1/usage?days=7")?.operation.operationId).toBe("getKeyUsage");
    expect(docs.operationFor("GET", "/api/keys/")?.operation.operationId).toBe("listKeys");
    expect(docs.operationFor("GET", "/api/nothing/here")).toBeUndefined();
    expect(docs.operationFor("PUT", "/api/keys")).toBeUndefined();
    expect(docs.check("GET", "/api/nothing/here", 404, "application/problem+json", { anything: true })).toBeUndefined();
  });

  it("makes h.req reject a /v1 or /api answer that drifts, naming the request, and still hand over the body of one that does not", async () => {
    const account = await newAccount(h);
    const { secret } = await newKey(h, account.id, { scopes: ["keys:manage"] });
    const real = await h.req("/api/notifications", { headers: bearer(secret) });
    expect(await real.json()).toMatchObject({ unread: 1, data: [{ event: "key.created" }] });
    // The app answering as a route that drifted from its documentation would.
    const app = h.app as unknown as { handle: (r: Request) => Promise<Response> };
    const handle = app.handle;
    app.handle = async (r) => (new URL(r.url).pathname === "/api/notifications" ? Response.json({ unread: "0", data: [] }) : handle(r));
    try {
      const err = await rejection(h.req("/api/notifications", { headers: bearer(secret) }));
      expect(err.message).toContain("GET /api/notifications → 200 (listNotifications)");
      expect(err.message).toContain("/unread must be integer");
    } finally {
      app.handle = handle;
    }
  });
});
