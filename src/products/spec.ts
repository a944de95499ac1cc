import { Validator } from "@seriousme/openapi-schema-validator";
import type { FieldError } from "../errors.ts";

/**
 * A product's OpenAPI spec: parsed (JSON or YAML), validated against the OpenAPI 3.0 / 3.1
 * schemas (@seriousme/openapi-schema-validator), then turned into what the gateway needs:
 * its operations with their path templates and scopes. Everything here is a pure function
 * of the document, so every instance compiles the same routes from the same row.
 */

type Json = Record<string, unknown>;

export const HTTP_METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

/** The largest spec accepted: a big real-world API's document is a few MB. */
export const MAX_SPEC_BYTES = 5 * 1024 * 1024;
/** Errors listed for a refused spec; the rest are counted. */
const MAX_LISTED = 20;

/** A scope a product's operation may name with x-keyport-scope: its own prefix, then an action. */
const SCOPE_ACTION = /^[a-z][a-z0-9_-]{0,31}$/;

/** One operation of a product's spec, as the proxy matches it. */
export interface SpecOperation {
  /** Upper-case, as requests carry it. */
  method: string;
  /** The spec's path template, `/shipments/{id}`. */
  template: string;
  /** The operation's id as the spec gives it, or one made from the method and path. */
  operationId: string;
  summary: string;
  scope: string;
  /** The JSON pointer of the operation in the spec (`/paths/~1shipments~1{id}/get`). */
  pointer: string;
}

export type SpecCheck = { ok: true; spec: Json; version: "3.0" | "3.1"; operations: SpecOperation[] } | { ok: false; errors: FieldError[] };

/** JSON first, then YAML (Bun's parser); the text's own error when neither reads it. */
export function parseSpecText(text: string): { ok: true; value: unknown } | { ok: false; message: string } {
  if (Buffer.byteLength(text) > MAX_SPEC_BYTES) return { ok: false, message: `is larger than ${MAX_SPEC_BYTES / 1024 / 1024} MB` };
  const trimmed = text.trimStart();
  if (trimmed.startsWith("{") || trimmed.startsWith("[")) {
    try {
      return { ok: true, value: JSON.parse(text) };
    } catch (err) {
      return { ok: false, message: `is not valid JSON: ${(err as Error).message}` };
    }
  }
  try {
    return { ok: true, value: Bun.YAML.parse(text) };
  } catch (err) {
    return { ok: false, message: `is neither JSON nor YAML: ${(err as Error).message}` };
  }
}

