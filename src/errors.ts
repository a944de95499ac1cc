import type { z } from "zod";

/**
 * Every expected failure has a stable code, listed here by capability. Services throw
 * `DomainError`s carrying a code and know nothing of HTTP; the edge answers each code with
 * the status of the one table in src/plugins/problem.ts, which the OpenAPI document reads
 * too. A code means one thing everywhere: `key_revoked` is the gateway's 401, and changing
 * a key that is no longer active is `key_not_active`.
 */
export const ERROR_CODES = [
  // Input, anywhere.
  "invalid_request",
  "payload_too_large",
  "not_found",
  // The gateway's key checks (DESIGN.md "Gateway").
  "missing_api_key",
  "invalid_api_key",
  "key_revoked",
  "key_expired",
  "insufficient_scope",
  "ip_not_allowed",
  "account_suspended",
  "rate_limited",
  "quota_exceeded",
  "temporarily_unavailable",
  // A team's own APIs behind the gateway (src/products/).
  "product_not_in_plan",
  "sandbox_unavailable",
  "upstream_unavailable",
  "upstream_timeout",
  "product_exists",
  // Management API callers.
  "invalid_session",
  "csrf_failed",
  "test_key_not_allowed",
  "key_replaced",
  // Accounts and sign-in.
  "email_taken",
  "invalid_credentials",
  "too_many_attempts",
  "email_not_verified",
  // Keys.
  "key_limit_reached",
  "key_not_active",
  // Rotation.
  "rotation_in_progress",
  "rotation_not_cancellable",
  "rotation_failed",
  "secret_gone",
  // Notifications and webhooks.
  "no_webhook",
  "webhook_target_refused",
  // Anything unexpected: logged, never explained.
  "internal_error",
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** A failing input field: `rateLimit`, `items.3.value`, or `body` for the whole of it. */
export interface FieldError {
  field: string;
  message: string;
}

/** An expected failure a service reports: a code, a sentence for people, and the fields at fault. */
export class DomainError extends Error {
  override name = "DomainError";
  constructor(
    readonly code: ErrorCode,
    readonly detail: string,
    readonly errors?: FieldError[],
    /** How long until trying again makes sense (a throttle): the edge sends it as Retry-After. */
    readonly retryAfterSeconds?: number,
  ) {
    super(detail);
  }
}

export const notFound = (what = "resource") => new DomainError("not_found", `No such ${what}.`);

export const invalidInput = (detail: string, errors?: FieldError[]) => new DomainError("invalid_request", detail, errors);

/** zod issues as field errors, with the schema's own messages. */
export function zodFieldErrors(error: z.ZodError): FieldError[] {
  return error.issues.map((i) => ({ field: i.path.join(".") || "body", message: i.message }));
}

/**
 * `input` checked against `schema`, or an invalid_request naming every failing field. The
 * one place input that has not been through an edge schema (the CLI's flags, a portal
 * form's coerced fields) becomes a typed value.
 */
export function parseInput<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const r = schema.safeParse(input ?? {});
  if (!r.success) throw invalidInput(`The ${what} is not valid.`, zodFieldErrors(r.error));
  return r.data;
}

/** A JSON request body as an object: none is `{}`, anything but an object is a 400. */
export function jsonObject(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null || body === "") return {};
  if (typeof body !== "object" || Array.isArray(body)) throw invalidInput("The body must be a JSON object.");
  return body as Record<string, unknown>;
}
