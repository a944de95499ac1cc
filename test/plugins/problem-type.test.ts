import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { requestOrigin } from "../../src/plugins/origin.ts";
import { problemTypePath } from "../../src/plugins/problem.ts";
import { backends } from "../support/backends.ts";
import { bearer, newAccount, newKey, problem } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const EMAIL = "/v1/email/someone@example.com";
const METRICS_TOKEN = "metrics-token-0123456789";

/** The problem body of an answer to `url` (any origin, unlike h.req's http://localhost). */
async function problemAt(h: Harness, url: string, init: RequestInit = {}) {
  const res = await h.app.handle(new Request(url, init));
  return problem(res);
}

/**
 * One raw HTTP/1.1 request to a listening server, so the Host header is whatever the test
 * says (fetch sets its own); answers the status line and the body.
 */
function rawRequest(port: number, lines: string[]): Promise<{ status: string; body: string }> {
  return new Promise((resolve, reject) => {
    let received = "";
    void Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open(socket) {
          socket.write(`${lines.join("\r\n")}\r\nConnection: close\r\n\r\n`);
        },
        data(_socket, chunk) {
          received += new TextDecoder().decode(chunk);
        },
        close() {
          const [head = "", ...rest] = received.split("\r\n\r\n");
          resolve({ status: head.split("\r\n")[0] ?? "", body: rest.join("\r\n\r\n") });
        },
        error(_socket, err) {
          reject(err);
        },
      },
    }).catch(reject);
  });
}

describe("problem types", () => {
  // The type is made where the answer is, whatever the storage: the embedded backend is enough.
  let h: Harness;
  let proxied: Harness;
  beforeAll(async () => {
    [h, proxied] = await Promise.all([startHarness(backends[0]!, { config: { metricsToken: METRICS_TOKEN } }), startHarness(backends[0]!, { config: { trustProxy: true } })]);
  });
  afterAll(() => Promise.all([h.close(), proxied.close()]));

  it("is the relative anchor of the code on the error reference before an origin is known", () => {
    expect(problemTypePath("invalid_api_key")).toBe("/docs/errors#invalid_api_key");
  });

  it("points a gateway refusal at its code's anchor on the origin the client reached", async () => {
    expect(await problem(await h.req(EMAIL))).toMatchObject({ type: "http://localhost/docs/errors#missing_api_key", code: "missing_api_key" });
    const body = await problemAt(h, `http://127.0.0.1:3000${EMAIL}`, { headers: bearer("kp_live_nope") });
    expect(body, JSON.stringify(body)).toMatchObject({ type: "http://127.0.0.1:3000/docs/errors#invalid_api_key", code: "invalid_api_key" });
  });

  it("points a data-API handler's own refusal at its code's anchor", async () => {
    const account = await newAccount(h);
    const { secret } = await newKey(h, account.id, { rateLimit: 1000 });
    const body = await problemAt(h, "https://api.example.com/v1/ip/not-an-address", { headers: bearer(secret) });
    expect(body, JSON.stringify(body)).toMatchObject({ type: "https://api.example.com/docs/errors#invalid_request", code: "invalid_request" });
  });

  it("points a management API refusal at its code's anchor: no credential, a test key, an invalid body", async () => {
    expect(await problem(await h.req("/api/keys"))).toMatchObject({ type: "http://localhost/docs/errors#missing_api_key" });
    const none = await problemAt(h, "http://keys.example:8080/api/keys");
    expect(none, JSON.stringify(none)).toMatchObject({ type: "http://keys.example:8080/docs/errors#missing_api_key", code: "missing_api_key" });

    const account = await newAccount(h);
    const test = await newKey(h, account.id, { scopes: ["keys:manage"], environment: "test" });
    expect(await problem(await h.req("/api/keys", { headers: bearer(test.secret) }))).toMatchObject({ type: "http://localhost/docs/errors#test_key_not_allowed" });

    const live = await newKey(h, account.id, { scopes: ["keys:manage"] });
    const invalid = await problem(await h.req("/api/keys", { method: "POST", headers: bearer(live.secret), json: { name: 42 } }));
    expect(invalid).toMatchObject({ type: "http://localhost/docs/errors#invalid_request", code: "invalid_request" });
  });

  it("points an unknown route's 404 at not_found", async () => {
    expect(await problem(await h.req("/v1/nothing/here"))).toMatchObject({ type: "http://localhost/docs/errors#not_found", status: 404 });
    const body = await problemAt(h, "http://10.0.0.7:9000/no/such/route");
    expect(body, JSON.stringify(body)).toMatchObject({ type: "http://10.0.0.7:9000/docs/errors#not_found", status: 404 });
  });

  it("points a missing static file's 404 at not_found", async () => {
    expect(await problem(await h.req("/static/nope"))).toMatchObject({ type: "http://localhost/docs/errors#not_found", status: 404 });
    const body = await problemAt(h, "http://[::1]:3000/static/nope.js");
    expect(body, JSON.stringify(body)).toMatchObject({ type: "http://[::1]:3000/docs/errors#not_found" });
  });

  it("points a /metrics refusal at the token's codes", async () => {
    expect(await problem(await h.req("/metrics"))).toMatchObject({ type: "http://localhost/docs/errors#missing_api_key", status: 401 });
    const body = await problemAt(h, "https://ops.example/metrics", { headers: bearer("wrong") });
    expect(body, JSON.stringify(body)).toMatchObject({ type: "https://ops.example/docs/errors#invalid_api_key", status: 401 });
  });

  it("uses X-Forwarded-Proto and X-Forwarded-Host behind TRUST_PROXY, and ignores them without it", async () => {
    const forwarded = { "x-forwarded-proto": "https", "x-forwarded-host": "api.example.com" };
    expect(await problem(await proxied.req(EMAIL, { headers: forwarded }))).toMatchObject({ type: "https://api.example.com/docs/errors#missing_api_key" });
    expect(await problem(await proxied.req("/api/keys", { headers: forwarded }))).toMatchObject({ type: "https://api.example.com/docs/errors#missing_api_key" });
    expect(await problem(await proxied.req("/static/nope", { headers: forwarded }))).toMatchObject({ type: "https://api.example.com/docs/errors#not_found" });
    expect(await problem(await h.req(EMAIL, { headers: forwarded }))).toMatchObject({ type: "http://localhost/docs/errors#missing_api_key" });
  });

  it("gives the origin of a listening server, and localhost for a Host header that is no host", async () => {
    h.app.listen({ port: 0, hostname: "127.0.0.1" });
    try {
      const port = h.app.server!.port!;
      const res = await fetch(`http://127.0.0.1:${port}${EMAIL}`);
      expect(await problem(res)).toMatchObject({ type: `http://127.0.0.1:${port}/docs/errors#missing_api_key` });
      for (const host of ['evil"><x', "a/b", "[::1", "a%2fb"]) {
        // A browser's Accept too: /api answers problem+json whatever the Host (its path was once misread from the bare-path URL).
        for (const [path, accept] of [["/api/keys", "text/html"], ["/v1/email/a@b.co", "text/html"], ["/static/nope", "application/json"]]) {
          const raw = await rawRequest(port, [`GET ${path} HTTP/1.1`, `Host: ${host}`, `Accept: ${accept}`]);
          expect([host, path, raw.status]).toEqual([host, path, expect.stringMatching(/^HTTP\/1\.1 400 /)]);
          const body = JSON.parse(raw.body) as { type: string; code: string };
          expect([host, path, body.type]).toEqual([host, path, `http://localhost/docs/errors#${body.code}`]);
        }
      }
    } finally {
      await h.app.stop();
    }
  });

  it("gives absolute example types in /openapi.json", async () => {
    const doc = await (await h.req("/openapi.json")).json();
    const types: string[] = [];
    for (const item of Object.values(doc.paths) as Record<string, { responses?: Record<string, { content?: Record<string, { example?: { type: string; code: string } }> }> }>[]) {
      for (const op of Object.values(item)) {
        for (const answer of Object.values(op.responses ?? {})) {
          const example = answer.content?.["application/problem+json"]?.example;
          if (example) types.push(example.type === `https://keyport.example/docs/errors#${example.code}` ? "ok" : example.type);
        }
      }
    }
    expect(types.length).toBeGreaterThan(10);
    expect(types.filter((t) => t !== "ok")).toEqual([]);
  });
});

