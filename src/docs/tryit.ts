import type { FieldError } from "../errors.ts";
import { ERROR_DOCS } from "./errors.ts";
import type { OperationView } from "./reference.ts";
import { requestHeaders, requestPath } from "./samples.ts";

/** The largest request body try-it sends (the form's JSON, in bytes). */
export const TRY_BODY_LIMIT = 64 * 1024;
/** The most of an answer's body the result panel shows. */
const SHOWN_BODY_LIMIT = 256 * 1024;

/** Which credential a try-it request carries. */
export type Credential = "sandbox" | "session" | "pasted";

/** What the try-it form holds: a value per parameter, the body's text, the credential. */
export interface TryForm {
  values: Record<string, string>;
  body: string;
  credential: Credential;
  key: string;
}

/** The form's field of a parameter. */
export const paramField = (name: string) => `param_${name}`;

/** The credentials an operation can be tried with, signed in or not. */
export function credentialsFor(op: Pick<OperationView, "gateway">, signedIn: boolean): Credential[] {
  if (!signedIn) return ["pasted"];
  return op.gateway ? ["sandbox", "pasted"] : ["session", "pasted"];
}

/** The form as first shown: the examples, and the first credential the operation allows. */
export function initialForm(op: OperationView, signedIn: boolean, values: Record<string, string> = {}): TryForm {
  const filled: Record<string, string> = {};
  for (const p of op.params) filled[p.name] = values[p.name] ?? p.example ?? "";
  return { values: filled, body: op.body?.example === undefined ? "" : JSON.stringify(op.body.example, null, 2), credential: credentialsFor(op, signedIn)[0]!, key: "" };
}

/** The submitted form's fields read into a TryForm (unknown credentials fall back to the first allowed). */
export function readForm(op: OperationView, fields: Record<string, unknown>, signedIn: boolean): TryForm {
  const text = (v: unknown) => (typeof v === "string" ? v : Array.isArray(v) && typeof v[0] === "string" ? v[0] : "");
  const values: Record<string, string> = {};
  for (const p of op.params) values[p.name] = text(fields[paramField(p.name)]).trim();
  const allowed = credentialsFor(op, signedIn);
  const asked = text(fields.credential) as Credential;
  return { values, body: text(fields.body), credential: allowed.includes(asked) ? asked : allowed[0]!, key: text(fields.key).trim() };
}

/** What is wrong with a form, every field at once (beside each field on the page). */
export function formErrors(op: OperationView, form: TryForm, signedIn: boolean): FieldError[] {
  const errors: FieldError[] = [];
  for (const p of op.params) {
    const v = form.values[p.name] ?? "";
    if (p.required && v === "" && p.in !== "cookie") errors.push({ field: paramField(p.name), message: "is required" });
    else if (v.length > 2000) errors.push({ field: paramField(p.name), message: "must be at most 2000 characters" });
    // A header value is one line of visible characters (RFC 9110 §5.5).
    else if (p.in === "header" && /[^\t\x20-\x7e\x80-\xff]/.test(v)) errors.push({ field: paramField(p.name), message: "must be one line of text without control characters (a header value)" });
  }
  // Fetch refuses TRACE (it would echo credentials back); curl can still send it.
  if (op.method === "TRACE") errors.push({ field: "credential", message: "TRACE cannot be sent from try-it; use the curl sample below" });
  if (op.body) {
    if (Buffer.byteLength(form.body) > TRY_BODY_LIMIT) errors.push({ field: "body", message: `must be at most ${TRY_BODY_LIMIT / 1024} KiB` });
    else if (form.body.trim() === "") {
      if (op.body.required) errors.push({ field: "body", message: "is required: a JSON object" });
    } else {
      try {
        JSON.parse(form.body);
      } catch (err) {
        errors.push({ field: "body", message: `is not valid JSON (${(err as Error).message})` });
      }
    }
  }
  if (form.credential === "pasted") {
    if (form.key === "") errors.push({ field: "key", message: signedIn ? "is required: paste a key, or choose the sandbox key" : "is required: paste a key, or log in to use a sandbox key" });
    else if (form.key.length > 200 || /\s/.test(form.key)) errors.push({ field: "key", message: "is not a key: paste it whole, without spaces" });
    else if (op.changes && !op.gateway && !signedIn) errors.push({ field: "key", message: "log in to try an operation that changes keys" });
  }
  return errors;
}

/**
 * The request try-it makes: through `app.handle`, so the whole chain runs as for a program.
 * The operation's header parameters are sent too, but never in place of the credential.
 */
export function tryRequest(op: OperationView, form: TryForm, origin: string, auth: Record<string, string>, userAgent: string | null): Request {
  const headers: Record<string, string> = { accept: "application/json", ...requestHeaders(op, form.values), ...auth };
  if (userAgent) headers["user-agent"] = `${userAgent.slice(0, 200)} (Keyport try-it)`;
  const hasBody = op.body !== undefined && form.body.trim() !== "";
  if (hasBody) headers["content-type"] = "application/json";
  return new Request(origin + requestPath(op, form.values), { method: op.method, headers, body: hasBody ? form.body : undefined });
}

export interface HeaderRow {
  name: string;
  value: string;
  /** A rate-limit header: highlighted, with what it says in words. */
  note?: string;
}

