import { DomainError, type ErrorCode, type FieldError } from "../errors.ts";

/** RFC 9457 problem details: the one shape of every API error. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  errors?: FieldError[];
  [extra: string]: unknown;
}

/**
 * The one table from error code to HTTP status. The problem+json renderer answers with it
 * and the OpenAPI document lists each route's codes under these statuses.
 */
export const STATUS: Record<ErrorCode, number> = {
  invalid_request: 400,
  invalid_credentials: 400,
  webhook_target_refused: 400,
  missing_api_key: 401,
  invalid_api_key: 401,
  key_revoked: 401,
  key_expired: 401,
  invalid_session: 401,
  insufficient_scope: 403,
  ip_not_allowed: 403,
  account_suspended: 403,
  product_not_in_plan: 403,
  sandbox_unavailable: 403,
  csrf_failed: 403,
  test_key_not_allowed: 403,
  key_replaced: 403,
  email_not_verified: 403,
  not_found: 404,
  email_taken: 409,
  key_limit_reached: 409,
  key_not_active: 409,
  rotation_in_progress: 409,
  rotation_not_cancellable: 409,
  rotation_failed: 409,
  no_webhook: 409,
  product_exists: 409,
  secret_gone: 410,
  payload_too_large: 413,
  rate_limited: 429,
  quota_exceeded: 429,
  too_many_attempts: 429,
  internal_error: 500,
  upstream_unavailable: 502,
  temporarily_unavailable: 503,
  upstream_timeout: 504,
};

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  409: "Conflict",
  410: "Gone",
  413: "Content Too Large",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

export const PROBLEM_CONTENT_TYPE = "application/problem+json";

/**
 * A refusal that already has its problem body (the gateway chain's, for a key the management
 * API refuses), thrown where a hook cannot answer by returning.
 */
export class ProblemError extends Error {
  override name = "ProblemError";
  constructor(readonly problem: Problem) {
    super(problem.detail);
  }
}

/**
 * Where a code is explained: its anchor on the error reference this server serves. A problem's
 * `type` is this made absolute with the origin the client reached: RFC 9457 §3.1.1 wants a
 * URI that documents the problem when dereferenced, and warns that relative ones are not
 * resolved correctly by every client.
 */
export function problemTypePath(code: ErrorCode): string {
  return `/docs/errors#${code}`;
}

/**
 * A problem body whose `type` is still relative (`/docs/errors#<code>`): the answer made from
 * it (`problemJson`, `problemResponse`, `domainResponse`, `problemAt`) sets the absolute one.
 */
export function problemBody(code: ErrorCode, detail: string, extra: Partial<Problem> = {}): Problem {
  const status = STATUS[code];
  return { type: problemTypePath(code), title: TITLES[status] ?? "Error", status, detail, code, ...extra };
}

/**
 * The body as answered at `origin` (from `requestOrigin`): its `type` is the absolute URL of
 * its code's explanation, whatever it held before.
 *
 * @example
 * problemAt("https://api.example.com", problemBody("not_found", "No such key."))
 * // { type: "https://api.example.com/docs/errors#not_found", … }
 */
export function problemAt(origin: string, problem: Problem): Problem {
  return { ...problem, type: origin + problemTypePath(problem.code) };
}

/** The answer for a problem body at `origin` (the request's, `requestOrigin`): its status, problem+json. */
export function problemJson(origin: string, problem: Problem, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(problemAt(origin, problem)), { status: problem.status, headers: { "content-type": PROBLEM_CONTENT_TYPE, ...headers } });
}

export function problemResponse(origin: string, code: ErrorCode, detail: string, extra: Partial<Problem> = {}, headers: Record<string, string> = {}): Response {
  return problemJson(origin, problemBody(code, detail, extra), headers);
}

/** A service's expected failure as problem+json: the code's status, the fields at fault. */
export function domainProblem(error: DomainError): Problem {
  return problemBody(error.code, error.detail, error.errors ? { errors: error.errors } : {});
}

/** The headers a domain error answers with (a throttle's Retry-After). */
export function domainHeaders(error: DomainError): Record<string, string> {
  return error.retryAfterSeconds === undefined ? {} : { "retry-after": String(error.retryAfterSeconds) };
}

export function domainResponse(origin: string, error: DomainError): Response {
  return problemJson(origin, domainProblem(error), domainHeaders(error));
}
