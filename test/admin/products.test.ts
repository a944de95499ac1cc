import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { and, eq } from "drizzle-orm";
import { createAccount } from "../../src/accounts/service.ts";
import { auditEvents } from "../../src/audit/audit.sql.ts";
import { cliActor } from "../../src/audit/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { listProducts, productLog } from "../../src/products/service.ts";
import { checkSpec } from "../../src/products/spec.ts";
import { backends, UNMETERED_PLANS } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { bearer, newAccount, newKey } from "../support/fixtures.ts";
import { email } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const OPERATOR_PASSWORD = "operator passphrase 1";
const HOSTILE = "<img src=x onerror=alert(1)>";
const ESCAPED = "&lt;img src=x onerror=alert(1)&gt;";

/** A page's words: tags as spaces, whitespace collapsed, quotes and ampersands unescaped (never < or >). */
const text = (html: string) =>
  html
    .replace(/<[^>]+>/g, " ")
    .replace(/\s+/g, " ")
    .replace(/&#x27;|&#39;/g, "'")
    .replace(/&#34;|&quot;/g, '"')
    .replace(/&amp;/g, "&");

/** The Keyport-Gateway-Secret a page shows, if it shows one (256 bits, base64url). */
const gatewaySecretIn = (html: string) => /kpgw_[A-Za-z0-9_-]{43}/.exec(html)?.[0];

const json = (description: string) => ({ description, content: { "application/json": { schema: { type: "object" } } } });

/** Version 1 of a product's spec: GET /shipments/{id} (default scope) and POST /shipments (its own scope). */
const specV1 = (id: string) => ({
  openapi: "3.1.0",
  info: { title: "Tracking", version: "1.0.0", description: "Where parcels are." },
  paths: {
    "/shipments/{id}": {
      get: { operationId: "getShipment", summary: "One shipment", parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }], responses: { "200": json("The shipment.") } },
    },
    "/shipments": { post: { operationId: "createShipment", summary: "Create a shipment", "x-keyport-scope": `${id}:create`, responses: { "200": json("Created.") } } },
  },
});

/** Version 2: the shipments are parcels now. */
const specV2 = () => ({
  openapi: "3.1.0",
  info: { title: "Tracking", version: "2.0.0" },
  paths: {
    "/parcels/{id}": {
      get: { operationId: "getParcel", summary: "One parcel", parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }], responses: { "200": json("The parcel.") } },
    },
  },
});

/** Version 3, in YAML, served by the upstream at /spec.yaml for the URL upload. */
const SPEC_V3_YAML = `openapi: 3.1.0
info:
  title: Tracking
  version: 3.0.0
paths:
  /labels/{id}:
    get:
      operationId: getLabel
      summary: One label
      parameters:
        - name: id
          in: path
          required: true
          schema:
            type: string
      responses:
        "200":
          description: The label.
          content:
            application/json:
              schema:
                type: object
`;

/** A spec the checker refuses on two counts: a scope of another product, and two operations on one request shape. */
const badSpec = (id: string) => ({
  openapi: "3.1.0",
  info: { title: "Bad", version: "1" },
  paths: {
    "/a/{x}": { get: { "x-keyport-scope": "other:read", responses: { "200": { description: "ok" } } } },
    "/a/{y}": { get: { responses: { "200": { description: "ok" } } } },
    "/b": { post: { "x-keyport-scope": `${id}:NOPE`, responses: { "200": { description: "ok" } } } },
  },
});

const freshId = () => `p${randomBytes(3).toString("hex")}`;

// The OpenAPI validator compiles its meta-schemas on first use, once per process (2 s on a
// loaded machine): paid here, not by whichever test registers a product first.
beforeAll(() => checkSpec(specV1("warm"), "warm"));