export interface TryResult {
  method: string;
  url: string;
  status: number;
  statusText: string;
  meaning: string;
  ms: number;
  headers: HeaderRow[];
  body: string;
  /** A problem's code, linked to its explanation. */
  problemCode?: string;
}

const MEANINGS: Record<number, [string, string]> = {
  200: ["OK", "The request succeeded."],
  201: ["Created", "The object was created."],
  204: ["No Content", "The request succeeded; there is no body."],
  400: ["Bad Request", "The request is malformed: see the fields in `errors`."],
  401: ["Unauthorized", "The key is missing, unknown, revoked or expired."],
  403: ["Forbidden", "The key may not do this: a missing scope, an address outside its allowlist, or a test key on the management API."],
  404: ["Not Found", "No such object in this account, or no such path."],
  409: ["Conflict", "The object's state does not allow this now."],
  410: ["Gone", "This was available once and is no longer."],
  413: ["Content Too Large", "The body is too large."],
  429: ["Too Many Requests", "A limit is reached: wait the seconds in Retry-After."],
  500: ["Internal Server Error", "Something failed on the server's side."],
  502: ["Bad Gateway", "The gateway could not reach the product's server."],
  503: ["Service Unavailable", "The server cannot answer right now; retry shortly."],
  504: ["Gateway Timeout", "The product's server did not answer in time."],
};

/** What a problem code means and what to do, as the errors page says it. */
const CODE_MEANINGS = new Map(ERROR_DOCS.map((e) => [e.code as string, `${e.meaning} ${e.action}`]));

/** What each policy name in the RateLimit headers is (src/gateway/chain.ts). */
const POLICY_NAMES: Record<string, string> = { default: "the key's per-minute limit", plan: "the plan's per-second limit", month: "the plan's calls this month" };

/** The items of a RateLimit or RateLimit-Policy value (a Structured Field list): each name and its integer parameters. */
function policies(value: string): { name: string; params: Record<string, string> }[] {
  return value.split(",").flatMap((item) => {
    const [head, ...params] = item.trim().split(";");
    const name = /^"([^"]*)"$/.exec(head?.trim() ?? "")?.[1];
    if (name === undefined) return [];
    return [{ name, params: Object.fromEntries(params.map((p) => p.trim().split("=") as [string, string])) }];
  });
}

const seconds = (t: string | undefined) => {
  const n = Number(t);
  return !Number.isFinite(n) ? "?" : n >= 86_400 ? `${Math.round(n / 86_400)} d` : n >= 3600 ? `${Math.round(n / 3600)} h` : `${n} s`;
};

/** What a rate-limit header says, in words; undefined for other headers. */
export function rateLimitNote(name: string, value: string): string | undefined {
  switch (name) {
    case "ratelimit":
      return policies(value)
        .map((p) => `${POLICY_NAMES[p.name] ?? p.name}: ${p.params.r ?? "?"} left, full again in ${seconds(p.params.t)}`)
        .join("; ") + ".";
    case "ratelimit-policy":
      return policies(value)
        .map((p) => `${POLICY_NAMES[p.name] ?? p.name}: ${p.params.q ?? "?"} per ${p.name === "month" ? "month" : seconds(p.params.w)}`)
        .join("; ") + ".";
    case "x-ratelimit-limit":
      return "The limit of the policy nearest exhaustion (see RateLimit).";
    case "x-ratelimit-remaining":
      return "What that policy has left.";
    case "x-ratelimit-reset": {
      const at = Number(value);
      return Number.isFinite(at) ? `That policy is full again at ${new Date(at * 1000).toISOString().slice(0, 19).replace("T", " ")} UTC.` : undefined;
    }
    case "retry-after":
      return `Wait ${value} s before retrying.`;
    default:
      return undefined;
  }
}

/** An answer as the result panel shows it: status in words, every header, the body pretty-printed. */
export async function describeAnswer(request: Request, response: Response, ms: number): Promise<TryResult> {
  const raw = await response.text();
  const type = response.headers.get("content-type") ?? "";
  let body = raw.length > SHOWN_BODY_LIMIT ? raw.slice(0, SHOWN_BODY_LIMIT) + "\n… (cut)" : raw;
  let problemCode: string | undefined;
  if (/json/.test(type)) {
    try {
      const parsed = JSON.parse(raw) as unknown;
      body = JSON.stringify(parsed, null, 2);
      const code = (parsed as { code?: unknown } | null)?.code;
      if (type.includes("problem+json") && typeof code === "string") problemCode = code;
    } catch {
      // Shown as it came.
    }
  }
  const headers: HeaderRow[] = [];
  response.headers.forEach((value, name) => {
    headers.push({ name, value, note: rateLimitNote(name.toLowerCase(), value) });
  });
  headers.sort((a, b) => Number(b.note !== undefined) - Number(a.note !== undefined) || a.name.localeCompare(b.name));
  const [statusText, general] = MEANINGS[response.status] ?? [response.statusText || "", ""];
  // A known code says exactly what went wrong (a 403 may be a scope, a plan or a missing sandbox).
  const meaning = (problemCode && CODE_MEANINGS.get(problemCode)) || general;
  return { method: request.method, url: request.url, status: response.status, statusText, meaning, ms, headers, body, problemCode };
}
