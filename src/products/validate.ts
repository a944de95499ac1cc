import Ajv2020, { type ErrorObject, type ValidateFunction } from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import type { FieldError } from "../errors.ts";

type Json = Record<string, unknown>;

/** What a request brings for its operation's checks: path parameters, the query, the parsed JSON body. */
export interface RequestParts {
  path: Record<string, string>;
  query: URLSearchParams;
  /** undefined: no body was sent. */
  body: unknown;
  /** The body is JSON (application/json or +json); a body of another type is not checked. */
  json: boolean;
}

export type RequestCheck = (parts: RequestParts) => FieldError[];

interface Param {
  name: string;
  in: "path" | "query";
  required: boolean;
  array: boolean;
  check: ValidateFunction | undefined;
}

const DOCUMENT = "keyport:product";

/** ajv's error as a field error: `body.items.0.value must be string`. */
function fieldError(prefix: string, e: ErrorObject): FieldError {
  const path = e.instancePath.split("/").slice(1).map((s) => s.replace(/~1/g, "/").replace(/~0/g, "~"));
  const missing = e.keyword === "required" && typeof e.params.missingProperty === "string" ? [e.params.missingProperty] : [];
  const field = [prefix, ...path, ...missing].filter(Boolean).join(".");
  const allowed = e.keyword === "enum" && Array.isArray(e.params.allowedValues) ? `: ${e.params.allowedValues.map((v: unknown) => JSON.stringify(v)).join(", ")}` : "";
  return { field: field || prefix, message: e.keyword === "required" ? "is required" : `${e.message ?? "is not valid"}${allowed}` };
}

/**
 * The request checks of a product's operations, compiled once per spec version from its
 * namespaced 3.1 form (JSON Schema 2020-12): path and query parameters (coerced from their
 * text by their schema's type) and a JSON body. Answers a function per operation pointer.
 */
export function compileRequestChecks(document: Json, operations: { pointer: string; template: string; method: string }[]): Map<string, RequestCheck> {
  // Parameters arrive as text and are coerced by their schema's type; a JSON body is checked
  // as sent, because it is forwarded as sent: `"5"` where the spec says integer is refused.
  const forParams = new Ajv2020({ strict: false, allErrors: true, coerceTypes: "array", validateFormats: true });
  const forBodies = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
  for (const ajv of [forParams, forBodies]) {
    addFormats(ajv);
    ajv.addSchema({ ...document, $id: DOCUMENT }, undefined, undefined, false);
  }
  const checks = new Map<string, RequestCheck>();
  for (const o of operations) {
    const [, , template, method] = o.pointer.split("/") as [string, string, string, string];
    const item = ((document.paths as Json)[unescape(template)] ?? {}) as Json;
    const op = (item[method] ?? {}) as Json;
    const params: Param[] = [];
    const lists = [["parameters", item.parameters], ["parameters", op.parameters]] as const;
    for (const [, list] of lists) {
      if (!Array.isArray(list)) continue;
      for (const p of list as Json[]) {
        const resolved = resolve(document, p);
        if (resolved.in !== "path" && resolved.in !== "query") continue;
        const schema = resolved.schema as Json | undefined;
        const existing = params.findIndex((x) => x.name === resolved.name && x.in === resolved.in);
        const param: Param = {
          name: String(resolved.name),
          in: resolved.in,
          required: resolved.required === true || resolved.in === "path",
          array: schema?.type === "array",
          // Coerced in place: a value is checked as the wrapper's property.
          check: schema ? forParams.compile({ type: "object", properties: { v: inDocument(schema) } }) : undefined,
        };
        if (existing >= 0) params[existing] = param;
        else params.push(param);
      }
    }
    const body = resolve(document, (op.requestBody ?? null) as Json | null);
    const content = (body?.content ?? {}) as Record<string, Json>;
    const jsonType = Object.keys(content).find((t) => /^application\/([\w.+-]*\+)?json$/.test(t));
    const bodySchema = jsonType ? (content[jsonType]!.schema as Json | undefined) : undefined;
    const bodyCheck = bodySchema ? forBodies.compile(inDocument(bodySchema) as Json) : undefined;
    const bodyRequired = body?.required === true;
    checks.set(o.pointer, (parts) => {
      const errors: FieldError[] = [];
      for (const p of params) {
        const values = p.in === "path" ? (p.name in parts.path ? [parts.path[p.name]!] : []) : parts.query.getAll(p.name);
        if (values.length === 0) {
          if (p.required) errors.push({ field: `${p.in}.${p.name}`, message: "is required" });
          continue;
        }
        if (!p.check) continue;
        const holder = { v: p.array ? values : values[0] };
        if (!p.check(holder)) for (const e of telling(p.check.errors)) errors.push(fieldError(`${p.in}.${p.name}`, { ...e, instancePath: e.instancePath.replace(/^\/v/, "") }));
      }
      if (parts.body === undefined) {
        if (bodyRequired) errors.push({ field: "body", message: "is required" });
      } else if (bodyCheck && parts.json && !bodyCheck(parts.body)) {
        for (const e of telling(bodyCheck.errors)) errors.push(fieldError("body", e));
      }
      return errors;
    });
  }
  return checks;
}

/**
 * The errors that say what to fix. Every error collected, a failed `anyOf` also reports the
 * branches the value was never meant for: its summary, and the `{type: "null"}` branch that
 * a 3.0 `nullable` became (src/products/spec.ts). Those go when an error at or under the same
 * place remains.
 */
function telling(errors: ErrorObject[] | null | undefined): ErrorObject[] {
  const list = errors ?? [];
  const noise = (e: ErrorObject) => e.keyword === "anyOf" || e.keyword === "oneOf" || e.keyword === "if" || (e.keyword === "type" && e.params.type === "null");
  const said = list.filter((e) => !noise(e));
  return list.filter((e) => !noise(e) || !said.some((r) => r.instancePath === e.instancePath || r.instancePath.startsWith(`${e.instancePath}/`)));
}

function unescape(s: string): string {
  return s.replace(/~1/g, "/").replace(/~0/g, "~");
}

/**
 * A schema taken out of the document, its local references (`#/components/schemas/…`)
 * pointed back into it: compiled on its own, `#` would mean the schema itself.
 */
function inDocument(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(inDocument);
  if (node === null || typeof node !== "object") return node;
  const out: Json = {};
  for (const [k, v] of Object.entries(node)) out[k] = (k === "$ref" || k === "$dynamicRef") && typeof v === "string" && v.startsWith("#") ? `${DOCUMENT}${v}` : inDocument(v);
  return out;
}

/** A parameter or request body given as a `$ref` into the document's components. */
function resolve(document: Json, node: Json | null): Json {
  let cur: Json | null = node;
  for (let hops = 0; cur && typeof cur.$ref === "string" && hops < 10; hops++) {
    const ref = cur.$ref as string;
    if (!ref.startsWith("#/")) return {};
    cur = ref
      .slice(2)
      .split("/")
      .reduce<unknown>((n, k) => (n as Json | undefined)?.[unescape(k)], document) as Json | null;
  }
  return cur ?? {};
}
