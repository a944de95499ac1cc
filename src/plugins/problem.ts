/** RFC 9457 problem details: the one shape of every API error. */
export interface FieldError {
  field: string;
  message: string;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  errors?: FieldError[];
  [extra: string]: unknown;
}

const titles: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

export const PROBLEM_TYPE_BASE = "https://keyport.dev/problems/";

export function problemBody(status: number, code: string, detail: string, extra: Partial<Problem> = {}): Problem {
  return {
    type: PROBLEM_TYPE_BASE + code.replaceAll("_", "-"),
    title: titles[status] ?? "Error",
    status,
    detail,
    code,
    ...extra,
  };
}

export const PROBLEM_CONTENT_TYPE = "application/problem+json";

export function problemResponse(status: number, code: string, detail: string, extra: Partial<Problem> = {}, headers: Record<string, string> = {}): Response {
  return problemJson(problemBody(status, code, detail, extra), headers);
}

/** The answer for a problem body: its status, problem+json. */
export function problemJson(problem: Problem, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(problem), { status: problem.status, headers: { "content-type": PROBLEM_CONTENT_TYPE, ...headers } });
}

/** Thrown by routes and services for expected failures; the errors plugin renders it. */
export class ApiError extends Error {
  override name = "ApiError";
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly errors?: FieldError[],
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
  /** The problem+json body this error answers (its headers are `headers`). */
  problem(): Problem {
    return problemBody(this.status, this.code, this.detail, this.errors ? { errors: this.errors } : {});
  }
  toResponse(extraHeaders: Record<string, string> = {}): Response {
    return problemJson(this.problem(), { ...this.headers, ...extraHeaders });
  }
}

export const notFound = (what = "resource") => new ApiError(404, "not_found", `No such ${what}.`);
export const invalidRequest = (detail: string, errors?: FieldError[]) => new ApiError(400, "invalid_request", detail, errors);

/** A JSON request body as an object: none is `{}`, anything but an object is a 400. */
export function jsonObject(body: unknown): Record<string, unknown> {
  if (body === undefined || body === null || body === "") return {};
  if (typeof body !== "object" || Array.isArray(body)) throw invalidRequest("The body must be a JSON object.");
  return body as Record<string, unknown>;
}
