import { Elysia } from "elysia";
import { readBounded } from "../plugins/body.ts";
import type { Deps } from "../deps.ts";
import type { FieldError } from "../errors.ts";
import { apiErrorResponse } from "../plugins/errors.ts";
import { newRequestId } from "../plugins/observe.ts";
import { requestOrigin } from "../plugins/origin.ts";
import { PROBLEM_CONTENT_TYPE, problemAt, problemBody, type Problem } from "../plugins/problem.ts";
import { giveBackUnits, runChain, socketAddress, type GatewayPass } from "../gateway/chain.ts";
import type { GatewayEnv } from "../gateway/route.ts";
import { matchOperation, type Product } from "./registry.ts";

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) are the connection's, never forwarded; nor are the
 * consumer's credentials (the key, the portal's cookie) or headers only Keyport may set.
 */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "host"]);
const NOT_FORWARDED = new Set(["authorization", "x-api-key", "cookie", "x-request-id", "forwarded", "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "content-length"]);
const KEYPORT_HEADER = /^keyport-/i;

/** A body over the product's limit, seen while streaming it on (no Content-Length up front). */
class BodyTooLarge extends Error {
  override name = "BodyTooLarge";
}

/** The header names the Connection header lists, which are hop-by-hop too. */
function connectionTokens(headers: Headers): Set<string> {
  const value = headers.get("connection");
  return new Set(value ? value.split(",").map((t) => t.trim().toLowerCase()) : []);
}

/** The request body, counted as it streams: past `limit` bytes the stream fails and the upstream sees an aborted request. */
function limitedBody(body: ReadableStream<Uint8Array>, limit: number, over: () => void): ReadableStream<Uint8Array> {
  let seen = 0;
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        seen += chunk.byteLength;
        if (seen > limit) {
          over();
          controller.error(new BodyTooLarge(`over ${limit} bytes`));
          return;
        }
        controller.enqueue(chunk);
      },
    }),
  );
}

const isJsonType = (type: string | null) => type !== null && /^application\/([\w.+-]*\+)?json\s*(;|$)/i.test(type);

/** Whether a request carries a body (a declared length above zero, or a chunked one). */
function declaresBody(request: Request): boolean {
  const length = request.headers.get("content-length");
  return (length !== null && length !== "0") || request.headers.has("transfer-encoding");
}

/**
 * `/v1/<product>/<path>`: a registered product's operation, through the gateway chain (key,
 * status, suspension, scope, the plan includes the product, IP, the key's and the plan's
 * limits, quotas), then to the product's upstream — live keys to its base URL, test keys to
 * its sandbox. The request and the answer stream through: a large body is never held.
 *
 * Connections to upstreams are Bun's fetch pool (kept alive and reused per host). The
 * answer's latency, metered with the operation's path template as its endpoint, runs until
 * the upstream's status and headers arrive; the body then streams on its own.
 */
