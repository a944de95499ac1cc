import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { Elysia } from "elysia";
import { connect } from "node:net";
import { createLogger } from "../../src/ops/log.ts";
import { errorsPlugin } from "../../src/plugins/errors.ts";
import { backends } from "../support/backends.ts";
import { startHarness, type Harness } from "../support/harness.ts";

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * One request written to a socket as given, so the Host header and the request line are
 * whatever the test says (fetch refuses to send a malformed Host). Answers the parsed answer,
 * or status 0 when the server closed the connection without one.
 */
function rawRequest(port: number, head: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => socket.write(`${head}\r\nConnection: close\r\n\r\n`));
    const chunks: Buffer[] = [];
    socket.on("data", (d: Buffer) => chunks.push(d));
    socket.on("error", reject);
    socket.on("close", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      const split = text.indexOf("\r\n\r\n");
      const lines = (split < 0 ? text : text.slice(0, split)).split("\r\n");
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "")?.[1] ?? 0);
      const headers: Record<string, string> = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(":");
        if (colon > 0) headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
      }
      resolve({ status, headers, body: split < 0 ? "" : text.slice(split + 4) });
    });
  });
}

/** What must never reach a client: the server's directory, source file names, stack frames. */
function leaks(body: string): string[] {
  const found: string[] = [];
  if (body.includes(process.cwd())) found.push("the server's directory");
  if (/\b[\w-]+\.tsx?\b/.test(body)) found.push("a source file name");
  if (/\bat [\w.<>]+ \(/.test(body)) found.push("a stack frame");
  return found;
}

const BAD_HOSTS = ["a b", "x:99999", "%", "[::1", "1.2.3.999", "a@b", 'evil"><x', "a%2fb"];
const PAGES = ["/portal", "/", "/login", "/docs"];
const PROGRAMS = ["/v1/email/someone@example.com", "/api/keys", "/healthz", "/static/nope"];

describe("a Host header that names no host", () => {
  // No storage is involved: the embedded backend is enough.
  let h: Harness;
  let port: number;
  beforeAll(async () => {
    h = await startHarness(backends[0]!);
    h.app.listen({ port: 0, hostname: "127.0.0.1", development: false });
    port = h.app.server!.port!;
  });
  afterAll(async () => {
    await h.app.stop();
    await h.close();
  });

  it("answers a browser's page request 400 with the plain message page, logged once, on /portal, / and every page", async () => {
    for (const host of BAD_HOSTS) {
      for (const path of PAGES) {
        const res = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nAccept: text/html`);
        const at = `${JSON.stringify(host)} ${path}: ${res.status} ${res.body.slice(0, 300)}`;
        expect(res.status, at).toBe(400);
        expect(res.headers["content-type"], at).toBe("text/html; charset=utf-8");
        expect(res.body, at).toContain("Bad request");
        expect(leaks(res.body), at).toEqual([]);
        const requestId = res.headers["x-request-id"];
        expect(requestId, at).toMatch(/^req_/);
        const lines = h.logs.filter((l) => l.includes(`"${requestId}"`));
        expect(lines.length, `${at}\n${lines.join("\n")}`).toBe(1);
        expect(JSON.parse(lines[0]!)).toMatchObject({ level: "warn", msg: "malformed host header", method: "GET", path });
      }
    }
    expect(h.logs.filter((l) => l.includes("unhandled error"))).toEqual([]);
  });

  it("answers a program 400 problem+json invalid_request, on the API, the gateway and the ops routes", async () => {
    for (const host of BAD_HOSTS) {
      for (const path of [...PROGRAMS, ...PAGES]) {
        for (const accept of ["application/json", "*/*"]) {
          if (PAGES.includes(path) && accept === "*/*") continue;
          const res = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nAccept: ${accept}`);
          const at = `${JSON.stringify(host)} ${path} ${accept}: ${res.status} ${res.body.slice(0, 300)}`;
          expect(res.status, at).toBe(400);
          expect(res.headers["content-type"], at).toBe("application/problem+json");
          expect(JSON.parse(res.body), at).toEqual({
            type: "http://localhost/docs/errors#invalid_request",
            title: "Bad Request",
            status: 400,
            detail: "The Host header does not name a host this server can answer for.",
            code: "invalid_request",
          });
        }
      }
    }
    // Programs sending a browser's Accept to /v1 and /api still get problem+json.
    const res = await rawRequest(port, "POST /api/keys HTTP/1.1\r\nHost: a b\r\nAccept: text/html\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}");
    expect([res.status, res.headers["content-type"]]).toEqual([400, "application/problem+json"]);
  });

  it("counts each refused request in /metrics", async () => {
    const before = await (await h.req("/metrics")).text();
    const count = (text: string) => Number(/keyport_http_requests_total\{method="GET",route="unmatched",status="400"\} (\d+)/.exec(text)?.[1] ?? 0);
    for (let i = 0; i < 3; i++) await rawRequest(port, "GET /portal HTTP/1.1\r\nHost: a b");
    expect(count(await (await h.req("/metrics")).text()) - count(before)).toBe(3);
  });

  it("still answers a well-formed Host, a bracketed IPv6 host and a Host with a port", async () => {
    for (const host of [`127.0.0.1:${port}`, "localhost", "[::1]:3000", "keyport.example", "my_host"]) {
      const page = await rawRequest(port, `GET /login HTTP/1.1\r\nHost: ${host}\r\nAccept: text/html`);
      expect([host, page.status]).toEqual([host, 200]);
      const ops = await rawRequest(port, `GET /healthz HTTP/1.1\r\nHost: ${host}`);
      expect([host, ops.status]).toEqual([host, 200]);
    }
  });

  it("lets an HTTP/1.0 request without a Host through, and answers a page that needs its URL 400, never 500", async () => {
    const health = await rawRequest(port, "GET /healthz HTTP/1.0");
    expect(health.status).toBe(200);
    for (const path of ["/portal", "/"]) {
      const page = await rawRequest(port, `GET ${path} HTTP/1.0\r\nAccept: text/html`);
      expect([path, page.status, leaks(page.body)]).toEqual([path, 400, []]);
      const program = await rawRequest(port, `GET ${path} HTTP/1.0`);
      expect([path, program.status, program.headers["content-type"]]).toEqual([path, 400, "application/problem+json"]);
    }
    expect(h.logs.filter((l) => l.includes("unhandled error"))).toEqual([]);
  });
});

describe("the error hook", () => {
  it("answers a generic 500 problem+json when rendering the error page itself fails, never Bun's error page", async () => {
    const logs: string[] = [];
    const app = new Elysia()
      .use(
        errorsPlugin({ log: createLogger("debug", (l) => void logs.push(l)), config: { trustProxy: false } }, () => {
          throw new Error("the page broke");
        }),
      )
      .get("/boom", () => {
        throw new Error("the route broke");
      })
      .listen({ port: 0, hostname: "127.0.0.1", development: false });
    try {
      const res = await rawRequest(app.server!.port!, "GET /boom HTTP/1.1\r\nHost: localhost\r\nAccept: text/html");
      expect([res.status, res.headers["content-type"]], res.body.slice(0, 300)).toEqual([500, "application/problem+json"]);
      expect(JSON.parse(res.body)).toMatchObject({ code: "internal_error", status: 500 });
      expect(res.body).not.toContain("broke");
      expect(leaks(res.body)).toEqual([]);
      expect(logs.filter((l) => l.includes("error handler failed") && l.includes("the page broke")).length).toBe(1);
    } finally {
      await app.stop();
    }
  });
});