describe("requestOrigin", () => {
  const off = { trustProxy: false };
  const on = { trustProxy: true };

  it("is the request URL's scheme and host", () => {
    expect(requestOrigin(new Request("http://a/"), off)).toBe("http://a");
    expect(requestOrigin(new Request("https://api.example.com:8443/v1/x?y=1"), off)).toBe("https://api.example.com:8443");
    expect(requestOrigin(new Request("http://[::1]:3000/"), off)).toBe("http://[::1]:3000");
    expect(requestOrigin(new Request("http://192.0.2.1/"), off)).toBe("http://192.0.2.1");
  });

  it("ignores X-Forwarded-* without TRUST_PROXY", () => {
    const headers = { "x-forwarded-proto": "https", "x-forwarded-host": "evil.example" };
    expect(requestOrigin(new Request("http://a/", { headers }), off)).toBe("http://a");
  });

  it("takes the first X-Forwarded-Proto and X-Forwarded-Host behind TRUST_PROXY", () => {
    expect(requestOrigin(new Request("http://a/", { headers: { "x-forwarded-proto": "https", "x-forwarded-host": "api.example.com" } }), on)).toBe("https://api.example.com");
    expect(requestOrigin(new Request("http://a/", { headers: { "x-forwarded-proto": "HTTPS, http", "x-forwarded-host": "one.example:8443, two.example" } }), on)).toBe("https://one.example:8443");
    expect(requestOrigin(new Request("https://a/", { headers: { "x-forwarded-host": "b.example" } }), on)).toBe("https://b.example");
  });

  it("keeps the request's scheme when X-Forwarded-Proto is neither http nor https", () => {
    for (const proto of ["javascript", "ftp", "", "https:"]) {
      expect([proto, requestOrigin(new Request("http://a/", { headers: { "x-forwarded-proto": proto } }), on)]).toEqual([proto, "http://a"]);
    }
  });

  it("falls back to localhost for a forwarded host that is not a host name or address", () => {
    for (const host of ['evil"><x', "a.example/path", "user@a.example", "a.example:99999999", "a b", "[::1", "[::1]x", "a_b.example", "<script>", "a.example#x", "a.example?x"]) {
      expect([host, requestOrigin(new Request("https://a/", { headers: { "x-forwarded-host": host } }), on)]).toEqual([host, "https://localhost"]);
    }
  });

  it("falls back to localhost and http for a request URL whose host or scheme is odd", () => {
    for (const url of ["http://a_b/", "http://a!b/", "http://a'b/", "http://a;b/", "file:///etc/passwd"]) {
      expect([url, requestOrigin(new Request(url), off)]).toEqual([url, "http://localhost"]);
    }
    expect(requestOrigin(new Request("ftp://files.example/"), off)).toBe("http://files.example");
    // Bun's request.url is the bare path when the Host header it got is not a valid host.
    expect(requestOrigin({ url: "/v1/email/x", headers: new Headers() } as Request, off)).toBe("http://localhost");
  });
});
