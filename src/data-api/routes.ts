import { Elysia } from "elysia";
import { zodFieldErrors } from "../errors.ts";
import { gatewayHandler, type GatewayEnv } from "../gateway/route.ts";
import { DomainError, invalidInput } from "../errors.ts";
import { runBatchItem } from "./batch.ts";
import { analyzeEmail } from "./email.ts";
import { analyzeIp } from "./ip.ts";
import { batchRequestSchema, batchResponseSchema, emailAnalysisSchema, ipAnalysisSchema } from "./model.ts";
import { jsonSchema, operation } from "../plugins/openapi.ts";

const EMAIL_EXAMPLE = {
  input: "someone@gmial.com",
  valid: true,
  normalized: "someone@gmial.com",
  local: "someone",
  domain: "gmial.com",
  disposable: false,
  freeProvider: false,
  role: false,
  suggestion: "someone@gmail.com",
};
const IP_EXAMPLE = { ip: "8.8.8.8", version: 4, private: false, loopback: false, reserved: false, country: "US" };

// The data API validates inside its handlers, after the key is checked (an unauthenticated
// request learns nothing from a 400), so its request shapes are documented in `detail`
// rather than declared as Elysia schemas.

export const MAX_BATCH = 100;

type BatchParse = ReturnType<typeof batchRequestSchema.safeParse>;
/** Each batch body's parse, made once: for its cost before the chain, then for its answer. */
const parsedBatches = new WeakMap<object, BatchParse>();

function parseBatch(body: unknown): BatchParse {
  if (typeof body !== "object" || body === null) return batchRequestSchema.safeParse(body);
  let parsed = parsedBatches.get(body);
  if (parsed === undefined) parsedBatches.set(body, (parsed = batchRequestSchema.safeParse(body)));
  return parsed;
}

/**
 * A valid batch costs one request per item: metered, counted against the quotas and the
 * key's per-minute rate limit. One that validation refuses costs one request, like any
 * refused call: it holds no units of the quotas while it is being refused, and what it took
 * goes back with the refusal (src/gateway/route.ts).
 */
function batchCost(body: unknown): number {
  const parsed = parseBatch(body);
  return parsed.success ? parsed.data.items.length : 1;
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
      gatewayHandler(env, "GET", "/v1/email/:address", { scope: "email:read", product: "email" }, (params: { address?: unknown }, _pass, request) => analyzeEmail(pathParam(params.address, request))),
      {
        detail: {
          ...operation({
            id: "analyzeEmail",
            tag: "email",
            summary: "Check an email address",
            description: "Syntax validity (no DNS or SMTP probe), the normalized address, its domain, whether the domain is disposable or a free provider, whether it is a role account, and a suggestion when the domain looks like a typo.",
            scope: "email:read",
            gateway: true,
            params: { address: { description: "The email address to check (percent-encoded in the path).", example: "someone@gmial.com" } },
            answers: { 200: { description: "The analysis; `valid: false` for a malformed address.", schema: emailAnalysisSchema, example: EMAIL_EXAMPLE } },
            errors: ["invalid_request"],
          }),
        },
      },
    )
    .get(
      "/v1/ip/:address",
      gatewayHandler(env, "GET", "/v1/ip/:address", { scope: "ip:read", product: "ip" }, (params: { address?: unknown }, _pass, request) => {
        const result = analyzeIp(pathParam(params.address, request));
        if (!result) throw invalidInput("The address is not a valid IPv4 or IPv6 address.", [{ field: "address", message: "is not an IP address" }]);
        return result;
      }),
      {
        detail: {
          ...operation({
            id: "analyzeIp",
            tag: "ip",
            summary: "Check an IP address",
            description: "Version, private / loopback / reserved ranges, and the country of the registry record for its range.",
            scope: "ip:read",
            gateway: true,
            params: { address: { description: "An IPv4 or IPv6 address.", example: "8.8.8.8" } },
            answers: { 200: { description: "The analysis.", schema: ipAnalysisSchema, example: IP_EXAMPLE } },
            errors: ["invalid_request"],
          }),
        },
      },
    )
    .post(
      "/v1/batch",
      gatewayHandler(env, "POST", "/v1/batch", { scope: "batch:write", product: "batch", cost: batchCost }, (body: unknown) => {
        const parsed = parseBatch(body);
        if (!parsed.success) {
          const tooMany = Array.isArray((body as { items?: unknown } | null)?.items) && (body as { items: unknown[] }).items.length > MAX_BATCH;
          throw new DomainError("invalid_request", tooMany ? `A batch holds at most ${MAX_BATCH} items.` : "The batch is not valid.", zodFieldErrors(parsed.error));
        }
        return { results: parsed.data.items.map(runBatchItem) };
      }),
      {
        detail: {
          ...operation({
            id: "runBatch",
            tag: "batch",
            summary: "Check up to 100 emails and IPs",
            description: "One answer per item, in order; a bad item is an error in its place, not a failed batch. Metered and counted per item against the quota and the key's per-minute rate limit: a batch of more items than that limit is refused (invalid_request).",
            scope: "batch:write",
            gateway: true,
            answers: {
              200: {
                description: "One result per item.",
                schema: batchResponseSchema,
                example: { results: [{ type: "email", value: "someone@gmial.com", result: EMAIL_EXAMPLE }, { type: "ip", value: "8.8.8.8", result: IP_EXAMPLE }] },
              },
            },
            errors: ["invalid_request", "payload_too_large"],
          }),
          requestBody: {
            required: true,
            content: {
              "application/json": {
                schema: jsonSchema(batchRequestSchema, "input"),
                example: { items: [{ type: "email", value: "someone@gmial.com" }, { type: "ip", value: "8.8.8.8" }] },
              },
            },
          },
        },
      },
    );
