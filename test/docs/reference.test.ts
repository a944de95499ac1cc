import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { ERROR_CODES } from "../../src/errors.ts";
import { buildReference, searchReference } from "../../src/docs/reference.ts";
import { codeSamples, PLACEHOLDER_KEY } from "../../src/docs/samples.ts";
import { formErrors, initialForm, tryRequest } from "../../src/docs/tryit.ts";
import { OperationPage, DocsIndexPage } from "../../views/docs/reference.tsx";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { email } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const HOSTILE = `<img src=x onerror=alert(1)>`;
/** The markup outside quoted attribute values (where `<` is text, and kitajs escapes the quote). */
const outsideAttributes = (html: string) => html.replace(/="[^"]*"/g, '=""');

type Doc = { paths: Record<string, Record<string, { operationId: string; parameters?: { name: string }[]; security: Record<string, string[]>[] }>> };

/** A document whose every text is hostile, with a hand-written curl sample. */
const hostileDocument = () => ({
  openapi: "3.1.0",
  info: { title: `API ${HOSTILE}`, version: `1 ${HOSTILE}`, description: `Desc \`${HOSTILE}\` ${HOSTILE}` },
  tags: [{ name: `t${HOSTILE}`, description: HOSTILE }],
  paths: {
    [`/v1/x/{p${HOSTILE}}`]: {
      post: {
        operationId: `op${HOSTILE}`,
        tags: [`t${HOSTILE}`],
        summary: `Sum ${HOSTILE}`,
        description: HOSTILE,
        security: [{ bearer: [`s${HOSTILE}`] }],
        "x-codeSamples": [{ lang: "curl", label: `Mine ${HOSTILE}`, source: `curl ${HOSTILE}` }],
        parameters: [{ name: `p${HOSTILE}`, in: "path", required: true, description: HOSTILE, example: HOSTILE, schema: { type: "string", pattern: HOSTILE } }],
        requestBody: { required: true, content: { "application/json": { schema: { type: "object", properties: { [HOSTILE]: { type: "string", description: HOSTILE } } }, example: { [HOSTILE]: HOSTILE } } } },
        responses: {
          "200": { description: HOSTILE, content: { "application/json": { schema: { type: "object", properties: { [HOSTILE]: { enum: [HOSTILE] } } }, example: { a: HOSTILE } } } },
        },
      },
    },
  },
});