const escapePointer = (s: string) => s.replace(/~/g, "~0").replace(/\//g, "~1");
const unescapePointer = (s: string) => s.replace(/~1/g, "/").replace(/~0/g, "~");

/** Where a spec's path is served: `/shipments/{id}` of tracking at `/v1/tracking/shipments/{id}`, its root at `/v1/tracking`. */
const proxiedPath = (productId: string, template: string) => `/v1/${productId}${template === "/" ? "" : template}`;

/** An operation id Keyport keeps as given (it becomes part of /docs/<id> URLs); another is replaced by one made up. */
const VALID_OPERATION_ID = /^[A-Za-z0-9._-]{1,80}$/;

/** `getShipment`, or from the method and path: `get-shipments-id`. */
function operationIdOf(op: Json, method: string, template: string): string {
  if (typeof op.operationId === "string" && VALID_OPERATION_ID.test(op.operationId)) return op.operationId;
  const words = template.replace(/[{}]/g, "").split(/[^A-Za-z0-9]+/).filter(Boolean);
  return [method, ...words].join("-").slice(0, 80);
}

/** The scope an operation needs: its x-keyport-scope, else `<id>:read` for GET/HEAD and `<id>:write` otherwise. */
export function defaultScope(productId: string, method: string): string {
  return `${productId}:${method === "GET" || method === "HEAD" ? "read" : "write"}`;
}

/** Every `$ref` in a document that does not point inside it (the gateway has nothing to fetch them from). */
function externalRefs(node: unknown, path: string, out: string[]): void {
  if (out.length >= MAX_LISTED) return;
  if (Array.isArray(node)) node.forEach((v, i) => externalRefs(v, `${path}/${i}`, out));
  else if (node !== null && typeof node === "object") {
    for (const [k, v] of Object.entries(node)) {
      if (k === "$ref" && typeof v === "string" && !v.startsWith("#")) out.push(`${path}: $ref ${JSON.stringify(v.slice(0, 100))} points outside the spec; inline it`);
      else externalRefs(v, `${path}/${escapePointer(k)}`, out);
    }
  }
}

/**
 * One validator for the process: it compiles the OpenAPI schema of each version once (over a
 * second of CPU on a loaded machine), and every registry reload checks every product's spec
 * again. It keeps no state between documents but the last one (read by resolveRefs, unused here).
 */
let validator: Validator | undefined;
const openApiValidator = () => (validator ??= new Validator({ allErrors: true }));

interface SchemaError {
  keyword?: string;
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/**
 * The validator's errors as lines a person can act on: where, then what. With every error
 * collected, the OpenAPI schemas' alternatives also report how the value failed the branch it
 * was never meant for ("must have required property '$ref'" beside the real mistake) and
 * summaries ("must match exactly one schema in oneOf"): those are dropped when a real error
 * at or under the same place says more. A string is the validator's own sentence (a
 * reference that resolves nowhere).
 */
function schemaErrors(errors: unknown): string[] {
  if (typeof errors === "string") return [errors];
  const list = (Array.isArray(errors) ? errors : []) as SchemaError[];
  const summary = (e: SchemaError) => e.keyword === "oneOf" || e.keyword === "anyOf" || e.keyword === "if" || (e.keyword === "required" && e.params?.missingProperty === "$ref");
  const real = list.filter((e) => !summary(e));
  const kept = list.filter((e) => {
    if (!summary(e)) return true;
    const at = e.instancePath ?? "";
    return !real.some((r) => (r.instancePath ?? "") === at || (r.instancePath ?? "").startsWith(`${at}/`));
  });
  const lines = kept.map((e) => {
    const where = e.instancePath || "/";
    const name = e.params?.additionalProperty ?? e.params?.unevaluatedProperty;
    const allowed = Array.isArray(e.params?.allowedValues) ? `: ${e.params.allowedValues.map((v) => JSON.stringify(v)).join(", ")}` : "";
    return `${where} ${e.message ?? "is not valid"}${typeof name === "string" ? ` (${name})` : ""}${allowed}`;
  });
  return [...new Set(lines)];
}

/**
 * Checks a parsed document as a product's spec: an OpenAPI 3.0 or 3.1 document that the
 * validator accepts, with at least one operation, no reference outside itself, no two
 * operations on one method and path shape, and x-keyport-scope values of the product's own.
 * Answers every problem found (up to 20, then how many more), each as a `spec` field error.
 */
export async function checkSpec(raw: unknown, productId: string): Promise<SpecCheck> {
  const fail = (lines: string[]): SpecCheck => {
    const listed = lines.slice(0, MAX_LISTED).map((message) => ({ field: "spec", message }));
    if (lines.length > MAX_LISTED) listed.push({ field: "spec", message: `and ${lines.length - MAX_LISTED} more` });
    return { ok: false, errors: listed };
  };
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return fail(["is not an OpenAPI document (an object with `openapi`, `info` and `paths`)"]);
  const doc = raw as Json;
  const declared = typeof doc.openapi === "string" ? doc.openapi : typeof doc.swagger === "string" ? `swagger ${doc.swagger}` : undefined;
  const version = typeof doc.openapi === "string" && /^3\.0\.\d+$/.test(doc.openapi) ? "3.0" : typeof doc.openapi === "string" && /^3\.1\.\d+$/.test(doc.openapi) ? "3.1" : undefined;
  if (!version) return fail([`declares ${declared ? JSON.stringify(declared) : "no OpenAPI version"}; Keyport takes OpenAPI 3.0.x or 3.1.x`]);

  // Before the validator, which stops at the first reference it cannot resolve with a
  // sentence that does not say where it is.
  const outside: string[] = [];
  externalRefs(doc, "", outside);
  if (outside.length > 0) return fail(outside);

  // A string would be taken for a file name by the validator: only the parsed object goes in.
  // Every error, not the first: a refused spec lists all that is wrong with it at once.
  const result = await openApiValidator().validate(structuredClone(doc));
  if (!result.valid) return fail(schemaErrors(result.errors));

  const problems: string[] = [];
  const operations: SpecOperation[] = [];
  const shapes = new Map<string, string>();
  // The ids the spec gives are the operations' own; one made up must not take any of them.
  const given = new Set<string>();
  for (const item of Object.values((doc.paths ?? {}) as Record<string, Json>)) {
    for (const method of HTTP_METHODS) {
      const id = (item?.[method] as Json | undefined)?.operationId;
      if (typeof id === "string" && VALID_OPERATION_ID.test(id)) given.add(id);
    }
  }
  const ids = new Set<string>();
  for (const [template, item] of Object.entries((doc.paths ?? {}) as Record<string, Json>)) {
    if (!template.startsWith("/")) {
      problems.push(`/paths/${escapePointer(template)}: a path must start with "/"`);
      continue;
    }
    for (const method of HTTP_METHODS) {
      const op = item?.[method] as Json | undefined;
      if (!op || typeof op !== "object") continue;
      const METHOD = method.toUpperCase();
      const pointer = `/paths/${escapePointer(template)}/${method}`;
      const shape = `${METHOD} ${template.replace(/\{[^}]*\}/g, "{}")}`;
      const twin = shapes.get(shape);
      if (twin) problems.push(`${pointer}: matches the same requests as ${METHOD} ${twin}`);
      shapes.set(shape, template);
      let scope = defaultScope(productId, METHOD);
      const own = op["x-keyport-scope"];
      if (own !== undefined) {
        const action = typeof own === "string" && own.startsWith(`${productId}:`) ? own.slice(productId.length + 1) : undefined;
        if (action === undefined || !SCOPE_ACTION.test(action)) {
          problems.push(`${pointer}/x-keyport-scope must be "${productId}:" then 1-32 lowercase letters, digits, "_" or "-"`);
        } else scope = own as string;
      }
      let operationId = operationIdOf(op, method, template);
      const givenHere = typeof op.operationId === "string" && op.operationId === operationId;
      if (givenHere && ids.has(operationId)) problems.push(`${pointer}/operationId ${JSON.stringify(operationId)} is used twice`);
      else if (!givenHere && (ids.has(operationId) || given.has(operationId))) {
        const base = operationId.slice(0, 76);
        for (let n = 2; ids.has(operationId) || given.has(operationId); n++) operationId = `${base}-${n}`;
      }
      ids.add(operationId);
      operations.push({ method: METHOD, template, operationId, summary: typeof op.summary === "string" ? op.summary : "", scope, pointer });
    }
  }
  if (operations.length === 0 && problems.length === 0) problems.push("/paths has no operation: a product needs at least one");
  if (problems.length > 0) return fail(problems);
  return { ok: true, spec: doc, version, operations };
}

/** A compiled path template: its regex and how specific it is (literal characters), for ordering. */
export interface PathMatcher {
  regex: RegExp;
  params: string[];
  literal: number;
}

export function compileTemplate(template: string): PathMatcher {
  const params: string[] = [];
  let literal = 0;
  const source = template
    .split(/(\{[^}]*\})/)
    .map((part) => {
      if (part.startsWith("{") && part.endsWith("}")) {
        params.push(part.slice(1, -1));
        return "([^/]+)";
      }
      literal += part.length;
      return part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    })
    .join("");
  return { regex: new RegExp(`^${source}$`), params, literal };
}

/** The values of the schema keywords OpenAPI 3.0 spells differently from JSON Schema 2020-12, rewritten. */
function upgradeSchema30(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(upgradeSchema30);
  if (node === null || typeof node !== "object") return node;
  const out: Json = {};
  for (const [k, v] of Object.entries(node)) out[k] = upgradeSchema30(v);
  for (const [flag, bound] of [
    ["exclusiveMinimum", "minimum"],
    ["exclusiveMaximum", "maximum"],
  ] as const) {
    if (typeof out[flag] === "boolean") {
      if (out[flag] === true && typeof out[bound] === "number") {
        out[flag] = out[bound];
        delete out[bound];
      } else delete out[flag];
    }
  }
  if (out.nullable === true) {
    delete out.nullable;
    if (typeof out.type === "string") out.type = [out.type, "null"];
    // Without a type (`allOf: [{$ref}]`), null must escape every other keyword: the
    // schema's keywords move into one branch, `{type: "null"}` is the other.
    else if (out.enum === undefined) return { anyOf: [out, { type: "null" }] };
  } else if (out.nullable === false) delete out.nullable;
  return out;
}

/**
 * A reference into one of the spec's paths (`#/paths/~1items~1%7Bid%7D/get/responses/200`, a
 * JSON pointer in a URI fragment, so percent-encoded) pointed at that path under /v1/<id>.
 */
function movedPathRef(productId: string, ref: string): string | undefined {
  const m = /^#\/paths\/([^/]+)(.*)$/.exec(ref);
  if (!m) return undefined;
  let template: string;
  try {
    template = unescapePointer(decodeURIComponent(m[1]!));
  } catch {
    return undefined;
  }
  return `#/paths/${encodeURIComponent(escapePointer(proxiedPath(productId, template)))}${m[2]}`;
}

/**
 * A product's spec as part of Keyport's own OpenAPI 3.1 document: its paths under
 * `/v1/<id>`, its components renamed `<id>.<name>` (and every reference to them), its
 * operation ids `<id>.<operationId>`, 3.0 schema keywords upgraded to 2020-12, and each
 * operation given the gateway's credential, scope and tag. The gateway's own answers are
 * added by the caller (src/products/document.ts), which knows the problem shapes.
 */
export function namespacedSpec(productId: string, spec: Json, version: "3.0" | "3.1", operations: SpecOperation[]): { paths: Record<string, Json>; components: Record<string, Record<string, unknown>> } {
  const prefixRef = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(prefixRef);
    if (node === null || typeof node !== "object") return node;
    const out: Json = {};
    for (const [k, v] of Object.entries(node)) {
      if (k === "$ref" && typeof v === "string") {
        const m = /^#\/components\/([^/]+)\/(.+)$/.exec(v);
        out[k] = m ? `#/components/${m[1]}/${productId}.${m[2]}` : (movedPathRef(productId, v) ?? v);
      } else out[k] = prefixRef(v);
    }
    return out;
  };
  const upgraded = (version === "3.0" ? upgradeSchema30(spec) : structuredClone(spec)) as Json;
  const renamed = prefixRef(upgraded) as Json;
  const byPointer = new Map(operations.map((o) => [o.pointer, o]));
  const paths: Record<string, Json> = {};
  for (const [template, item] of Object.entries((renamed.paths ?? {}) as Record<string, Json>)) {
    const out: Json = {};
    for (const [k, v] of Object.entries(item)) {
      const o = byPointer.get(`/paths/${escapePointer(template)}/${k}`);
      if (!o) {
        if (k === "parameters" || k === "summary" || k === "description") out[k] = v;
        continue;
      }
      const { security: _s, servers: _v, callbacks: _c, tags: _t, ...op } = v as Json;
      out[k] = { ...op, operationId: `${productId}.${o.operationId}`, tags: [productId], security: [{ bearer: [o.scope] }, { apiKey: [o.scope] }], "x-keyport-scope": o.scope };
    }
    paths[proxiedPath(productId, template)] = out;
  }
  const components: Record<string, Record<string, unknown>> = {};
  for (const [kind, entries] of Object.entries((renamed.components ?? {}) as Record<string, Json>)) {
    if (kind === "securitySchemes" || entries === null || typeof entries !== "object") continue;
    components[kind] = Object.fromEntries(Object.entries(entries).map(([name, v]) => [`${productId}.${name}`, v]));
  }
  return { paths, components };
}
