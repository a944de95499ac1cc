import { Elysia } from "elysia";
import type { Logger } from "../ops/log.ts";
import { ApiError, problemResponse, type FieldError } from "./problem.ts";
import { htmlResponse } from "../portal/http.ts";
import { MessagePage } from "../../views/message.tsx";

/** Turns a TypeBox/zod validation failure into `{field, message}` pairs. */
function fieldErrors(error: unknown): FieldError[] {
  const all = (error as { all?: Array<{ path?: string; message?: string; summary?: string }> }).all;
  if (!Array.isArray(all)) return [];
  return all.slice(0, 20).map((e) => ({
    field: (e.path ?? "").replace(/^\//, "").replaceAll("/", ".") || "body",
    message: e.summary ?? e.message ?? "is invalid",
  }));
}

/**
 * One global onError: expected failures (ApiError) become problem+json with their code;
 * parse and validation failures become 400 invalid_request; anything else is logged with
 * its stack and answered with a generic 500 that never echoes the error's message.
 */
export const errorsPlugin = (log: Logger) =>
  // Destructured on purpose: Elysia reads which context fields a hook uses from its source,
  // and a hook taking the whole context makes it parse cookies, query and headers on every
  // request of every route (measured: -10% requests/s for the whole app).
  new Elysia({ name: "errors" }).onError({ as: "global" }, ({ code, error, request, set }) => {
    const response = answer({ code, error, request, set }, log);
    // The access log and metrics read the status from `set` once the answer is sent.
    set.status = response.status;
    return response;
  });

/** The problem+json answer for an error a data-API handler threw (the same as the global hook gives). */
export function apiErrorResponse(error: unknown, request: Request, headers: Record<string, string | number>, log: Logger): Response {
  const code = (error as { code?: unknown })?.code;
  return problemAnswer({ code: typeof code === "string" ? code : "UNKNOWN", error, request, set: { headers } }, log);
}

function sqlState(error: unknown): string | undefined {
  const e = error as { code?: unknown; cause?: { code?: unknown } };
  const code = typeof e?.code === "string" ? e.code : typeof e?.cause?.code === "string" ? e.cause.code : undefined;
  return code;
}

/** Browsers navigating the portal get a page, programs get problem+json. */
function wantsPage(request: Request): boolean {
  const path = new URL(request.url).pathname;
  if (path.startsWith("/v1/") || path.startsWith("/api/") || path === "/v1" || path === "/api") return false;
  return (request.headers.get("accept") ?? "").includes("text/html");
}

function answer(ctx: { code: string | number; error: unknown; request: Request; set: { headers: unknown } }, log: Logger): Response {
  const response = problemAnswer(ctx, log);
  if (!wantsPage(ctx.request)) return response;
  const titles: Record<number, string> = { 404: "Not found", 400: "Bad request", 500: "Something went wrong" };
  const message =
    response.status === 404
      ? "There is no such page, or it belongs to another account."
      : response.status >= 500
        ? "Something went wrong on our side. Try again in a moment."
        : "The request could not be handled.";
  return htmlResponse(MessagePage({ title: titles[response.status] ?? "Error", message }), response.status);
}

function problemAnswer({ code, error, request, set }: { code: string | number; error: unknown; request: Request; set: { headers: unknown } }, log: Logger): Response {
    if (error instanceof ApiError) return error.toResponse();
    switch (code) {
      case "NOT_FOUND":
        return problemResponse(404, "not_found", "No route matches this method and path.");
      case "VALIDATION":
        return problemResponse(400, "invalid_request", "The request is not valid.", { errors: fieldErrors(error) });
      case "PARSE":
        return problemResponse(400, "invalid_request", "The request body could not be parsed.");
      case "INVALID_COOKIE_SIGNATURE":
        return problemResponse(400, "invalid_request", "A cookie is not valid.");
    }
    // A malformed percent-escape in the path (`/v1/ip/%%`) fails Elysia's decoding.
    if (error instanceof URIError) return problemResponse(400, "invalid_request", "The URL is not validly percent-encoded.");
    // SQLSTATE class 22 (data exception: a NUL byte, an invalid encoding, a number out of
    // range) means the input reached the database malformed; it is the caller's error.
    if (/^22[0-9A-Z]{3}$/.test(sqlState(error) ?? "")) return problemResponse(400, "invalid_request", "The request holds a value that cannot be stored or searched for.");
    const status = (error as { status?: number }).status;
    if (typeof status === "number" && status >= 400 && status < 500) {
      return problemResponse(status, status === 413 ? "payload_too_large" : "invalid_request", "The request could not be handled.");
    }
    const e = error as Error;
    log.error("unhandled error", {
      requestId: (set.headers as Record<string, string>)["x-request-id"],
      path: new URL(request.url).pathname,
      name: e?.name,
      message: e?.message,
      stack: e?.stack,
    });
    return problemResponse(500, "internal_error", "Something went wrong on our side; the request id identifies it in our logs.");
}
