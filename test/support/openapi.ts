import Ajv2020, { type ErrorObject, type ValidateFunction } from "ajv/dist/2020";
import addFormats from "ajv-formats";

/**
 * Validates real answers against /openapi.json (STYLE.md "JSON answers in tests are
 * validated against /openapi.json, so docs cannot drift"). The harness runs every /v1 and
 * /api answer through `check`, and every problem+json answer through `problemTypeDrift`;
 * test/docs/openapi.test.ts checks the document's examples.
 *
 * @example
 * const docs = openApiChecker(await (await app.handle(new Request("http://localhost/openapi.json"))).json());
 * const problem = docs.check("GET", "/api/keys/key_1", 404, "application/problem+json", body);
 * if (problem) throw new Error(problem);
 */
export interface OpenApiChecker {
  /**
   * The documented operation a request reaches (method, and a path template such as
   * `/api/keys/{id}`), if any. `path` is the one the app saw: the request URL's, parsed and
   * percent-encoded (`new Request` drops a trailing NUL, so `/v1/email/\0` is `/v1/email/`).
   */
  operationFor(method: string, path: string): { template: string; operation: Operation } | undefined;
  /**
   * Why a JSON answer breaks the document, or undefined when it keeps to it (or the request
   * reaches no documented operation). `contentType` is the answer's, parameters allowed.
   */
  check(method: string, path: string, status: number, contentType: string, body: unknown): string | undefined;
  /** Why `value` does not match the schema at `pointer` (an RFC 6901 pointer into the document), or undefined. */
  validateAt(pointer: string, value: unknown): string | undefined;
}

export interface Operation {
  operationId?: string;
  tags?: string[];
  security?: Record<string, string[]>[];
  requestBody?: { content?: Record<string, MediaType> };
  responses?: Record<string, { content?: Record<string, MediaType> }>;
}
export interface MediaType {
  schema?: unknown;
  example?: unknown;
}

type Document = { paths?: Record<string, Record<string, Operation>> };

// The document is registered under this id so every `#/components/…` inside it resolves.
const DOCUMENT_ID = "https://keyport.test/openapi.json";

export const JSON_TYPES = ["application/json", "application/problem+json"];

/** `application/json; charset=utf-8` → `application/json`. */
export const mediaType = (contentType: string | null): string => (contentType ?? "").split(";")[0]!.trim().toLowerCase();

const escapePointer = (s: string) => s.replaceAll("~", "~0").replaceAll("/", "~1");

export const pointer = (...parts: string[]) => `#/${parts.map(escapePointer).join("/")}`;

/** A body for a failure message: enough to see what drifted, never pages of it. */
const shown = (body: unknown) => {
  const text = JSON.stringify(body) ?? String(body);
  return text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
};

/**
 * Why a problem+json body's `type` is not the URL of its code's explanation on the reference
 * page of the origin the request reached (`<origin>/docs/errors#<code>`), or undefined. The
 * harness runs it on every problem+json answer, documented path or not.
 *
 * @example
 * problemTypeDrift("http://localhost", { type: "http://localhost/docs/errors#not_found", code: "not_found" }) // undefined
 */
export function problemTypeDrift(origin: string, body: unknown): string | undefined {
  const { type, code } = (body ?? {}) as { type?: unknown; code?: unknown };
  const expected = `${origin}/docs/errors#${String(code)}`;
  return type === expected ? undefined : `the problem type is ${JSON.stringify(type)}, not ${JSON.stringify(expected)}; body ${shown(body)}`;
}

function describeErrors(errors: ErrorObject[] | null | undefined): string {
  return (errors ?? [])
    .slice(0, 10)
    .map((e) => `${e.instancePath || "(root)"} ${e.message}${e.params && Object.keys(e.params).length ? ` ${JSON.stringify(e.params)}` : ""}`)
    .join("; ");
}

/** `/api/keys/{id}/usage` as a regex over a concrete path: each `{name}` is one segment. */
function templateRegex(template: string): RegExp {
  const source = template
    .split("/")
    .map((segment) => (/^\{[^}]+\}$/.test(segment) ? "[^/]+" : segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")))
    .join("/");
  return new RegExp(`^${source}$`);
}

// A document is the same for every harness of a worker: its validators compile once.
const checkers = new Map<string, OpenApiChecker>();

/** A checker for `doc`, shared with any earlier one made from an equal document. */
export function openApiChecker(doc: unknown): OpenApiChecker {
  const text = JSON.stringify(doc);
  let checker = checkers.get(text);
  if (!checker) checkers.set(text, (checker = makeChecker(JSON.parse(text) as Document)));
  return checker;
}

function makeChecker(doc: Document): OpenApiChecker {
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
  // The document is an OpenAPI document, not a JSON Schema: it is not checked against the
  // 2020-12 meta-schema (the validator in test/docs/openapi.test.ts checks it as OpenAPI).
  ajv.addSchema({ ...doc, $id: DOCUMENT_ID }, undefined, undefined, false);
  const compiled = new Map<string, ValidateFunction>();
  const validatorAt = (ptr: string): ValidateFunction => {
    let v = compiled.get(ptr);
    if (!v) compiled.set(ptr, (v = ajv.compile({ $ref: DOCUMENT_ID + ptr })));
    return v;
  };
  const validateAt = (ptr: string, value: unknown): string | undefined => {
    const v = validatorAt(ptr);
    return v(value) ? undefined : describeErrors(v.errors);
  };

  // Literal segments win over parameters, as in Elysia's router: templates with fewer
  // parameters are tried first.
  const templates = Object.keys(doc.paths ?? {})
    .map((template) => ({ template, regex: templateRegex(template), params: (template.match(/\{/g) ?? []).length }))
    .sort((a, b) => a.params - b.params);

  const operationFor = (method: string, path: string) => {
    // Elysia's router ignores one trailing slash (strictPath off).
    const bare = path.split(/[?#]/)[0]!.replace(/(.)\/$/, "$1");
    for (const { template, regex } of templates) {
      if (!regex.test(bare)) continue;
      const operation = doc.paths![template]![method.toLowerCase()];
      return operation ? { template, operation } : undefined;
    }
    return undefined;
  };

  return {
    operationFor,
    validateAt,
    check(method, path, status, contentType, body) {
      const found = operationFor(method, path);
      if (!found) return undefined;
      const { template, operation } = found;
      const where = `${method} ${path} → ${status} (${operation.operationId ?? template})`;
      const answer = operation.responses?.[String(status)];
      if (!answer) return `${where}: status ${status} is not documented (documented: ${Object.keys(operation.responses ?? {}).join(", ")}); body ${shown(body)}`;
      const type = mediaType(contentType);
      if (!answer.content?.[type]) return `${where}: content type ${type || "(none)"} is not documented for ${status} (documented: ${Object.keys(answer.content ?? {}).join(", ") || "none"})`;
      const errors = validateAt(pointer("paths", template, method.toLowerCase(), "responses", String(status), "content", type, "schema"), body);
      return errors === undefined ? undefined : `${where}: the body does not match the documented schema: ${errors}; body ${shown(body)}`;
    },
  };
}
