import { afterAll, afterEach, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { eq } from "drizzle-orm";
import { announceAccountKeys } from "../../src/accounts/service.ts";
import { cliActor } from "../../src/audit/service.ts";
import DEFAULT_PLANS from "../../src/billing/plans.json" with { type: "json" };
import { accounts, keyUsage } from "../../src/db/schema.ts";
import { registerProduct, rotateGatewaySecret } from "../../src/products/service.ts";
import { RedisState } from "../../src/state/redis.ts";
import { backends, UNMETERED_PLANS } from "../support/backends.ts";
import { bearer, newAccount, newKey, problem } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

/** What reached an upstream: the path and query exactly as they arrived on its socket. */
interface Received {
  method: string;
  path: string;
  query: string;
  headers: Headers;
  body: Buffer;
}

/** A real upstream on a loopback port: it records each request and answers with `answer`. */
interface Upstream {
  origin: string;
  received: Received[];
  last(): Received;
  answer: (r: Received) => Response | Promise<Response>;
  stop(): Promise<void>;
}

const headersOf = (h: Headers) => {
  const out: Record<string, string> = {};
  h.forEach((v, k) => (out[k] = v));
  return out;
};

/** The default answer: what the upstream received, named after it; 201 to a POST. */
const echo = (name: string) => (r: Received) =>
  Response.json({ upstream: name, method: r.method, path: r.path, query: r.query, headers: headersOf(r.headers), body: r.body.toString() }, { status: r.method === "POST" ? 201 : 200 });

function startUpstream(name: string): Upstream {
  const up: Upstream = {
    origin: "",
    received: [],
    last() {
      const r = up.received.at(-1);
      if (!r) throw new Error(`nothing reached the ${name} upstream`);
      return r;
    },
    answer: echo(name),
    stop: async () => {},
  };
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      // The raw request target, not a parsed URL's: escapes and the query as they were sent.
      const target = req.url.slice(req.url.indexOf("/", req.url.indexOf("://") + 3));
      const q = target.indexOf("?");
      let body = Buffer.alloc(0);
      try {
        body = Buffer.from(await req.arrayBuffer());
      } catch {
        // A body the gateway cut off (over the product's limit): recorded as what arrived, none.
      }
      const r: Received = { method: req.method, path: q < 0 ? target : target.slice(0, q), query: q < 0 ? "" : target.slice(q), headers: req.headers, body };
      up.received.push(r);
      return up.answer(r);
    },
  });
  up.origin = `http://127.0.0.1:${server.port}`;
  up.stop = () => server.stop(true);
  return up;
}

const object = (description: string) => ({ description, content: { "application/json": { schema: { type: "object" } } } });

/** A product's spec: a path template, a more specific literal path beside it, and a POST. */
function trackingSpec(id: string) {
  return {
    openapi: "3.1.0",
    info: { title: "Tracking", version: "1.0.0" },
    paths: {
      // Listed before the literal path on purpose: specificity decides, not the document's order.
      "/shipments/{id}": {
        get: {
          operationId: "getShipment",
          parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
          responses: { "200": object("The shipment."), "404": object("No such shipment."), "500": object("The tracker failed.") },
        },
      },
      "/shipments/latest": { get: { operationId: "latestShipment", "x-keyport-scope": `${id}:latest`, responses: { "200": object("The latest shipment.") } } },
      "/shipments": { post: { operationId: "createShipment", requestBody: { content: { "application/json": { schema: { type: "object" } } } }, responses: { "201": object("The shipment created.") } } },
    },
  };
}

/** A product that checks requests against its spec (OpenAPI 3.0, whose schemas the gateway upgrades). */
const checkedSpec = {
  openapi: "3.0.3",
  info: { title: "Checked", version: "1.0.0" },
  paths: {
    "/shipments": {
      post: {
        requestBody: {
          required: true,
          content: { "application/json": { schema: { type: "object", required: ["to"], properties: { to: { type: "string" }, weight: { type: "number", nullable: true } } } } },
        },
        responses: { "201": object("The shipment created.") },
      },
    },
    "/search": {
      get: {
        parameters: [
          { name: "q", in: "query", required: true, schema: { type: "string" } },
          { name: "limit", in: "query", schema: { type: "integer" } },
        ],
        responses: { "200": object("The shipments found.") },
      },
    },
    "/items/{n}": { get: { parameters: [{ name: "n", in: "path", required: true, schema: { type: "integer", minimum: 1 } }], responses: { "200": object("The item.") } } },
  },
};