export function proxyHandler(env: GatewayEnv) {
  const { deps, record, inflight } = env;

  const answerProblem = (request: Request, headers: Record<string, string | number>, problem: Problem): Response => {
    const out = new Headers();
    for (const [k, v] of Object.entries(headers)) out.set(k, String(v));
    out.set("content-type", PROBLEM_CONTENT_TYPE);
    // A body refused before it was read, or cut short over the limit, leaves the connection
    // unable to carry another request: it closes after the answer (RFC 9112 §9.6), rather
    // than wait on a client still sending (a graceful shutdown waited on such connections).
    if (problem.code === "payload_too_large" || (!request.bodyUsed && declaresBody(request))) out.set("connection", "close");
    return new Response(JSON.stringify(problemAt(requestOrigin(request, deps.config), problem)), { status: problem.status, headers: out });
  };

  return async ({ request, set, params }: { request: Request; set: { headers: Record<string, string | number> }; params: Record<string, string | undefined> }): Promise<Response> => {
    const startedAt = performance.now();
    const requestId = newRequestId();
    const headers = set.headers;
    // The answer is built here whole: Elysia's own headers would be merged into it again.
    set.headers = {};
    headers["x-request-id"] = requestId;
    const id = params.product ?? "";
    const product = deps.products.get(id);
    const url = request.url;
    const pathStart = url.indexOf("/", url.indexOf("://") + 3);
    const queryStart = url.indexOf("?", pathStart);
    const fullPath = url.slice(pathStart, queryStart < 0 ? undefined : queryStart);
    // After the id's segment as sent: Elysia decodes the id (`tr%61cking` is `tracking`), so
    // its length says nothing of where the rest starts.
    const idEnd = fullPath.indexOf("/", "/v1/".length);
    const rest = idEnd < 0 ? "/" : fullPath.slice(idEnd);
    const search = queryStart < 0 ? "" : url.slice(queryStart);
    inflight.n++;
    let route = "/v1/:product/*";
    let status = 500;
    try {
      if (!product) {
        status = 404;
        return answerProblem(request, headers, problemBody("not_found", `There is no product "${id.slice(0, 40)}" on this gateway; /docs lists the products.`, { product: id.slice(0, 40) }));
      }
      const match = matchOperation(product, request.method, rest);
      if (!match) {
        status = 404;
        return answerProblem(request, headers, problemBody("not_found", `The product "${product.id}" has no operation ${request.method} ${rest.slice(0, 200)}; /docs lists its operations.`, { product: product.id }));
      }
      const op = match.operation;
      route = op.endpoint.slice(op.method.length + 1);
      const socketIp = socketAddress(env.server(), request);
      const result = await runChain(deps, request, headers, socketIp, op.scope, 1, { quota: true, product: product.id });
      if ("problem" in result) {
        status = result.problem.status;
        if (result.key) deps.meter.record(result.key.id, result.key.accountId, result.key.environment, op.endpoint, status, performance.now() - startedAt, 1);
        return answerProblem(request, headers, result.problem);
      }
      let response: Response;
      try {
        response = await forward(request, socketIp, headers, product, match.params, op.check, rest, search, result);
      } catch (err) {
        giveBackUnits(deps, result);
        throw err;
      }
      status = response.status;
      const pass = result;
      deps.meter.record(pass.key.id, pass.key.accountId, pass.key.environment, op.endpoint, status, performance.now() - startedAt, status < 400 ? pass.cost : 1);
      if (status >= 400) giveBackUnits(deps, pass);
      return response;
    } catch (err) {
      const response = apiErrorResponse(err, request, headers, deps);
      status = response.status;
      return response;
    } finally {
      record(request.method, route, status, performance.now() - startedAt, requestId);
      inflight.n--;
    }
  };

  /** The request on to the upstream, and its answer back: the gateway's refusals past the chain (sandbox, body, spec, upstream) as problems. */
  async function forward(
    request: Request,
    socketIp: string | undefined,
    headers: Record<string, string | number>,
    product: Product,
    pathParams: Record<string, string>,
    check: ((parts: { path: Record<string, string>; query: URLSearchParams; body: unknown; json: boolean }) => FieldError[]) | undefined,
    rest: string,
    search: string,
    pass: GatewayPass,
  ): Promise<Response> {
    const key = pass.key;
    const base = key.environment === "live" ? product.upstreamUrl : product.sandboxUrl;
    if (base === null) {
      return answerProblem(request, headers, problemBody("sandbox_unavailable", `Test keys call a product's sandbox, and "${product.id}" has none; use a live key.`, { product: product.id }));
    }
    const declared = request.headers.get("content-length");
    if (declared !== null && Number(declared) > product.maxBodyBytes) {
      return answerProblem(request, headers, problemBody("payload_too_large", `The body is larger than the ${product.maxBodyBytes} bytes "${product.id}" accepts.`));
    }

    let body: ReadableStream<Uint8Array> | Uint8Array | null = request.body;
    let tooLarge = false;
    if (check !== undefined) {
      let bytes: Uint8Array | undefined;
      if (body !== null) {
        const read = await readBounded(body, product.maxBodyBytes);
        if (read === null) return answerProblem(request, headers, problemBody("payload_too_large", `The body is larger than the ${product.maxBodyBytes} bytes "${product.id}" accepts.`));
        bytes = read;
      }
      const json = isJsonType(request.headers.get("content-type"));
      let parsed: unknown;
      if (bytes !== undefined && bytes.byteLength > 0) {
        if (json) {
          try {
            parsed = JSON.parse(new TextDecoder().decode(bytes));
          } catch {
            return answerProblem(request, headers, problemBody("invalid_request", "The body is not valid JSON.", { errors: [{ field: "body", message: "is not valid JSON" }] }));
          }
        } else parsed = bytes;
      }
      const errors = check({ path: pathParams, query: new URLSearchParams(search), body: parsed, json });
      if (errors.length > 0) return answerProblem(request, headers, problemBody("invalid_request", "The request does not match the operation's spec.", { errors: errors.slice(0, 50) }));
      body = bytes && bytes.byteLength > 0 ? bytes : null;
    } else if (body !== null) {
      body = limitedBody(body, product.maxBodyBytes, () => (tooLarge = true));
    }

    const out = upstreamHeaders(deps, request, socketIp, product, pass);
    out.set("x-request-id", String(headers["x-request-id"]));
    if (body instanceof Uint8Array) out.set("content-length", String(body.byteLength));
    else if (declared !== null && body !== null) out.set("content-length", declared);

    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, product.timeoutMs);
    let upstream: Response;
    try {
      upstream = await fetch(base + rest + search, {
        method: request.method,
        headers: out,
        body,
        redirect: "manual",
        signal: AbortSignal.any([controller.signal, request.signal]),
        // Forwarded as sent: the consumer asked for the encoding, the upstream chose it.
        decompress: false,
        // A streamed body is sent as it arrives.
        duplex: "half",
      } as RequestInit);
    } catch (err) {
      if (tooLarge) return answerProblem(request, headers, problemBody("payload_too_large", `The body is larger than the ${product.maxBodyBytes} bytes "${product.id}" accepts.`));
      if (timedOut) return answerProblem(request, headers, problemBody("upstream_timeout", `"${product.id}" did not answer within ${product.timeoutMs / 1000} s.`, { product: product.id }));
      deps.log.warn("upstream unavailable", { product: product.id, requestId: headers["x-request-id"], error: (err as Error).message });
      return answerProblem(request, headers, problemBody("upstream_unavailable", `"${product.id}" could not be reached; retry shortly.`, { product: product.id }));
    } finally {
      clearTimeout(timer);
    }

    const answer = new Headers();
    const dropped = connectionTokens(upstream.headers);
    upstream.headers.forEach((v, k) => {
      if (!HOP_BY_HOP.has(k) && !dropped.has(k) && k !== "set-cookie") answer.append(k, v);
    });
    for (const c of upstream.headers.getSetCookie()) answer.append("set-cookie", c);
    // The gateway's own headers win over an upstream's of the same name.
    for (const [k, v] of Object.entries(headers)) answer.set(k, String(v));
    return new Response(request.method === "HEAD" ? null : upstream.body, { status: upstream.status, statusText: upstream.statusText, headers: answer });
  }
}

