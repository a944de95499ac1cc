import type { DocumentDecoration } from "elysia";
import { z } from "zod";
import type { ErrorCode } from "../errors.ts";
import { PROBLEM_CONTENT_TYPE, STATUS, problemAt, problemBody } from "./problem.ts";

/**
 * What a route tells /openapi.json beyond its body/query/params schemas: its operation id,
 * product tag, required scope and every answer it gives. Answers are documented here rather
 * than as Elysia `response` schemas, which Elysia would also enforce (and transform) on
 * every answer at run time; the tests validate the real answers against the document
 * instead (test/support/openapi.ts).
 */

/** A zod schema as an OpenAPI 3.1 (JSON Schema 2020-12) schema, without `$schema`. */
export function jsonSchema(schema: z.ZodType, io: "input" | "output" = "output"): Record<string, unknown> {
  const { $schema: _, ...rest } = z.toJSONSchema(schema, { target: "draft-2020-12", io, unrepresentable: "any" }) as Record<string, unknown>;
  return rest;
}

export const TAGS = {
  email: "Email addresses: syntax, domain, disposable and free providers, role accounts, typos.",
  ip: "IP addresses: version, private and reserved ranges, country.",
  batch: "Up to 100 email and IP checks in one request, metered per item.",
  keys: "API keys: create, list, change, roll and revoke.",
  usage: "A key's daily usage: successes, errors, latency, top endpoints.",
  rotation: "Scheduled and emergency rotation, the rotation policy, and the reveal of a new secret.",
  audit: "The account's audit log.",
  notifications: "In-app notifications and the signed webhook.",
} as const;
export type Tag = keyof typeof TAGS;

/** The management API's credential: a session cookie is also accepted (portal, with X-CSRF-Token). */
const security = (scope: string): Record<string, string[]>[] => [{ bearer: [scope] }, { apiKey: [scope] }];

/** Response headers every gateway answer carries (DESIGN.md "Gateway"). */
export const GATEWAY_HEADERS = {
  RateLimit: {
    description:
      'IETF httpapi RateLimit (draft 11), a Structured Field list: per policy the requests remaining `r` and the seconds `t` until it is replenished, in the order of `RateLimit-Policy` (`"default";r=59;t=1, "plan";r=1;t=1, "month";r=499;t=1234567`).',
    schema: { type: "string" },
  },
  "RateLimit-Policy": {
    description:
      'Every policy in force, a Structured Field list of quota `q` per window `w` seconds: `default`, the key\'s requests per minute; `plan`, the plan\'s requests per second across the account\'s keys; `month`, the plan\'s included calls this calendar month (UTC), for live keys on the data API (`"default";q=60;w=60, "plan";q=2;w=1, "month";q=500;w=2592000`).',
    schema: { type: "string" },
  },
  "X-RateLimit-Limit": { description: "The quota of the policy nearest exhaustion (the smallest share left; the key's per-minute limit on a tie). A paid plan's month, which never refuses, is not counted as one.", schema: { type: "integer" } },
  "X-RateLimit-Remaining": { description: "What that policy has left.", schema: { type: "integer" } },
  "X-RateLimit-Reset": { description: "When that policy is fully replenished, in Unix seconds.", schema: { type: "integer" } },
  "X-Request-Id": { description: "Identifies the request in Keyport's logs.", schema: { type: "string" } },
} as const;
const RETRY_AFTER = { "Retry-After": { description: "Seconds to wait before retrying.", schema: { type: "integer" } } };
const REQUEST_ID = { "X-Request-Id": GATEWAY_HEADERS["X-Request-Id"] };

export interface Answer {
  description: string;
  schema: z.ZodType;
  example: unknown;
}

export interface OperationDoc {
  id: string;
  tag: Tag;
  summary: string;
  description?: string;
  /** The scope a key needs: a data-API scope, or keys:manage for /api (the default). */
  scope?: string;
  /** A /v1 route: gateway headers on every answer and the gateway's codes. */
  gateway?: boolean;
  /** The successful answers by status. */
  answers: Record<number, Answer>;
  /** The route's own failure codes (the credential's are added). */
  errors?: ErrorCode[];
  /** An example request body, where the route takes one. */
  requestExample?: unknown;
  /** Path and query parameters' descriptions and examples, by name (merged into the generated ones). */
  params?: Record<string, ParamDoc>;
  /** Hand-written samples (`x-codeSamples`): each replaces the reference's generated one in its language. */
  codeSamples?: CodeSample[];
}

export interface ParamDoc {
  description?: string;
  example?: string;
}

/** A code sample as Redocly's `x-codeSamples` extension has it; `lang` is `curl`, `javascript` or `python`. */
export interface CodeSample {
  lang: string;
  label?: string;
  source: string;
}