describe("the reference model and its samples", () => {
  it("renders every text of the document escaped", () => {
    const ref = buildReference(hostileDocument());
    const op = [...ref.operations.values()][0]!;
    const form = initialForm(op, false);
    const page = String(
      OperationPage({
        op,
        tryIt: { op, form, credentials: ["pasted"], notes: [HOSTILE], signedIn: false, samples: codeSamples(op, { method: op.method, url: `http://h/${HOSTILE}`, body: { [HOSTILE]: 1 } }, PLACEHOLDER_KEY) },
      }),
    );
    const index = String(DocsIndexPage({ title: ref.title, description: ref.description, version: ref.version, tags: ref.tags, q: HOSTILE }));
    for (const html of [page, index]) {
      expect(outsideAttributes(html)).not.toContain("<img");
      expect(outsideAttributes(html)).not.toMatch(/<key>/);
      expect(html).toContain("&lt;img src=x onerror=alert(1)&gt;");
    }
  });

  it("renders a product tag's display name and status escaped, and an unknown status as a plain badge", () => {
    const doc = { ...hostileDocument(), tags: [{ name: `t${HOSTILE}`, description: HOSTILE, "x-displayName": `Name ${HOSTILE}`, "x-status": `"${HOSTILE}` }] };
    const ref = buildReference(doc);
    expect(ref.tags[0]).toMatchObject({ title: `Name ${HOSTILE}`, status: `"${HOSTILE}` });
    const op = [...ref.operations.values()][0]!;
    expect(op).toMatchObject({ tagTitle: `Name ${HOSTILE}`, status: `"${HOSTILE}` });
    const page = String(OperationPage({ op, tryIt: { op, form: initialForm(op, false), credentials: ["pasted"], notes: [], signedIn: false, samples: [] } }));
    const index = String(DocsIndexPage({ title: ref.title, description: ref.description, version: ref.version, tags: ref.tags, q: "" }));
    for (const html of [page, index]) {
      expect(outsideAttributes(html)).not.toContain("<img");
      expect(html).toContain(`<span class="badge">&quot;&lt;img src=x onerror=alert(1)&gt;</span>`);
      expect(html).toContain(`Name &lt;img src=x onerror=alert(1)&gt;`);
    }
  });

  it("follows references of parameters, bodies, answers and schemas (cycles and dangling ones end), and merges the path item's parameters", () => {
    const ref = buildReference({
      openapi: "3.1.0",
      info: { title: "T", version: "1" },
      paths: {
        "/v1/p/nodes/{id}": {
          parameters: [{ $ref: "#/components/parameters/p.Id" }, { name: "limit", in: "query", schema: { type: "integer" } }],
          put: {
            operationId: "p.putNode",
            tags: ["p"],
            "x-keyport-scope": "p:write",
            parameters: [{ name: "limit", in: "query", description: "The operation's own.", schema: { type: "integer", maximum: 9 } }, { $ref: "#/components/parameters/p.Missing" }],
            requestBody: { $ref: "#/components/requestBodies/p.Node" },
            responses: {
              "200": { $ref: "#/components/responses/p.Ok" },
              "403": {
                description: "Refused, or the product's own refusal.",
                content: {
                  "application/problem+json": { schema: { allOf: [{ $ref: "#/components/schemas/Problem" }, { properties: { code: { enum: ["sandbox_unavailable"] } } }] } },
                  "application/json": { schema: { $ref: "#/components/schemas/p.Denied" }, examples: { one: { value: { why: "no" } } } },
                },
              },
            },
          },
        },
      },
      components: {
        parameters: { "p.Id": { name: "id", in: "path", required: true, schema: { $ref: "#/components/schemas/p.Id" } } },
        requestBodies: { "p.Node": { required: true, content: { "application/json": { schema: { $ref: "#/components/schemas/p.Node" } } } } },
        responses: { "p.Ok": { description: "The node.", content: { "application/json": { schema: { $ref: "#/components/schemas/p.Node" } } } } },
        schemas: {
          Problem: { type: "object", properties: { code: { type: "string" } } },
          "p.Id": { type: "string", minLength: 2 },
          "p.Node": { type: "object", properties: { name: { type: "string" }, child: { anyOf: [{ $ref: "#/components/schemas/p.Node" }, { type: "null" }] }, ghost: { $ref: "#/components/schemas/p.Nowhere" } } },
          "p.Denied": { type: "object", properties: { why: { type: "string" } } },
        },
      },
    });
    const op = ref.operations.get("p.putNode")!;
    expect(op).toMatchObject({ upstream: true, changes: true, gateway: true, tagTitle: "p", status: undefined });
    expect(op.params.map((p) => [p.name, p.in, p.type, p.constraints, p.description])).toEqual([
      ["id", "path", "string", "at least 2 characters", ""],
      ["limit", "query", "integer", "at most 9", "The operation's own."],
    ]);
    const names = op.body!.rows.map((r) => r.name);
    expect(op.body!.required).toBe(true);
    expect(names.slice(0, 4)).toEqual(["name", "child", "child.name", "child.child"]);
    expect(names.length).toBeLessThan(30);
    expect(op.body!.rows.find((r) => r.name === "ghost")!.type).toBe("any");
    const [ok, refused] = op.answers;
    expect(ok).toMatchObject({ status: "200", description: "The node.", described: true, codes: [] });
    expect(refused).toMatchObject({ contentType: "application/problem+json, application/json", described: true, codes: ["sandbox_unavailable"], example: { why: "no" } });
    expect(refused!.rows.map((r) => r.name)).toEqual(["why"]);
    expect(op.errorCodes).toEqual([{ code: "sandbox_unavailable", status: 403 }]);
    expect(searchReference(ref, "PUT nodes").flatMap((t) => t.operations.map((o) => o.id))).toEqual(["p.putNode"]);
  });

  it("sends an operation's header parameters but never in place of the credential, and refuses TRACE and a header value with a line break", () => {
    const header = (name: string) => ({ name, in: "header", schema: { type: "string" } });
    const doc = (method: string) => ({
      openapi: "3.1.0",
      info: { title: "T", version: "1" },
      paths: { "/v1/p/x": { [method]: { operationId: `p.${method}`, tags: ["p"], parameters: [header("X-Trace"), header("Authorization"), header("Keyport-Account"), { name: "c", in: "cookie", required: true }], responses: {} } } },
    });
    const op = buildReference(doc("get")).operations.get("p.get")!;
    const form = { ...initialForm(op, true), values: { "X-Trace": "t-1", Authorization: "Bearer stolen", "Keyport-Account": "acct_other", c: "" } };
    expect(formErrors(op, form, true)).toEqual([]);
    const req = tryRequest(op, form, "http://h", { authorization: "Bearer mine" }, null);
    expect(req.headers.get("x-trace")).toBe("t-1");
    expect(req.headers.get("authorization")).toBe("Bearer mine");
    expect(req.headers.get("keyport-account")).toBeNull();
    expect(formErrors(op, { ...form, values: { ...form.values, "X-Trace": "a\r\nX-Evil: 1" } }, true).map((e) => e.field)).toEqual(["param_X-Trace"]);
    const trace = buildReference(doc("trace")).operations.get("p.trace")!;
    expect(formErrors(trace, { ...initialForm(trace, true), values: {} }, true).map((e) => e.field)).toEqual(["credential"]);
  });

  it("uses an operation's x-codeSamples entry in place of the generated sample of its language", () => {
    const op = [...buildReference(hostileDocument()).operations.values()][0]!;
    const samples = codeSamples(op, { method: "POST", url: "http://h/v1/x/1", body: { a: true, b: null } }, PLACEHOLDER_KEY);
    expect(samples.map((s) => s.lang)).toEqual(["curl", "javascript", "python"]);
    expect(samples[0]).toEqual({ lang: "curl", label: `Mine ${HOSTILE}`, source: `curl ${HOSTILE}` });
    expect(samples[1]!.source).toContain('const res = await fetch("http://h/v1/x/1"');
    expect(samples[2]!.source).toContain('"a": True');
    expect(samples[2]!.source).toContain('"b": None');
  });

  it("generates curl, fetch and requests samples that carry the key, the URL and the body", () => {
    const op = { codeSamples: [] };
    const req = { method: "POST", url: "http://h/v1/batch", body: { items: [{ type: "email", value: "o'neil@example.com" }] } };
    const [curl, js, py] = codeSamples(op, req, PLACEHOLDER_KEY);
    expect(curl!.source).toBe(`curl -X POST 'http://h/v1/batch' \\\n  -H "Authorization: Bearer $KEYPORT_KEY" \\\n  -H 'Content-Type: application/json' \\\n  -d '{"items":[{"type":"email","value":"o'\\''neil@example.com"}]}'`);
    expect(js!.source).toContain("Authorization: `Bearer ${process.env.KEYPORT_KEY}`");
    expect(py!.source).toContain(`headers={"Authorization": f"Bearer {os.environ['KEYPORT_KEY']}"}`);
    const literal = codeSamples(op, { method: "GET", url: "http://h/v1/ip/1.1.1.1", body: undefined }, { literal: "kp_test_AbCd…wxyz" });
    expect(literal[0]!.source).toBe("curl 'http://h/v1/ip/1.1.1.1' \\\n  -H 'Authorization: Bearer kp_test_AbCd…wxyz'");
    expect(literal[2]!.source).not.toContain("import os");
  });
});

