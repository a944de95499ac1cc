import { Elysia, type ValidationError } from "elysia";
import { z } from "zod";
import { DomainError, zodFieldErrors, type FieldError } from "../errors.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../ops/log.ts";
import type { Metrics } from "../ops/metrics.ts";
import { newRequestId } from "./observe.ts";
import { namesHost, requestOrigin } from "./origin.ts";
import { ProblemError, domainResponse, problemJson, problemResponse } from "./problem.ts";

/** How a browser is answered instead of problem+json, by status (the portal's message page). */
export type ErrorPage = (status: number) => Response;

/**
 * A route schema's failure as `{field, message}` pairs with the schema's own messages:
 * Elysia keeps the zod schema and the value it refused, and parsing it again gives every
 * issue with its path (Elysia's own list joins paths and keeps only zod's summaries).
 */
function validationErrors(error: Readonly<ValidationError>): FieldError[] {
  const schema = (error.validator as { schema?: unknown } | undefined)?.schema;
  if (schema instanceof z.ZodType) {
    const r = schema.safeParse(error.value);
    if (!r.success) return zodFieldErrors(r.error).slice(0, 20);
  }
  return error.all.slice(0, 20).map((e) => ({
    field: ("path" in e ? String(e.path ?? "") : "").replace(/^\//, "").replaceAll("/", ".") || "body",
    message: String(("summary" in e ? e.summary : undefined) ?? e.message ?? "is invalid"),
  }));
}

const WHAT: Record<string, string> = { body: "request body", query: "query", params: "path" };

/**
 * What the error answers need: the log for the unexpected ones, the config for the request's
 * origin (problem types), the metrics for requests refused before any route (no access log
 * or request counter sees those).
 */
export interface ErrorsDeps {
  log: Logger;
  config: Pick<Config, "trustProxy">;
  metrics?: Pick<Metrics, "recordRequest">;
}

const MALFORMED_HOST = "The Host header does not name a host this server can answer for.";
/** The origin of answers to a request that names none (requestOrigin's fallback for a host that is not one). */
const NO_ORIGIN = "http://localhost";

/**
 * One global onError: expected failures (DomainError) become problem+json with their code's
 * status; parse and validation failures become 400 invalid_request; anything else is logged
 * with its stack and answered with a generic 500 that never echoes the error's message.
 * Browsers navigating the portal get `page` instead. The hook itself never throws: a throw
 * there would reach Bun, whose development error page shows paths and source.
 *
 * Before any route, a request whose Host header names no host (request.url does not parse)
 * is answered 400 (RFC 9112 §3.2), logged once: pages build links from the request's URL.
 */
export const errorsPlugin = (deps: ErrorsDeps, page: ErrorPage) =>
  // Destructured on purpose: Elysia reads which context fields a hook uses from its source,
  // and a hook taking the whole context makes it parse cookies, query and headers on every
  // request of every route (measured: -10% requests/s for the whole app).
  new Elysia({ name: "errors" })
    // No `return f(` in an onRequest hook: Elysia would count it async and await it, which
    // makes every request of the app, the data API's too, answer through a promise
    // (src/gateway/route.ts, the handler's comment).
    .onRequest(({ request }) => {
      if (!namesHost(request.url)) {
        const refused = refuseHost(request, deps, page);
        if (refused !== undefined) return refused;
      }
    })
    .onError({ as: "global" }, ({ code, error, request, set }) => {
      let response: Response;
      try {
        response = answer({ code, error, request, set }, deps, page);
      } catch (err) {
        deps.log.error("error handler failed", { path: pathOf(request.url), name: (err as Error)?.name, message: (err as Error)?.message, stack: (err as Error)?.stack });
        response = problemResponse(NO_ORIGIN, "internal_error", "Something went wrong on our side; the request id identifies it in our logs.");
      }
      // The access log and metrics read the status from `set` once the answer is sent.
      set.status = response.status;
      return response;
    });

/**
 * The 400 for a Host header that is no host, with the request id, log line and request count
 * every answer has. An HTTP/1.0 request may carry no Host at all (a load balancer's health
 * check): it goes on, and a page that needs its URL answers the same 400 from the error hook.
 */
function refuseHost(request: Request, deps: ErrorsDeps, page: ErrorPage): Response | undefined {
  const host = request.headers.get("host");
  if (host === null) return undefined;
  const requestId = newRequestId();
  deps.log.warn("malformed host header", { requestId, method: request.method, path: pathOf(request.url).slice(0, 200), host: host.slice(0, 200) });
  deps.metrics?.recordRequest(request.method, "unmatched", 400, 0);
  const response = wantsPage(request) ? page(400) : problemResponse(NO_ORIGIN, "invalid_request", MALFORMED_HOST);
  response.headers.set("x-request-id", requestId);
  return response;
}

/** The problem+json answer for an error a data-API handler threw (the same as the global hook gives). */
export function apiErrorResponse(error: unknown, request: Request, headers: Record<string, string | number>, deps: ErrorsDeps): Response {
  const code = (error as { code?: unknown })?.code;
  return problemAnswer({ code: typeof code === "string" ? code : "UNKNOWN", error, request, set: { headers } }, deps);
}

function sqlState(error: unknown): string | undefined {
  const e = error as { code?: unknown; cause?: { code?: unknown } };
  return typeof e?.code === "string" ? e.code : typeof e?.cause?.code === "string" ? e.cause.code : undefined;
}

/**
 * Browsers navigating the portal get a page, programs get problem+json. The path is read
 * from the raw URL: `new URL()` throws on a malformed Host header, and an error handler that
 * throws answers Bun's own error page.
 */
function wantsPage(request: Request): boolean {
  const path = pathOf(request.url);
  if (path.startsWith("/v1/") || path.startsWith("/api/") || path === "/v1" || path === "/api") return false;
  return (request.headers.get("accept") ?? "").includes("text/html");
}

/**
 * The path of a request URL without parsing it (`http://host/path?query` → `/path`). Bun's
 * request.url is the bare path when the Host header is not a valid host.
 */
function pathOf(url: string): string {
  const start = url.startsWith("/") ? 0 : url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  const end = url.indexOf("?", start);
  return end < 0 ? url.slice(start) : url.slice(start, end);
}

function answer(ctx: { code: string | number; error: unknown; request: Request; set: { headers: unknown } }, deps: ErrorsDeps, page: ErrorPage): Response {
  const response = problemAnswer(ctx, deps);
  return wantsPage(ctx.request) ? page(response.status) : response;
}

function problemAnswer({ code, error, request, set }: { code: string | number; error: unknown; request: Request; set: { headers: unknown } }, deps: ErrorsDeps): Response {
  const origin = requestOrigin(request, deps.config);
  if (error instanceof DomainError) return domainResponse(origin, error);
  if (error instanceof ProblemError) return problemJson(origin, error.problem);
  switch (code) {
    case "NOT_FOUND":
      return problemResponse(origin, "not_found", "No route matches this method and path.");
    case "VALIDATION": {
      const v = error as Readonly<ValidationError>;
      return problemResponse(origin, "invalid_request", `The ${WHAT[v.type] ?? "request"} is not valid.`, { errors: validationErrors(v) });
    }
    case "PARSE":
      return problemResponse(origin, "invalid_request", "The request body could not be parsed.");
    case "INVALID_COOKIE_SIGNATURE":
      return problemResponse(origin, "invalid_request", "A cookie is not valid.");
  }
  // A malformed percent-escape in the path (`/v1/ip/%%`) fails Elysia's decoding.
  if (error instanceof URIError) return problemResponse(origin, "invalid_request", "The URL is not validly percent-encoded.");
  // SQLSTATE class 22 (data exception: a NUL byte, an invalid encoding, a number out of
  // range) means the input reached the database malformed; it is the caller's error.
  if (/^22[0-9A-Z]{3}$/.test(sqlState(error) ?? "")) return problemResponse(origin, "invalid_request", "The request holds a value that cannot be stored or searched for.");
  // A request without a Host (HTTP/1.0) reached a route that needed its URL.
  if (!URL.canParse(request.url)) return problemResponse(origin, "invalid_request", MALFORMED_HOST);
  const status = (error as { status?: number }).status;
  if (status === 413) return problemResponse(origin, "payload_too_large", "The request body is too large.");
  if (typeof status === "number" && status >= 400 && status < 500) return problemResponse(origin, "invalid_request", "The request could not be handled.");
  const e = error as Error;
  deps.log.error("unhandled error", {
    requestId: (set.headers as Record<string, string>)["x-request-id"],
    path: pathOf(request.url),
    name: e?.name,
    message: e?.message,
    stack: e?.stack,
  });
  return problemResponse(origin, "internal_error", "Something went wrong on our side; the request id identifies it in our logs.");
}