/**
 * What the upstream receives: the consumer's headers minus hop-by-hop ones, its credentials
 * and any Keyport-* header it tried to send; then the forwarded client, the key and account,
 * and the product's gateway secret.
 */
function upstreamHeaders(deps: Deps, request: Request, socketIp: string | undefined, product: Product, pass: GatewayPass): Headers {
  const out = new Headers();
  const dropped = connectionTokens(request.headers);
  request.headers.forEach((v, k) => {
    if (!HOP_BY_HOP.has(k) && !NOT_FORWARDED.has(k) && !dropped.has(k) && !KEYPORT_HEADER.test(k)) out.append(k, v);
  });
  const origin = requestOrigin(request, deps.config);
  // The peer's address is appended to the chain it sent only behind a trusted proxy;
  // otherwise a client could name any address as its own.
  const prior = deps.config.trustProxy ? request.headers.get("x-forwarded-for") : null;
  if (socketIp !== undefined) out.set("x-forwarded-for", prior ? `${prior}, ${socketIp}` : socketIp);
  else if (prior) out.set("x-forwarded-for", prior);
  out.set("x-forwarded-proto", origin.slice(0, origin.indexOf(":")));
  out.set("x-forwarded-host", origin.slice(origin.indexOf("://") + 3));
  out.set("keyport-account", pass.key.accountId);
  out.set("keyport-key-id", pass.key.id);
  out.set("keyport-environment", pass.key.environment);
  out.set("keyport-gateway-secret", product.secret);
  return out;
}

/** The proxy's routes. Registered with the data API, before the app's observe hooks: the handler records its own request. */
export const proxyRoutes = (env: GatewayEnv) => {
  const handle = proxyHandler(env);
  return new Elysia({ name: "products-proxy" }).all("/v1/:product", handle, { detail: { hide: true } }).all("/v1/:product/*", handle, { detail: { hide: true } });
};