for (const backend of backends.slice(0, 1)) {
  describe(`API reference pages [${backend.name}]`, () => {
    let h: Harness;
    let doc: Doc;
    beforeAll(async () => {
      h = await startHarness(backend);
      doc = (await (await h.req("/openapi.json")).json()) as Doc;
    });
    afterAll(() => h.close());

    it("has a page and a try-it form for every operation of /openapi.json, with its method, path, scope, parameters and error codes", async () => {
      const ops = Object.entries(doc.paths).flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ path, method, op })));
      expect(ops.length).toBeGreaterThan(20);
      const index = await (await h.req("/docs")).text();
      for (const { path, method, op } of ops) {
        expect(index).toContain(`href="/docs/${op.operationId}"`);
        const res = await h.req(`/docs/${op.operationId}`);
        expect(res.status).toBe(200);
        expect(res.headers.get("content-security-policy")).toContain("script-src 'self'");
        const html = await res.text();
        expect(html).toContain(`<code>${op.operationId}</code>`);
        expect(html).toContain(`<span class="method method-${method}">${method.toUpperCase()}</span> <code>${path}</code>`);
        expect(html).toContain(`<code>${op.security[0]!.bearer![0]}</code>`);
        expect(html).toContain(`action="/docs/${op.operationId}/try"`);
        for (const p of op.parameters ?? []) expect(html).toContain(`name="param_${p.name}"`);
        // The credential's own codes are on every page, each linked to its explanation.
        expect(html).toContain('<a href="/docs/errors#internal_error"><code>internal_error</code></a>');
        for (const anchor of ["parameters", "answers", "errors", "rate-limits", "try-it-heading"]) expect(html).toContain(`id="${anchor}"><a class="anchor" href="#${anchor}">`);
      }
    });

    it("documents each operation from its schemas: parameter and body tables with constraints, answers with examples", async () => {
      const html = await (await h.req("/docs/createKey")).text();
      expect(html).toContain("<td><code>rateLimit</code></td><td>integer</td><td>no</td><td>1-100000; default 60</td>");
      expect(html).toContain("<td><code>name</code></td><td>string</td><td>yes</td><td>1-100 characters</td>");
      expect(html).toContain("&quot;scopes&quot;");
      const usage = await (await h.req("/docs/getKeyUsage")).text();
      expect(usage).toContain("<td><code>days</code></td><td>query</td><td>string</td><td>no</td>");
      expect(usage).toContain("Days back from today, 1-366 (default 30).");
      const batch = await (await h.req("/docs/runBatch")).text();
      expect(batch).toContain("<td><code>items[].type</code></td>");
    });

    it("searches operation ids, summaries, paths and tags: a GET form, and a fragment for htmx", async () => {
      const names = (html: string) => [...html.matchAll(/href="\/docs\/(\w+)"/g)].map((m) => m[1]);
      const page = await (await h.req("/docs?q=email")).text();
      expect(page).toContain('value="email"');
      expect(names(page)).toContain("analyzeEmail");
      expect(names(page)).not.toContain("listKeys");
      const frag = await (await h.req("/docs?q=POST%20keys", { headers: { "hx-request": "true" } })).text();
      expect(frag).toStartWith('<div id="operations"');
      expect(names(frag)).toEqual(expect.arrayContaining(["createKey", "rollKey"]));
      expect(names(frag)).not.toContain("listKeys");
      expect(names(await (await h.req("/docs?q=%2Fv1%2Fbatch")).text())).toContain("runBatch");
      const none = await (await h.req(`/docs?q=${encodeURIComponent(HOSTILE)}`)).text();
      expect(none).toContain("No operation matches");
      expect(outsideAttributes(none)).not.toContain("<img");
      const ref = buildReference(doc as unknown as Record<string, unknown>);
      expect(searchReference(ref, "").length).toBe(ref.tags.length);
    });

    it("explains every problem code on /docs/errors, and a problem's type is its anchor there", async () => {
      const html = await (await h.req("/docs/errors")).text();
      for (const code of ERROR_CODES) expect(html).toContain(`<dt id="${code}"><a class="anchor" href="#${code}"><code>${code}</code></a>`);
      const res = await h.req("/v1/email/a@example.com");
      const problem = (await res.json()) as { type: string; code: string };
      expect(problem.type).toBe("http://localhost/docs/errors#missing_api_key");
      const url = new URL(problem.type);
      expect((await h.req(url.pathname)).status).toBe(200);
      expect(html).toContain(`id="${url.hash.slice(1)}"`);
    });

    it("has a getting-started page, a 404 for an unknown operation, and the signed-in navigation when signed in", async () => {
      const start = await (await h.req("/docs/getting-started")).text();
      expect(start).toContain("curl -H &quot;Authorization: Bearer $KEYPORT_KEY&quot; http://localhost/v1/email/someone@gmial.com");
      expect(start).toContain('href="/signup"');
      expect((await h.req("/docs/noSuchOperation")).status).toBe(404);
      expect((await h.req(`/docs/${encodeURIComponent(HOSTILE)}`)).status).toBe(404);
      const b = new Browser(h);
      const address = email();
      await b.signUp(address);
      const signedIn = await b.page("/docs/getting-started");
      expect(signedIn).toContain(`You are signed in as ${address}.`);
      expect(signedIn).toContain('aria-current="page">API reference</a>');
      // Signed in, every reference page is the account's: kept by no cache (the public ones may be).
      for (const path of ["/docs", "/docs/getting-started", "/docs/errors", "/docs/analyzeEmail"]) {
        expect({ path, signedIn: (await b.get(path)).headers.get("cache-control") }).toEqual({ path, signedIn: "no-store" });
        expect({ path, public: (await h.req(path)).headers.get("cache-control") }).toEqual({ path, public: null });
      }
    });
  });
}
