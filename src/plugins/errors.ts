import { Elysia, type ValidationError } from "elysia";
import { z } from "zod";
import { DomainError, zodFieldErrors, type FieldError } from "../errors.ts";
import type { Config } from "../config.ts";
import type { Logger } from "../ops/log.ts";
import { requestOrigin } from "./origin.ts";
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

/** What the error answers need: the log for the unexpected ones, the config for the request's origin (problem types). */
export interface ErrorsDeps {
  log: Logger;
  config: Pick<Config, "trustProxy">;
}

/**
 * One global onError: expected failures (DomainError) become problem+json with their code's
 * status; parse and validation failures become 400 invalid_request; anything else is logged
 * with its stack and answered with a generic 500 that never echoes the error's message.
 * Browsers navigating the portal get `page` instead.
 */
export const errorsPlugin = (deps: ErrorsDeps, page: ErrorPage) =>
  // Destructured on purpose: Elysia reads which context fields a hook uses from its source,
  // and a hook taking the whole context makes it parse cookies, query and headers on every
  // request of every route (measured: -10% requests/s for the whole app).
  new Elysia({ name: "errors" }).onError({ as: "global" }, ({ code, error, request, set }) => {
    const response = answer({ code, error, request, set }, deps, page);
    // The access log and metrics read the status from `set` once the answer is sent.
    set.status = response.status;
    return response;
  });

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
