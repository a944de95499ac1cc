import { Elysia } from "elysia";
import { zodFieldErrors } from "../errors.ts";
import { gatewayHandler, type GatewayEnv } from "../gateway/route.ts";
import { DomainError, invalidInput } from "../errors.ts";
import { runBatchItem } from "./batch.ts";
import { analyzeEmail } from "./email.ts";
import { analyzeIp } from "./ip.ts";
import { batchRequestSchema } from "./model.ts";

export const MAX_BATCH = 100;

/** A batch is metered and counted against quota as one request per item. */
function batchCost(body: unknown): number {
  const items = (body as { items?: unknown } | null)?.items;
  return Array.isArray(items) && items.length >= 1 && items.length <= MAX_BATCH ? items.length : 1;
}

/**
 * A path segment that is not valid percent-encoding (`%%`, `%ff`) is a 400. Elysia's own
 * router hands it over as null; Bun's router, which serves the listening socket, decodes the
 * bad escape to U+FFFD instead, so a U+FFFD is checked against the raw path (the client may
 * also have sent one, as `%EF%BF%BD`).
 */
function pathParam(value: unknown, request: Request): string {
  if (typeof value !== "string" || (value.includes("\uFFFD") && !validPercentEncoding(request.url))) {
    throw invalidInput("The address is not validly percent-encoded.", [{ field: "address", message: "is not valid percent-encoding" }]);
  }
  return value;
}

function validPercentEncoding(url: string): boolean {
  try {
    decodeURIComponent(new URL(url).pathname);
    return true;
  } catch {
    return false;
  }
}

/**
 * The metered data API behind the gateway chain. Registered before the app's observe hooks
 * (src/app.ts): each route's handler records its own request id, metrics and log line.
 */
export const dataApiRoutes = (env: GatewayEnv) =>
  new Elysia({ name: "data-api" })
    .get(
      "/v1/email/:address",
      gatewayHandler(env, "GET", "/v1/email/:address", { scope: "email:read" }, (params: { address?: unknown }, _pass, request) => analyzeEmail(pathParam(params.address, request))),
    )
    .get(
      "/v1/ip/:address",
      gatewayHandler(env, "GET", "/v1/ip/:address", { scope: "ip:read" }, (params: { address?: unknown }, _pass, request) => {
        const result = analyzeIp(pathParam(params.address, request));
        if (!result) throw invalidInput("The address is not a valid IPv4 or IPv6 address.", [{ field: "address", message: "is not an IP address" }]);
        return result;
      }),
    )
    .post(
      "/v1/batch",
      gatewayHandler(env, "POST", "/v1/batch", { scope: "batch:write", cost: batchCost }, (body: unknown) => {
        const parsed = batchRequestSchema.safeParse(body);
        if (!parsed.success) {
          const tooMany = Array.isArray((body as { items?: unknown } | null)?.items) && (body as { items: unknown[] }).items.length > MAX_BATCH;
          throw new DomainError("invalid_request", tooMany ? `A batch holds at most ${MAX_BATCH} items.` : "The batch is not valid.", zodFieldErrors(parsed.error));
        }
        return { results: parsed.data.items.map(runBatchItem) };
      }),
    );