function register(h: Harness, settings: Record<string, unknown> & { id: string }, spec: unknown = trackingSpec(settings.id)) {
  return registerProduct(h.deps, settings, { text: JSON.stringify(spec), name: "spec.json" }, cliActor);
}

/** Leased quota units an instance holds go back to Redis, so the counter reads what was spent (in process there are none). */
async function settle(h: Harness): Promise<void> {
  if (h.deps.state instanceof RedisState) await h.deps.state.returnIdleLeases(0);
}

const quotaCounter = (h: Harness, keyId: string) => h.deps.state.get(`quota:${keyId}:${new Date(h.deps.clock.now()).toISOString().slice(0, 7)}`);

/** A HEAD answer has no body to check against /openapi.json: it goes to the app directly. */
const head = (h: Harness, path: string, headers: Record<string, string>) => h.app.handle(new Request(`http://localhost${path}`, { method: "HEAD", headers }));

for (const backend of backends) {
  describe(`the products' proxy [${backend.name}]`, () => {
    let h: Harness;
    let live: Upstream;
    let sandbox: Upstream;
    let gatewaySecret: string;
    let accountId: string;
    let reader: string;
    let writer: string;
    beforeAll(async () => {
      live = startUpstream("live");
      sandbox = startUpstream("sandbox");
      h = await startHarness(backend, { config: { plansFile: UNMETERED_PLANS } });
      ({ secret: gatewaySecret } = await register(h, { id: "tracking", upstreamUrl: `${live.origin}/api`, sandboxUrl: sandbox.origin }));
      accountId = (await newAccount(h)).id;
      reader = (await newKey(h, accountId, { scopes: ["tracking:read"], rateLimit: 1000 })).secret;
      writer = (await newKey(h, accountId, { scopes: ["tracking:read", "tracking:write"], rateLimit: 1000 })).secret;
    });
    afterEach(() => {
      live.answer = echo("live");
      sandbox.answer = echo("sandbox");
    });
    afterAll(async () => {
      await h.close();
      await live.stop();
      await sandbox.stop();
    });

    it("routes a path to its most specific template and passes the path, its escapes and the query on as sent", async () => {
      const latest = (await newKey(h, accountId, { scopes: ["tracking:latest"] })).secret;
      const res = await h.req("/v1/tracking/shipments/latest?b=2&a=1&a=%20x&flag", { headers: bearer(latest) });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ upstream: "live", method: "GET", path: "/api/shipments/latest", query: "?b=2&a=1&a=%20x&flag" });
      // The reader's scope opens /shipments/{id} and not the literal path, which needs its own.
      expect(await problem(await h.req("/v1/tracking/shipments/latest", { headers: bearer(reader) }))).toMatchObject({ code: "insufficient_scope", requiredScope: "tracking:latest" });

      const escaped = await h.req("/v1/tracking/shipments/a%2Fb%20c%3F?q=%2F", { headers: bearer(reader) });
      expect(escaped.status).toBe(200);
      expect(await escaped.json()).toMatchObject({ path: "/api/shipments/a%2Fb%20c%3F", query: "?q=%2F" });
      // A product id with an escaped letter is the same id (RFC 3986 §6.2.2.2); its path is still the rest of the target.
      const normalized = await h.req("/v1/tr%61cking/shipments/s%31", { headers: bearer(reader) });
      expect(normalized.status).toBe(200);
      expect(await normalized.json()).toMatchObject({ path: "/api/shipments/s%31" });
      // A parameter is one segment: an unescaped slash makes a path no template has.
      expect(await problem(await h.req("/v1/tracking/shipments/a/b", { headers: bearer(reader) }))).toMatchObject({ code: "not_found", product: "tracking" });
    });

    it("answers 404 not_found naming the product when no product has the id", async () => {
      const res = await h.req("/v1/nope/shipments/1", { headers: bearer(reader) });
      expect(res.status).toBe(404);
      const body = await problem(res);
      expect(body).toMatchObject({ code: "not_found", product: "nope" });
      expect(body.detail).toContain('"nope"');
      expect(res.headers.get("x-request-id")).toStartWith("req_");
    });

    it("answers 404 not_found naming the product when none of its operations has the method and path", async () => {
      const before = live.received.length;
      for (const [method, path] of [
        ["GET", "/v1/tracking/parcels/1"],
        ["DELETE", "/v1/tracking/shipments/1"],
        ["GET", "/v1/tracking/shipments/1/events"],
        ["GET", "/v1/tracking"],
      ] as const) {
        const res = await h.req(path, { method, headers: bearer(writer) });
        expect(res.status).toBe(404);
        const body = await problem(res);
        expect(body).toMatchObject({ code: "not_found", product: "tracking" });
        expect(body.detail).toContain('"tracking"');
      }
      expect(live.received.length).toBe(before);
    });

    it("serves HEAD with the GET operation of the path, and answers it without a body", async () => {
      const res = await head(h, "/v1/tracking/shipments/s1", bearer(reader));
      expect(res.status).toBe(200);
      expect(await res.text()).toBe("");
      expect(res.headers.get("ratelimit")).toStartWith('"default";');
      expect(live.last()).toMatchObject({ method: "HEAD", path: "/api/shipments/s1" });
      expect((await head(h, "/v1/tracking/shipments", bearer(writer))).status).toBe(404);
    });

    it("needs <id>:read for GET, <id>:write for POST and an operation's own x-keyport-scope, or answers 403 insufficient_scope with requiredScope", async () => {
      const before = live.received.length;
      expect(await problem(await h.req("/v1/tracking/shipments/s1"))).toMatchObject({ code: "missing_api_key", status: 401 });
      const body = JSON.stringify({ to: "Oslo" });
      const refused = await h.req("/v1/tracking/shipments", { method: "POST", headers: { ...bearer(reader), "content-type": "application/json", "content-length": String(body.length) }, body });
      expect(refused.status).toBe(403);
      // Refused before its body was read: the connection carries no further request. A refusal without a body keeps it.
      expect(refused.headers.get("connection")).toBe("close");
      expect((await h.req("/v1/tracking/shipments/s1")).headers.get("connection")).toBeNull();
      expect(await problem(refused)).toMatchObject({ code: "insufficient_scope", requiredScope: "tracking:write" });
      expect(await problem(await h.req("/v1/tracking/shipments/latest", { headers: bearer(writer) }))).toMatchObject({ code: "insufficient_scope", requiredScope: "tracking:latest" });
      const writeOnly = (await newKey(h, accountId, { scopes: ["tracking:write"] })).secret;
      expect(await problem(await h.req("/v1/tracking/shipments/s1", { headers: bearer(writeOnly) }))).toMatchObject({ code: "insufficient_scope", requiredScope: "tracking:read" });
      // Nothing refused reached the upstream.
      expect(live.received.length).toBe(before);

      const created = await h.req("/v1/tracking/shipments", { method: "POST", headers: bearer(writeOnly), json: { to: "Oslo" } });
      expect(created.status).toBe(201);
      expect(await created.json()).toMatchObject({ method: "POST", path: "/api/shipments", body: '{"to":"Oslo"}' });
    });

    it("forwards the request id, the key, its account and environment and the gateway secret, and strips credentials, hop-by-hop and Keyport-* headers the client sent", async () => {
      const { key, secret } = await newKey(h, accountId, { scopes: ["tracking:write"] });
      const res = await h.req("/v1/tracking/shipments", {
        method: "POST",
        headers: {
          ...bearer(secret),
          "x-api-key": secret,
          cookie: "kp_session=abc",
          connection: "keep-alive, x-hop-listed",
          "x-hop-listed": "1",
          "keep-alive": "timeout=5",
          te: "trailers",
          upgrade: "websocket",
          "proxy-authorization": "Basic eDp5",
          "keyport-account": "acct_spoofed",
          "keyport-key-id": "key_spoofed",
          "keyport-environment": "test",
          "keyport-gateway-secret": "kpgw_spoofed",
          "keyport-anything": "spoofed",
          "x-request-id": "req_chosen_by_client",
          "x-forwarded-for": "203.0.113.9",
          "x-forwarded-host": "evil.example",
          "x-custom": "kept",
          accept: "application/json",
          "content-type": "application/json",
        },
        body: '{"to":"Bergen"}',
      });
      expect(res.status).toBe(201);
      const got = live.last();
      const sent = headersOf(got.headers);
      expect(sent["x-request-id"]).toBe(res.headers.get("x-request-id")!);
      expect(sent["x-request-id"]).toStartWith("req_");
      expect(sent).toMatchObject({
        "keyport-account": accountId,
        "keyport-key-id": key.id,
        "keyport-environment": "live",
        "keyport-gateway-secret": gatewaySecret,
        "x-forwarded-proto": "http",
        "x-forwarded-host": "localhost",
        "x-custom": "kept",
        accept: "application/json",
        "content-type": "application/json",
      });
      expect(got.body.toString()).toBe('{"to":"Bergen"}');
      for (const name of ["authorization", "x-api-key", "cookie", "x-hop-listed", "keep-alive", "te", "upgrade", "proxy-authorization", "keyport-anything"]) {
        expect({ [name]: sent[name] }).toEqual({ [name]: undefined });
      }
      // Under app.handle there is no socket, and TRUST_PROXY is off: the client's claim is not passed on.
      expect(sent["x-forwarded-for"]).toBeUndefined();
      // Only the gateway's own connection header (Bun's pool keeps connections alive).
      expect(sent.connection ?? "keep-alive").toBe("keep-alive");
      expect(Object.keys(sent).filter((k) => k.startsWith("keyport-")).sort()).toEqual(["keyport-account", "keyport-environment", "keyport-gateway-secret", "keyport-key-id"]);
    });

    it("answers the upstream's status, headers minus hop-by-hop ones and body, with the gateway's rate-limit headers and request id", async () => {
      live.answer = () =>
        new Response(JSON.stringify({ id: "s1", state: "in transit" }), {
          status: 200,
          headers: [
            ["content-type", "application/json"],
            ["cache-control", "max-age=60"],
            ["x-upstream", "yes"],
            ["set-cookie", "a=1; Path=/"],
            ["set-cookie", "b=2; Path=/"],
            ["connection", "x-upstream-hop"],
            ["x-upstream-hop", "1"],
            ["keep-alive", "timeout=5"],
            ["proxy-authenticate", "Basic"],
            ["upgrade", "h2c"],
            ["x-request-id", "upstream-chosen"],
            ["x-ratelimit-limit", "1"],
          ],
        });
      const res = await h.req("/v1/tracking/shipments/s1", { headers: bearer(reader) });
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ id: "s1", state: "in transit" });
      expect(res.headers.get("cache-control")).toBe("max-age=60");
      expect(res.headers.get("x-upstream")).toBe("yes");
      expect(res.headers.getSetCookie()).toEqual(["a=1; Path=/", "b=2; Path=/"]);
      for (const name of ["connection", "x-upstream-hop", "keep-alive", "proxy-authenticate", "upgrade"]) expect({ [name]: res.headers.get(name) }).toEqual({ [name]: null });
      expect(res.headers.get("x-request-id")).toBe(live.last().headers.get("x-request-id")!);
      expect(res.headers.get("ratelimit-policy")).toStartWith('"default";q=1000;w=60');
      expect(res.headers.get("ratelimit")).toMatch(/^"default";r=\d+;t=\d+/);
      expect(res.headers.get("x-ratelimit-limit")).toBe("1000");
      expect(res.headers.get("x-ratelimit-remaining")).toMatch(/^\d+$/);
      expect(res.headers.get("x-ratelimit-reset")).toMatch(/^\d+$/);

      live.answer = () => Response.json({ error: "no such shipment" }, { status: 404, headers: { "x-upstream": "yes" } });
      const missing = await h.req("/v1/tracking/shipments/s404", { headers: bearer(reader) });
      expect(missing.status).toBe(404);
      expect(missing.headers.get("content-type")).toStartWith("application/json");
      expect(await missing.json()).toEqual({ error: "no such shipment" });
      expect(missing.headers.get("x-upstream")).toBe("yes");
      expect(missing.headers.get("ratelimit")).toStartWith('"default";');
    });

    it("passes an encoded answer on as the upstream sent it, and a redirect without following it", async () => {
      const zipped = gzipSync(JSON.stringify({ id: "s1" }));
      live.answer = () => new Response(zipped, { headers: { "content-type": "application/json", "content-encoding": "gzip" } });
      // Straight to the app: the harness would read the compressed bytes as the JSON they encode.
      const res = await h.app.handle(new Request("http://localhost/v1/tracking/shipments/s1", { headers: { ...bearer(reader), "accept-encoding": "gzip" } }));
      expect(res.status).toBe(200);
      expect(live.last().headers.get("accept-encoding")).toBe("gzip");
      expect(res.headers.get("content-encoding")).toBe("gzip");
      expect(res.headers.get("content-length")).toBe(String(zipped.byteLength));
      expect(Buffer.from(await res.arrayBuffer()).equals(zipped)).toBe(true);

      live.answer = () => new Response(null, { status: 303, headers: { location: "/api/shipments/s2" } });
      const before = live.received.length;
      const moved = await h.req("/v1/tracking/shipments/s1", { headers: bearer(reader) });
      expect(moved.status).toBe(303);
      expect(moved.headers.get("location")).toBe("/api/shipments/s2");
      expect(live.received.length).toBe(before + 1);
    });

    it("forwards the socket's address as X-Forwarded-For through a listening server, never one the client claims", async () => {
      h.app.listen({ port: 0, hostname: "127.0.0.1" });
      try {
        const origin = `http://127.0.0.1:${h.app.server!.port}`;
        const res = await fetch(`${origin}/v1/tracking/shipments/s1`, { headers: { ...bearer(reader), "x-forwarded-for": "203.0.113.9" } });
        expect(res.status).toBe(200);
        await res.arrayBuffer();
        expect(headersOf(live.last().headers)).toMatchObject({ "x-forwarded-for": "127.0.0.1", "x-forwarded-proto": "http", "x-forwarded-host": `127.0.0.1:${h.app.server!.port}` });
      } finally {
        await h.app.stop();
      }
    });

    it("sends the new gateway secret from the next request after a rotation", async () => {
      await register(h, { id: "rotating", upstreamUrl: live.origin });
      const { secret } = await newKey(h, accountId, { scopes: ["rotating:read"] });
      expect((await h.req("/v1/rotating/shipments/s1", { headers: bearer(secret) })).status).toBe(200);
      const before = live.last().headers.get("keyport-gateway-secret");
      const rotated = await rotateGatewaySecret(h.deps, "rotating", cliActor);
      expect(rotated).not.toBe(before!);
      expect((await h.req("/v1/rotating/shipments/s1", { headers: bearer(secret) })).status).toBe(200);
      expect(live.last().headers.get("keyport-gateway-secret")).toBe(rotated);
      // Another product's secret is its own.
      expect((await h.req("/v1/tracking/shipments/s1", { headers: bearer(reader) })).status).toBe(200);
      expect(live.last().headers.get("keyport-gateway-secret")).toBe(gatewaySecret);
    });

    it("sends test keys to the sandbox and live keys to the upstream", async () => {
      const { key, secret } = await newKey(h, accountId, { scopes: ["tracking:read"], environment: "test" });
      const liveBefore = live.received.length;
      const res = await h.req("/v1/tracking/shipments/s1?x=1", { headers: bearer(secret) });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ upstream: "sandbox", path: "/shipments/s1", query: "?x=1" });
      expect(headersOf(sandbox.last().headers)).toMatchObject({ "keyport-environment": "test", "keyport-key-id": key.id, "keyport-account": accountId, "keyport-gateway-secret": gatewaySecret });
      expect(live.received.length).toBe(liveBefore);

      const sandboxBefore = sandbox.received.length;
      expect(await (await h.req("/v1/tracking/shipments/s1", { headers: bearer(reader) })).json()).toMatchObject({ upstream: "live", path: "/api/shipments/s1" });
      expect(sandbox.received.length).toBe(sandboxBefore);
    });

    it("answers 403 sandbox_unavailable to a test key when the product has no sandbox, and gives its quota unit back", async () => {
      await register(h, { id: "nosandbox", upstreamUrl: live.origin });
      const { key, secret } = await newKey(h, accountId, { scopes: ["nosandbox:read"], environment: "test", monthlyQuota: 100 });
      const before = live.received.length;
      const res = await h.req("/v1/nosandbox/shipments/s1", { headers: bearer(secret) });
      expect(res.status).toBe(403);
      expect(await problem(res)).toMatchObject({ code: "sandbox_unavailable", product: "nosandbox" });
      expect(res.headers.get("ratelimit")).toStartWith('"default";');
      expect(live.received.length).toBe(before);
      await settle(h);
      expect((await quotaCounter(h, key.id)) ?? 0).toBe(0);
    });

    it("answers 504 upstream_timeout when the upstream's headers come later than the product's timeout", async () => {
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      let reached = false;
      const slow = Bun.serve({
        port: 0,
        hostname: "127.0.0.1",
        async fetch() {
          reached = true;
          await held;
          return Response.json({ late: true });
        },
      });
      try {
        await register(h, { id: "slow", upstreamUrl: `http://127.0.0.1:${slow.port}`, timeoutMs: 200 });
        const { key, secret } = await newKey(h, accountId, { scopes: ["slow:read"], monthlyQuota: 100 });
        const res = await h.req("/v1/slow/shipments/s1", { headers: bearer(secret) });
        expect(res.status).toBe(504);
        expect(await problem(res)).toMatchObject({ code: "upstream_timeout", product: "slow" });
        expect(reached).toBe(true);
        await settle(h);
        expect((await quotaCounter(h, key.id)) ?? 0).toBe(0);
      } finally {
        release();
        await slow.stop(true);
      }
    });

    it("answers 502 upstream_unavailable when nothing listens at the upstream's address", async () => {
      const stopped = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("never") });
      const origin = `http://127.0.0.1:${stopped.port}`;
      await stopped.stop(true);
      await register(h, { id: "gone", upstreamUrl: origin });
      const { secret } = await newKey(h, accountId, { scopes: ["gone:read"] });
      const res = await h.req("/v1/gone/shipments/s1", { headers: bearer(secret) });
      expect(res.status).toBe(502);
      expect(await problem(res)).toMatchObject({ code: "upstream_unavailable", product: "gone" });
      expect(res.headers.get("x-request-id")).toStartWith("req_");
    });

    it("answers 413 to a body over the product's limit, declared or streamed without Content-Length, and takes one at the limit", async () => {
      await register(h, { id: "small", upstreamUrl: live.origin, maxBodyBytes: 1024 });
      const { secret } = await newKey(h, accountId, { scopes: ["small:write"] });
      const post = (body: BodyInit, headers: Record<string, string> = {}) =>
        h.req("/v1/small/shipments", { method: "POST", headers: { ...bearer(secret), "content-type": "application/octet-stream", ...headers }, body, duplex: "half" } as RequestInit);

      const before = live.received.length;
      const declared = await post(new Uint8Array(1025).fill(97), { "content-length": "1025" });
      expect(declared.status).toBe(413);
      expect(await problem(declared)).toMatchObject({ code: "payload_too_large" });
      expect(live.received.length).toBe(before);

      let pulled = 0;
      const chunked = new ReadableStream<Uint8Array>({
        pull(controller) {
          if (pulled++ === 4) controller.close();
          else controller.enqueue(new Uint8Array(400).fill(98));
        },
      });
      const streamed = await post(chunked);
      expect(streamed.status).toBe(413);
      expect(await problem(streamed)).toMatchObject({ code: "payload_too_large" });

      const atLimit = await post(new Uint8Array(1024).fill(99), { "content-length": "1024" });
      expect(atLimit.status).toBe(201);
      expect(live.last().body.equals(Buffer.alloc(1024, 99))).toBe(true);
    });

    it("checks a request against the spec when the product asks, answering 400 invalid_request with the failing fields", async () => {
      await register(h, { id: "checked", upstreamUrl: live.origin, validateRequests: true }, checkedSpec);
      const { secret } = await newKey(h, accountId, { scopes: ["checked:read", "checked:write"] });
      const before = live.received.length;
      const fields = async (res: Response) => {
        expect(res.status).toBe(400);
        const body = await problem(res);
        expect(body.code).toBe("invalid_request");
        return body.errors!.map((e) => e.field).sort();
      };
      expect(await fields(await h.req("/v1/checked/shipments", { method: "POST", headers: bearer(secret), json: { weight: "heavy" } }))).toEqual(["body.to", "body.weight"]);
      expect(await fields(await h.req("/v1/checked/shipments", { method: "POST", headers: { ...bearer(secret), "content-type": "application/json" }, body: '{"to":' }))).toEqual(["body"]);
      expect(await fields(await h.req("/v1/checked/shipments", { method: "POST", headers: bearer(secret) }))).toEqual(["body"]);
      expect(await fields(await h.req("/v1/checked/search?limit=ten", { headers: bearer(secret) }))).toEqual(["query.limit", "query.q"]);
      expect(await fields(await h.req("/v1/checked/items/abc", { headers: bearer(secret) }))).toEqual(["path.n"]);
      expect(await fields(await h.req("/v1/checked/items/0", { headers: bearer(secret) }))).toEqual(["path.n"]);
      expect(live.received.length).toBe(before);
    });

    it("forwards a request that matches the spec of a product that checks them, body and query as sent", async () => {
      const { secret } = await newKey(h, accountId, { scopes: ["checked:read", "checked:write"] });
      const created = await h.req("/v1/checked/shipments", { method: "POST", headers: { ...bearer(secret), "content-type": "application/json" }, body: '{ "to": "Oslo", "weight": null }' });
      expect(created.status).toBe(201);
      expect(live.last()).toMatchObject({ method: "POST", path: "/shipments" });
      expect(live.last().body.toString()).toBe('{ "to": "Oslo", "weight": null }');
      expect(live.last().headers.get("content-length")).toBe("32");

      expect((await h.req("/v1/checked/search?q=box%20A&limit=5", { headers: bearer(secret) })).status).toBe(200);
      expect(live.last()).toMatchObject({ path: "/search", query: "?q=box%20A&limit=5" });
      // The parameter is checked decoded (42) and passed on as sent.
      expect((await h.req("/v1/checked/items/%34%32", { headers: bearer(secret) })).status).toBe(200);
      expect(live.last().path).toBe("/items/%34%32");
    });

    it("meters each answer under the operation's path template, the upstream's errors apart, and the quota holds exactly the successes", async () => {
      await register(h, { id: "metered", upstreamUrl: live.origin });
      const { key, secret } = await newKey(h, accountId, { scopes: ["metered:read"], monthlyQuota: 1000, rateLimit: 1000 });
      live.answer = (r) => {
        if (r.path.endsWith("/broken")) return Response.json({ error: "tracker down" }, { status: 500 });
        if (r.path.endsWith("/missing")) return Response.json({ error: "no such shipment" }, { status: 404 });
        return Response.json({ id: r.path });
      };
      const statuses: number[] = [];
      for (const id of ["a", "b", "broken", "c", "missing", "d", "broken", "e"]) statuses.push((await h.req(`/v1/metered/shipments/${id}`, { headers: bearer(secret) })).status);
      expect(statuses).toEqual([200, 200, 500, 200, 404, 200, 500, 200]);
      await h.deps.meter.flush();
      const rows = await h.deps.db.select().from(keyUsage).where(eq(keyUsage.keyId, key.id));
      expect(rows.map((r) => ({ endpoint: r.endpoint, environment: r.environment, successes: r.successes, errors: r.errors }))).toEqual([
        { endpoint: "GET /v1/metered/shipments/{id}", environment: "live", successes: 5, errors: 3 },
      ]);
      expect(rows[0]!.latencyBuckets.reduce((a, b) => a + b, 0)).toBe(8);
      await settle(h);
      expect(await quotaCounter(h, key.id)).toBe(5);
    });
  });

  describe(`the products' proxy and the plans [${backend.name}]`, () => {
    let h: Harness;
    let live: Upstream;
    beforeAll(async () => {
      live = startUpstream("live");
      const file = join(mkdtempSync(join(tmpdir(), "kp-plans-")), "plans.json");
      const own = DEFAULT_PLANS.products.map((p) => p.id);
      // Free lists Keyport's own products only; Starter adds the registered one; Enterprise lists none, so it includes all.
      const products: Record<string, string[]> = { free: own, starter: [...own, "parcels"] };
      writeFileSync(file, JSON.stringify({ ...DEFAULT_PLANS, plans: DEFAULT_PLANS.plans.map((p) => (products[p.id] ? { ...p, products: products[p.id] } : p)) }));
      h = await startHarness(backend, { config: { plansFile: file } });
      await register(h, { id: "parcels", upstreamUrl: live.origin });
    });
    afterAll(async () => {
      await h.close();
      await live.stop();
    });

    it("answers 403 product_not_in_plan when the account's plan lists products without this one, and serves a plan that includes it", async () => {
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { scopes: ["parcels:read", "email:read"] });
      const refused = await h.req("/v1/parcels/shipments/s1", { headers: bearer(secret) });
      expect(refused.status).toBe(403);
      expect(await problem(refused)).toMatchObject({ code: "product_not_in_plan", product: "parcels" });
      expect(live.received.length).toBe(0);

      for (const plan of ["starter", "enterprise"]) {
        await h.deps.db.update(accounts).set({ planId: plan }).where(eq(accounts.id, account.id));
        await announceAccountKeys(h.deps, account.id);
        const res = await h.req("/v1/parcels/shipments/s1", { headers: bearer(secret) });
        expect(res.status).toBe(200);
        expect(await res.json()).toMatchObject({ upstream: "live", path: "/shipments/s1" });
      }
    });
  });
}