for (const backend of backends) {
  describe(`operator pages: products [${backend.name}]`, () => {
    const clock = new ManualClock(Date.now());
    let h: Harness;
    let op: Browser;
    let opEmail: string;
    /** What the upstream saw last: the path and the gateway secret. */
    const seen: { path: string; secret: string | null }[] = [];
    let upstream: ReturnType<typeof Bun.serve>;
    let upstreamUrl: string;

    beforeAll(async () => {
      h = await startHarness(backend, { clock, config: { plansFile: UNMETERED_PLANS } });
      // The first account of a database is an operator.
      opEmail = `op-${randomBytes(3).toString("hex")}@example.com`;
      await createAccount(h.deps, { email: opEmail, password: OPERATOR_PASSWORD }, cliActor);
      op = new Browser(h);
      const login = await op.post("/login", { email: opEmail, password: OPERATOR_PASSWORD });
      if (login.status !== 303) throw new Error(`operator login: ${login.status}`);
      await op.page("/admin/products");
      upstream = Bun.serve({
        port: 0,
        hostname: "127.0.0.1",
        fetch(req) {
          const path = new URL(req.url).pathname;
          if (path === "/spec.yaml") return new Response(SPEC_V3_YAML, { headers: { "content-type": "application/yaml" } });
          if (path === "/missing.json") return new Response("no such spec", { status: 404 });
          seen.push({ path, secret: req.headers.get("keyport-gateway-secret") });
          return Response.json({ path });
        },
      });
      upstreamUrl = `http://127.0.0.1:${upstream.port}`;
    });
    afterAll(async () => {
      await upstream?.stop(true);
      await h.close();
    });

    /**
     * Time passes between an operator's clicks: each change is stamped a second after the
     * last, so the audit log's newest-first order is the order of the clicks.
     */
    const later = () => clock.advance(1000);

    /** A url-encoded form of the operator's, a second after the last change. */
    function act(path: string, form: Record<string, string>) {
      later();
      return op.post(path, form);
    }

    /** A multipart form as a browser sends it: the fields, the spec's file (an empty one when none is chosen), the CSRF field. */
    async function send(b: Browser, path: string, fields: Record<string, string>, file?: { name: string; text: string }, opts: { csrf?: string | null; htmx?: boolean } = {}) {
      later();
      const form = new FormData();
      for (const [k, v] of Object.entries(fields)) form.append(k, v);
      form.append("spec", file ? new File([file.text], file.name, { type: "application/json" }) : new File([], "", { type: "application/octet-stream" }));
      const token = opts.csrf === undefined ? b.csrf : opts.csrf;
      if (token && !opts.htmx) form.append("_csrf", token);
      const headers: Record<string, string> = { accept: "text/html", "sec-fetch-site": "same-origin", ...(b.cookie ? { cookie: b.cookie } : {}) };
      if (opts.htmx) Object.assign(headers, { "hx-request": "true" }, token ? { "x-csrf-token": token } : {});
      return h.req(path, { method: "POST", headers, body: form });
    }

    /** Registers a product through the form with version 1 of the spec as a file: the answer, its page's HTML and the secret shown. */
    async function register(id: string, extra: Record<string, string> = {}) {
      const res = await send(op, "/admin/products", { id, name: "", description: "", status: "beta", upstreamUrl, sandboxUrl: "", timeoutMs: "30000", maxBodyBytes: "10485760", ...extra }, { name: "tracking.json", text: JSON.stringify(specV1(id)) });
      const html = await res.text();
      return { res, html, secret: gatewaySecretIn(html) };
    }

    /** A live key of a fresh account holding the given scopes. */
    async function keyFor(...scopes: string[]) {
      const account = await newAccount(h);
      return (await newKey(h, account.id, { scopes, rateLimit: 10_000 })).secret;
    }

    it("registers a product through the form with a spec file, shows its gateway secret once (no-store), and never again", async () => {
      const id = freshId();
      const { res, html, secret } = await register(id, { validateRequests: "true" });
      expect({ status: res.status, body: html.slice(0, 300) }).toMatchObject({ status: 200 });
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(res.headers.get("hx-push-url")).toBe(`/admin/products/${id}`);
      expect(secret).toBeDefined();
      const words = text(html);
      expect(words).toContain("Tracking is registered");
      expect(words).toContain("Keyport-Gateway-Secret");
      expect(words).toContain("constant time");
      expect(words).toContain(`/v1/${id}/… serves 2 operations`);

      // Serving at once, with the secret shown: the upstream receives exactly it.
      const product = h.deps.products.get(id)!;
      expect(product).toMatchObject({ version: 1, status: "beta", upstreamUrl, validateRequests: true, secret });
      const res2 = await h.req(`/v1/${id}/shipments/42`, { headers: bearer(await keyFor(`${id}:read`)) });
      expect(res2.status).toBe(200);
      expect(seen.at(-1)).toEqual({ path: "/shipments/42", secret: secret! });

      // Never again: not on the product's page, not on the list.
      const page = await op.page(`/admin/products/${id}`);
      expect(page).not.toContain(secret!);
      expect(gatewaySecretIn(page)).toBeUndefined();
      const pageWords = text(page);
      expect(pageWords).toContain("GET /shipments/{id} " + `${id}:read One shipment`);
      expect(pageWords).toContain(`POST /shipments ${id}:create Create a shipment`);
      const list = await op.page("/admin/products");
      expect(list).not.toContain(secret!);
      // Name and description from the spec's info; id, name, status, upstream, sandbox, version, operations, scopes.
      expect(text(list)).toContain(`${id} Tracking beta ${upstreamUrl} none 1 2 ${id}:create, ${id}:read`);
      expect((await listProducts(h.deps)).find((p) => p.id === id)?.description).toBe("Where parcels are.");
    });

    it("refuses an invalid spec with every error listed beside the spec field, and keeps what was typed (not the file)", async () => {
      const id = freshId();
      const res = await send(
        op,
        "/admin/products",
        { id, name: 'x" autofocus onfocus="alert(1)', description: `About ${HOSTILE}`, status: "deprecated", upstreamUrl: "ftp://upstream.example.com", sandboxUrl: "http://sandbox.example.com", timeoutMs: "soon", maxBodyBytes: "1024", specUrl: "" },
        { name: "bad.json", text: JSON.stringify(badSpec(id)) },
      );
      expect(res.status).toBe(422);
      expect(res.headers.get("hx-push-url")).toBe("/admin/products");
      const html = await res.text();
      const specList = /<ul class="error" id="f-spec-error">([\s\S]*?)<\/ul>/.exec(html)?.[1] ?? "";
      const items = [...specList.matchAll(/<li>([\s\S]*?)<\/li>/g)].map((m) => text(m[1]!));
      expect(items).toEqual([
        `/paths/~1a~1{x}/get/x-keyport-scope must be "${id}:" then 1-32 lowercase letters, digits, "_" or "-"`,
        "/paths/~1a~1{y}/get: matches the same requests as GET /a/{x}",
        `/paths/~1b/post/x-keyport-scope must be "${id}:" then 1-32 lowercase letters, digits, "_" or "-"`,
      ]);
      // The settings' errors beside their fields, in the same answer.
      expect(html).toMatch(/<small class="error" id="f-upstreamUrl-error">must be an http or https URL<\/small>/);
      expect(html).toMatch(/<small class="error" id="f-timeoutMs-error">must be a whole number of milliseconds from 100 to 300000<\/small>/);
      // What was typed is kept, escaped (a quote cannot leave the attribute); the file input is empty again.
      expect(html).toContain(`name="id" type="text" value="${id}"`);
      expect(html).toContain(`name="name" type="text" value="x&#34; autofocus onfocus=&#34;alert(1)"`);
      expect(html).toContain(`About ${ESCAPED}</textarea>`);
      expect(html).not.toContain(HOSTILE);
      expect(html).toContain('value="http://sandbox.example.com"');
      expect(html).toContain('value="soon"');
      expect(html).toMatch(/<option value="deprecated" selected>/);
      expect(html).not.toContain("bad.json");
      expect(h.deps.products.get(id)).toBeUndefined();

      // No spec at all: said beside the spec field, with the settings' errors.
      const none = await send(op, "/admin/products", { id: "Not An Id", upstreamUrl, status: "active" });
      expect(none.status).toBe(422);
      const noneHtml = await none.text();
      expect(text(noneHtml)).toContain("is required: choose the spec's file, or give its URL");
      expect(noneHtml).toMatch(/id="f-id-error">must be lowercase letters, digits and dashes, starting with a letter/);

      // A URL that does not answer a spec: beside the URL field.
      const missing = await send(op, "/admin/products", { id, upstreamUrl, status: "active", specUrl: `${upstreamUrl}/missing.json` });
      expect(missing.status).toBe(422);
      const missingHtml = await missing.text();
      expect(missingHtml).toMatch(/id="f-specUrl-error">answered 404</);
      expect(missingHtml).toContain(`value="${upstreamUrl}/missing.json"`);

      // An id already registered: beside the id field.
      const taken = freshId();
      expect((await register(taken)).res.status).toBe(200);
      const again = await register(taken);
      expect(again.res.status).toBe(422);
      expect(again.html).toMatch(/id="f-id-error">is already registered</);
      expect(again.secret).toBeUndefined();
    });

    it("answers 404 to a non-operator on every product page and form, and refuses the operator's form without its CSRF token (403)", async () => {
      const id = freshId();
      expect((await register(id)).res.status).toBe(200);
      const user = new Browser(h);
      await user.signUp(email());
      for (const path of ["/admin/products", `/admin/products/${id}`, `/admin/products/${id}/versions/1/spec.json`]) {
        const res = await user.get(path);
        expect({ path, status: res.status }).toEqual({ path, status: 404 });
        expect(await res.text()).toContain("There is no such page");
      }
      const other = freshId();
      const file = { name: "t.json", text: JSON.stringify(specV1(other)) };
      expect((await send(user, "/admin/products", { id: other, upstreamUrl }, file)).status).toBe(404);
      expect((await send(user, `/admin/products/${id}/versions`, { activate: "true" }, file)).status).toBe(404);
      for (const path of [`/admin/products/${id}`, `/admin/products/${id}/versions/1/activate`, `/admin/products/${id}/secret`, `/admin/products/${id}/remove`]) {
        const res = await user.post(path, { confirm: id, name: "mine" });
        expect({ path, status: res.status }).toEqual({ path, status: 404 });
      }

      expect((await send(op, "/admin/products", { id: other, upstreamUrl }, file, { csrf: null })).status).toBe(403);
      expect((await send(op, "/admin/products", { id: other, upstreamUrl }, file, { csrf: null, htmx: true })).status).toBe(403);
      expect((await send(op, "/admin/products", { id: other, upstreamUrl }, file, { csrf: "not-the-token" })).status).toBe(403);
      expect((await send(op, `/admin/products/${id}/versions`, { activate: "true" }, file, { csrf: null })).status).toBe(403);
      expect((await op.post(`/admin/products/${id}/secret`, {}, { csrf: null })).status).toBe(403);
      expect((await op.post(`/admin/products/${id}/remove`, { confirm: id }, { csrf: null })).status).toBe(403);
      expect(h.deps.products.get(other)).toBeUndefined();
      expect(h.deps.products.get(id)).toMatchObject({ version: 1 });
      // The operator's own 404 for a product that does not exist.
      expect((await op.get("/admin/products/nothing")).status).toBe(404);
      expect((await op.get(`/admin/products/${id}/versions/9/spec.json`)).status).toBe(404);
    });

    it("uploads a new version (active at once) and another by URL kept inactive; the proxy's routes follow the active one", async () => {
      const id = freshId();
      await register(id);
      const key = await keyFor(`${id}:read`);
      const call = async (path: string) => (await h.req(`/v1/${id}${path}`, { headers: bearer(key) })).status;

      const up = await send(op, `/admin/products/${id}/versions`, { activate: "true", specUrl: "" }, { name: "v2.json", text: JSON.stringify(specV2()) });
      expect(up.status).toBe(303);
      expect(up.headers.get("location")).toBe(`/admin/products/${id}?done=uploaded&version=2`);
      expect(h.deps.products.get(id)!.version).toBe(2);
      expect(await call("/parcels/1")).toBe(200);
      expect(await call("/shipments/1")).toBe(404);
      expect(text(await op.page(up.headers.get("location")!))).toContain("Spec version 2 uploaded and active");

      // By URL (YAML), not activated: the list grows, what serves does not change.
      const byUrl = await send(op, `/admin/products/${id}/versions`, { specUrl: `${upstreamUrl}/spec.yaml` });
      expect(byUrl.status).toBe(303);
      expect(byUrl.headers.get("location")).toBe(`/admin/products/${id}?done=uploaded_inactive&version=3`);
      expect(h.deps.products.get(id)!.version).toBe(2);
      expect(await call("/labels/1")).toBe(404);

      const page = await op.page(`/admin/products/${id}`);
      const words = text(page);
      // Version, source, info.version, operations.
      expect(words).toContain(`3 ${upstreamUrl}/spec.yaml 3.0.0 1`);
      expect(words).toContain("2 v2.json 2.0.0 1");
      expect(words).toContain("1 tracking.json 1.0.0 2");
      expect(page.match(/<span>active<\/span>/g)?.length).toBe(1);
      for (const v of [1, 3]) expect(page).toContain(`action="/admin/products/${id}/versions/${v}/activate"`);
      expect(page).not.toContain(`action="/admin/products/${id}/versions/2/activate"`);
      for (const v of [1, 2, 3]) expect(page).toContain(`href="/admin/products/${id}/versions/${v}/spec.json"`);

      // A spec that does not validate, and none at all: refused on the page, nothing changed.
      const bad = await send(op, `/admin/products/${id}/versions`, { activate: "true" }, { name: "bad.json", text: JSON.stringify(badSpec(id)) });
      expect(bad.status).toBe(422);
      const badHtml = await bad.text();
      expect(badHtml).toMatch(/<ul class="error" id="f-spec-error"><li>[^<]*x-keyport-scope must be/);
      // The box stays as it was sent.
      expect(badHtml).toContain('name="activate" value="true" checked');
      expect((await send(op, `/admin/products/${id}/versions`, {})).status).toBe(422);
      expect(h.deps.products.get(id)!.version).toBe(2);
    });

    it("activates an older version (a rollback) and downloads any version's stored spec", async () => {
      const id = freshId();
      const { secret: gatewaySecret } = await register(id);
      expect((await send(op, `/admin/products/${id}/versions`, { activate: "true" }, { name: "v2.json", text: JSON.stringify(specV2()) })).status).toBe(303);
      expect(h.deps.products.get(id)!.version).toBe(2);

      const download = await op.get(`/admin/products/${id}/versions/1/spec.json`);
      expect(download.status).toBe(200);
      expect(download.headers.get("content-type")).toContain("application/json");
      expect(download.headers.get("content-disposition")).toBe(`attachment; filename="${id}-v1.json"`);
      expect(await download.json()).toEqual(specV1(id));

      const back = await act(`/admin/products/${id}/versions/1/activate`, {});
      expect(back.status).toBe(303);
      expect(back.headers.get("location")).toBe(`/admin/products/${id}?done=activated&version=1`);
      expect(h.deps.products.get(id)!.version).toBe(1);
      expect(h.deps.products.get(id)!.operations.map((o) => `${o.method} ${o.template}`).sort()).toEqual(["GET /shipments/{id}", "POST /shipments"]);
      expect(text(await op.page(back.headers.get("location")!))).toContain("Spec version 1 is active");
      expect((await h.req(`/v1/${id}/shipments/1`, { headers: bearer(await keyFor(`${id}:read`)) })).status).toBe(200);
      // The secret did not change with the versions.
      expect(seen.at(-1)).toEqual({ path: "/shipments/1", secret: gatewaySecret! });

      const none = await act(`/admin/products/${id}/versions/7/activate`, {});
      expect(none.status).toBe(422);
      expect(text(await none.text())).toContain(`Version 7 is not a version of ${id}.`);
      expect((await act(`/admin/products/${id}/versions/x/activate`, {})).status).toBe(404);
      expect(h.deps.products.get(id)!.version).toBe(1);
    });

    it("rotates the gateway secret: the new one shown once (no-store), sent to the upstream from the next request", async () => {
      const id = freshId();
      const { secret: first } = await register(id);
      const res = await act(`/admin/products/${id}/secret`, {});
      expect(res.status).toBe(200);
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(res.headers.get("hx-push-url")).toBe(`/admin/products/${id}`);
      const html = await res.text();
      const second = gatewaySecretIn(html);
      expect(second).toBeDefined();
      expect(second).not.toBe(first);
      expect(text(html)).toContain("New gateway secret for Tracking");
      expect(text(html)).toContain("constant time");
      expect(h.deps.products.get(id)!.secret).toBe(second!);
      expect(await h.req(`/v1/${id}/shipments/9`, { headers: bearer(await keyFor(`${id}:read`)) }).then((r) => r.status)).toBe(200);
      expect(seen.at(-1)).toEqual({ path: "/shipments/9", secret: second! });
      const page = await op.page(`/admin/products/${id}`);
      expect(gatewaySecretIn(page)).toBeUndefined();
      expect((await act("/admin/products/nothing/secret", {})).status).toBe(404);
    });

    it("changes a product's settings, and refuses bad ones beside their fields with what was typed", async () => {
      const id = freshId();
      await register(id);
      const form = { name: "Parcel tracking", description: "Parcels.", status: "active", upstreamUrl, sandboxUrl: "http://127.0.0.1:9/sandbox/", timeoutMs: "5000", maxBodyBytes: "2048" };
      const saved = await act(`/admin/products/${id}`, form);
      expect(saved.status).toBe(303);
      expect(saved.headers.get("location")).toBe(`/admin/products/${id}?done=updated`);
      expect(h.deps.products.get(id)).toMatchObject({ name: "Parcel tracking", status: "active", sandboxUrl: "http://127.0.0.1:9/sandbox", timeoutMs: 5000, maxBodyBytes: 2048, validateRequests: false });
      expect(text(await op.page(saved.headers.get("location")!))).toContain("Settings saved");

      // A hostile name and description: escaped everywhere they are shown (inside a quoted attribute, < is only text).
      expect((await act(`/admin/products/${id}`, { ...form, name: `Parcel ${HOSTILE}`, description: HOSTILE })).status).toBe(303);
      const page = await op.page(`/admin/products/${id}`);
      expect(page).toContain(`<h1>Parcel ${ESCAPED}</h1>`);
      expect(page).toContain(`<title>Product Parcel ${ESCAPED} · Keyport</title>`);
      expect(page).toContain(`name → “Parcel ${ESCAPED}”; description → “${ESCAPED}”`);
      expect(page.split(HOSTILE).length - 1).toBe(1);
      expect(page).toContain(`name="name" type="text" value="Parcel ${HOSTILE}"`);
      const list = await op.page("/admin/products");
      expect(list).toContain(`<td>Parcel ${ESCAPED}</td>`);
      expect(list).not.toContain(HOSTILE);

      const refused = await act(`/admin/products/${id}`, { ...form, name: "", timeoutMs: "", status: "gone", upstreamUrl: "http://x.example.com/?q=1" });
      expect(refused.status).toBe(422);
      const html = await refused.text();
      expect(html).toMatch(/id="f-name-error">must not be empty</);
      expect(html).toMatch(/id="f-timeoutMs-error">must be a whole number of milliseconds from 100 to 300000</);
      expect(html).toMatch(/id="f-status-error">must be one of active, beta, deprecated</);
      expect(html).toMatch(/id="f-upstreamUrl-error">must not carry a query or a fragment</);
      expect(html).toContain('value="http://x.example.com/?q=1"');
      expect(h.deps.products.get(id)).toMatchObject({ name: `Parcel ${HOSTILE}`, timeoutMs: 5000 });
    });

    it("removes a product only when its id is typed; /v1/<id> then answers 404 and its page is gone", async () => {
      const id = freshId();
      await register(id);
      const key = await keyFor(`${id}:read`);
      const wrong = await act(`/admin/products/${id}/remove`, { confirm: "something else" });
      expect(wrong.status).toBe(422);
      expect(await wrong.text()).toMatch(/id="f-confirm-error">is not the product&#x27;s id</);
      expect(h.deps.products.get(id)).toBeDefined();
      expect((await act(`/admin/products/${id}/remove`, { confirm: "" })).status).toBe(422);

      const done = await act(`/admin/products/${id}/remove`, { confirm: id });
      expect(done.status).toBe(303);
      expect(done.headers.get("location")).toBe(`/admin/products?removed=${id}`);
      expect(h.deps.products.get(id)).toBeUndefined();
      expect((await h.req(`/v1/${id}/shipments/1`, { headers: bearer(key) })).status).toBe(404);
      expect(text(await op.page(done.headers.get("location")!))).toContain(`Product ${id} removed`);
      expect((await op.get(`/admin/products/${id}`)).status).toBe(404);
      // Only an id is said back.
      expect(await op.page(`/admin/products?removed=${encodeURIComponent(HOSTILE)}`)).not.toContain("removed:");
    });

    it("shows every action in the product's audit log, newest first, with the operator as actor; the log outlives a removal", async () => {
      const id = freshId();
      await register(id);
      expect((await act(`/admin/products/${id}`, { name: "Renamed", description: "", status: "beta", upstreamUrl, sandboxUrl: "", timeoutMs: "30000", maxBodyBytes: "10485760" })).status).toBe(303);
      expect((await send(op, `/admin/products/${id}/versions`, { activate: "true" }, { name: "v2.json", text: JSON.stringify(specV2()) })).status).toBe(303);
      expect((await act(`/admin/products/${id}/versions/1/activate`, {})).status).toBe(303);
      expect((await act(`/admin/products/${id}/secret`, {})).status).toBe(200);
      const log = (html: string) => {
        const section = /<h2>Audit log<\/h2>([\s\S]*?)<\/section>/.exec(html)?.[1] ?? "";
        return [...section.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].slice(1).map((m) => text(m[1]!).trim());
      };
      const rows = log(await op.page(`/admin/products/${id}`));
      expect(rows.length).toBe(5);
      expect(rows[0]).toContain("Gateway secret rotated");
      expect(rows[1]).toContain("Spec version 1 activated in place of version 2");
      expect(rows[2]).toContain("Spec version 2 uploaded from “v2.json” (1 operations), active at once");
      expect(rows[3]).toContain("Settings changed: name → “Renamed”");
      expect(rows[4]).toContain(`Registered from “tracking.json”, spec version 1 with 2 operations: name “Tracking”; status “beta”; upstream “${upstreamUrl}”; sandbox none`);
      for (const r of rows) expect(r).toContain(opEmail);
      const actions = await h.deps.db.select({ actor: auditEvents.actor }).from(auditEvents).where(and(eq(auditEvents.accountId, productLog(id))));
      expect(new Set(actions.map((a) => a.actor)).size).toBe(1);
      expect(actions[0]!.actor).toStartWith("account:");

      // Removed, then registered again under the same id: its page shows the whole history.
      expect((await act(`/admin/products/${id}/remove`, { confirm: id })).status).toBe(303);
      expect((await register(id)).res.status).toBe(200);
      const again = log(await op.page(`/admin/products/${id}`));
      expect(again.length).toBe(7);
      expect(again[0]).toContain("Registered from");
      expect(again[1]).toContain("Removed (“Renamed”; spec version 1 was serving)");
    });
  });
}