export const GATEWAY_CODES: ErrorCode[] = ["missing_api_key", "invalid_api_key", "key_revoked", "key_expired", "account_suspended", "product_not_in_plan", "insufficient_scope", "ip_not_allowed", "rate_limited", "quota_exceeded", "temporarily_unavailable"];
/**
 * The management API's caller check (src/portal/plugin.ts) answers these on every route. Every
 * route may also answer invalid_request, whether or not it takes a body or a query: a body is
 * parsed and its depth checked before the route's own schemas, and an id holding bytes the
 * database refuses (a NUL) is the caller's error too. A body over the server's limit is
 * refused on any route before a route reads it (413, src/plugins/body-limit.ts).
 */
const CALLER_CODES: ErrorCode[] = [...GATEWAY_CODES.filter((c) => c !== "quota_exceeded" && c !== "product_not_in_plan"), "invalid_session", "csrf_failed", "test_key_not_allowed", "key_replaced", "invalid_request", "payload_too_large"];

/** Request body examples by operation id: the document builder puts each under its operation's body. */
export const REQUEST_EXAMPLES = new Map<string, unknown>();
/** Parameter descriptions and examples by operation id: the document builder merges them into the generated parameters. */
export const PARAM_DOCS = new Map<string, Record<string, ParamDoc>>();

/** The `detail` of a route: its operation in /openapi.json. */
export function operation(doc: OperationDoc): DocumentDecoration {
  if (doc.requestExample !== undefined) REQUEST_EXAMPLES.set(doc.id, doc.requestExample);
  if (doc.params) PARAM_DOCS.set(doc.id, doc.params);
  const headers = doc.gateway ? GATEWAY_HEADERS : REQUEST_ID;
  const responses: Record<string, unknown> = {};
  for (const [status, a] of Object.entries(doc.answers)) {
    responses[status] = { description: a.description, headers, content: { "application/json": { schema: jsonSchema(a.schema), example: a.example } } };
  }
  const codes = [...new Set([...(doc.errors ?? []), ...(doc.gateway ? GATEWAY_CODES : CALLER_CODES), "internal_error" as const])];
  Object.assign(responses, problemResponses(codes, headers));
  return {
    operationId: doc.id,
    tags: [doc.tag],
    summary: doc.summary,
    ...(doc.description ? { description: doc.description } : {}),
    security: security(doc.scope ?? "keys:manage"),
    ...(doc.codeSamples ? { "x-codeSamples": doc.codeSamples } : {}),
    // JSON Schema objects built above; openapi-types' 3.0 typing has no 2020-12 keywords.
    responses: responses as DocumentDecoration["responses"],
  };
}

/**
 * The problem+json answers of a list of codes, one per status, as OpenAPI responses: each
 * lists its codes and carries `headers` (and Retry-After on a 429).
 */
export function problemResponses(codes: readonly ErrorCode[], headers: Record<string, unknown> = GATEWAY_HEADERS): Record<string, { description: string; headers: Record<string, unknown>; content: Record<string, unknown> }> {
  const responses: ReturnType<typeof problemResponses> = {};
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) byStatus.set(STATUS[code], [...(byStatus.get(STATUS[code]) ?? []), code]);
  for (const [status, list] of [...byStatus].sort(([a], [b]) => a - b)) {
    const example = problemAt("https://keyport.example", problemBody(list[0]!, "An example of this failure."));
    responses[String(status)] = {
      description: `Refused: ${list.map((c) => `\`${c}\``).join(", ")}.`,
      headers: status === 429 ? { ...headers, ...RETRY_AFTER } : headers,
      content: {
        [PROBLEM_CONTENT_TYPE]: {
          schema: { allOf: [{ $ref: "#/components/schemas/Problem" }, { type: "object", properties: { code: { enum: list } } }] },
          example,
        },
      },
    };
  }
  return responses;
}

/** RFC 9457 problem details, the shape of every error (components.schemas.Problem). */
export const problemSchema = {
  type: "object",
  required: ["type", "title", "status", "detail", "code"],
  properties: {
    type: { type: "string", format: "uri", description: "The URL of this code's explanation on this server's /docs/errors page (`<origin>/docs/errors#<code>`, the origin the request reached)." },
    title: { type: "string", description: "The status's name." },
    status: { type: "integer" },
    detail: { type: "string", description: "What went wrong, for people." },
    code: { type: "string", description: "A stable code for programs." },
    errors: {
      type: "array",
      description: "The fields at fault, for invalid_request.",
      items: { type: "object", required: ["field", "message"], properties: { field: { type: "string" }, message: { type: "string" } } },
    },
  },
} as const;
