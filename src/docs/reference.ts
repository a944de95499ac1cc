import type { CodeSample } from "../plugins/openapi.ts";

/**
 * The API reference as pages read it, made from the OpenAPI document (src/docs/openapi.ts):
 * products (tags) and their operations, each with its parameters, body and answers as
 * tables. A pure function of the document, so the reference says what /openapi.json says
 * and the tests validate the answers against.
 */

type Json = Record<string, unknown>;

/** A field of a schema as a table row: `items[].value`, its type, whether required, its limits. */
export interface SchemaRow {
  name: string;
  type: string;
  required: boolean;
  constraints: string;
  description: string;
}

export interface ParamView {
  name: string;
  in: "path" | "query";
  type: string;
  required: boolean;
  constraints: string;
  description: string;
  example: string | undefined;
  enum: string[] | undefined;
}

export interface AnswerView {
  status: string;
  description: string;
  contentType: string;
  rows: SchemaRow[];
  example: unknown;
  /** For a refusal: the problem codes it can carry. */
  codes: string[];
}

export interface OperationView {
  id: string;
  method: string;
  path: string;
  tag: string;
  summary: string;
  description: string;
  /** The scope the key needs. */
  scope: string;
  /** A data-API operation (/v1): through the gateway, with its rate-limit headers. */
  gateway: boolean;
  /** Changes state (anything but GET). */
  changes: boolean;
  params: ParamView[];
  body: { required: boolean; rows: SchemaRow[]; example: unknown } | undefined;
  answers: AnswerView[];
  /** Every problem code the operation can answer, with its status. */
  errorCodes: { code: string; status: number }[];
  /** Hand-written samples (`x-codeSamples`). */
  codeSamples: CodeSample[];
}

export interface TagView {
  name: string;
  description: string;
  operations: OperationView[];
}

export interface Reference {
  title: string;
  description: string;
  version: string;
  tags: TagView[];
  operations: Map<string, OperationView>;
}

const METHODS = ["get", "post", "put", "patch", "delete"] as const;

function resolve(doc: Json, schema: unknown): Json {
  let s = (schema ?? {}) as Json;
  for (let hops = 0; typeof s.$ref === "string" && hops < 10; hops++) {
    const path = (s.$ref as string).replace(/^#\//, "").split("/");
    let target: unknown = doc;
    for (const part of path) target = (target as Json | undefined)?.[part];
    s = (target ?? {}) as Json;
  }
  if (Array.isArray(s.allOf)) {
    // Merged for reading: properties and required lists of every part.
    const parts = (s.allOf as unknown[]).map((p) => resolve(doc, p));
    const merged: Json = { ...s, allOf: undefined };
    for (const p of parts) {
      for (const [k, v] of Object.entries(p)) {
        if (k === "properties") merged.properties = { ...((merged.properties as Json) ?? {}), ...(v as Json) };
        else if (k === "required") merged.required = [...((merged.required as string[]) ?? []), ...(v as string[])];
        else if (merged[k] === undefined) merged[k] = v;
      }
    }
    return merged;
  }
  return s;
}

/** A schema's type in words: `string`, `integer | null`, `"live" | "test"`, `array of string`. */
export function typeOf(doc: Json, schema: unknown, depth = 0): string {
  const s = resolve(doc, schema);
  if (Array.isArray(s.enum)) return (s.enum as unknown[]).map((v) => JSON.stringify(v)).join(" | ");
  if (s.const !== undefined) return JSON.stringify(s.const);
  const union = (s.anyOf ?? s.oneOf) as unknown[] | undefined;
  if (Array.isArray(union) && depth < 4) return [...new Set(union.map((u) => typeOf(doc, u, depth + 1)))].join(" | ");
  const types = Array.isArray(s.type) ? (s.type as string[]) : typeof s.type === "string" ? [s.type] : [];
  const words = types.map((t) => (t === "array" && depth < 4 ? `array of ${typeOf(doc, s.items, depth + 1)}` : t));
  if (words.length === 0) return s.properties ? "object" : "any";
  return words.join(" | ");
}

/** A schema's limits in words: `1-100 characters`, `at most 100 items`, `≥ 1`, `default 60`, `format date-time`. */
export function constraintsOf(doc: Json, schema: unknown): string {
  const s = resolve(doc, schema);
  const out: string[] = [];
  const range = (min: unknown, max: unknown, unit: string) => {
    if (typeof min === "number" && typeof max === "number") out.push(`${min}-${max}${unit}`);
    else if (typeof min === "number") out.push(`at least ${min}${unit}`);
    else if (typeof max === "number") out.push(`at most ${max}${unit}`);
  };
  range(s.minLength, s.maxLength, " characters");
  range(s.minItems, s.maxItems, " items");
  range(s.minimum, s.maximum, "");
  if (typeof s.exclusiveMinimum === "number") out.push(`> ${s.exclusiveMinimum}`);
  if (typeof s.exclusiveMaximum === "number") out.push(`< ${s.exclusiveMaximum}`);
  if (typeof s.pattern === "string") out.push(`pattern ${s.pattern}`);
  if (typeof s.format === "string") out.push(`format ${s.format}`);
  if (s.default !== undefined) out.push(`default ${JSON.stringify(s.default)}`);
  return out.join("; ");
}

/** The fields of an object schema as rows, nested ones dotted (`items[].type`), to a bounded depth. */
export function schemaRows(doc: Json, schema: unknown, prefix = "", depth = 0): SchemaRow[] {
  const s = resolve(doc, schema);
  const rows: SchemaRow[] = [];
  if (depth > 5) return rows;
  if (typeOf(doc, s).startsWith("array") && !prefix) {
    // A top-level array: its items' fields.
    return schemaRows(doc, s.items, "[]", depth + 1);
  }
  const props = (s.properties ?? {}) as Json;
  const required = new Set((s.required as string[] | undefined) ?? []);
  for (const [name, raw] of Object.entries(props)) {
    const p = resolve(doc, raw);
    const full = prefix ? `${prefix}.${name}` : name;
    rows.push({ name: full, type: typeOf(doc, p), required: required.has(name), constraints: constraintsOf(doc, p), description: typeof p.description === "string" ? p.description : "" });
    const items = resolve(doc, p.items);
    if (p.properties) rows.push(...schemaRows(doc, p, full, depth + 1));
    else if (items.properties) rows.push(...schemaRows(doc, items, `${full}[]`, depth + 1));
  }
  return rows;
}

function operationView(doc: Json, method: string, path: string, op: Json): OperationView {
  const params = ((op.parameters ?? []) as Json[]).map((p): ParamView => {
    const schema = resolve(doc, p.schema);
    const example = p.example ?? schema.example ?? (Array.isArray(schema.examples) ? schema.examples[0] : undefined);
    return {
      name: String(p.name),
      in: p.in === "path" ? "path" : "query",
      type: typeOf(doc, schema),
      required: p.required === true,
      constraints: constraintsOf(doc, schema),
      description: typeof p.description === "string" ? p.description : typeof schema.description === "string" ? schema.description : "",
      example: example === undefined ? undefined : String(example),
      enum: Array.isArray(schema.enum) ? (schema.enum as unknown[]).map(String) : undefined,
    };
  });
  const requestBody = op.requestBody as Json | undefined;
  const bodyContent = (requestBody?.content as Json | undefined)?.["application/json"] as Json | undefined;
  const answers: AnswerView[] = [];
  const errorCodes: { code: string; status: number }[] = [];
  for (const [status, raw] of Object.entries((op.responses ?? {}) as Json)) {
    const r = raw as Json;
    const [contentType, media] = Object.entries((r.content ?? {}) as Json)[0] ?? ["", {}];
    const m = media as Json;
    const schema = resolve(doc, m.schema);
    const codes: string[] = [];
    for (const part of (Array.isArray((m.schema as Json | undefined)?.allOf) ? ((m.schema as Json).allOf as Json[]) : [])) {
      const code = ((part.properties as Json | undefined)?.code as Json | undefined)?.enum;
      if (Array.isArray(code)) codes.push(...code.map(String));
    }
    for (const code of codes) errorCodes.push({ code, status: Number(status) });
    answers.push({ status, description: typeof r.description === "string" ? r.description : "", contentType, rows: schemaRows(doc, schema), example: m.example, codes });
  }
  const security = ((op.security ?? []) as Record<string, string[]>[])[0] ?? {};
  return {
    id: String(op.operationId),
    method: method.toUpperCase(),
    path,
    tag: ((op.tags ?? []) as string[])[0] ?? "other",
    summary: typeof op.summary === "string" ? op.summary : "",
    description: typeof op.description === "string" ? op.description : "",
    scope: Object.values(security)[0]?.[0] ?? "",
    gateway: path.startsWith("/v1/"),
    changes: method !== "get",
    params,
    body: bodyContent ? { required: requestBody?.required === true, rows: schemaRows(doc, bodyContent.schema), example: bodyContent.example } : undefined,
    answers,
    errorCodes,
    codeSamples: Array.isArray(op["x-codeSamples"]) ? (op["x-codeSamples"] as CodeSample[]) : [],
  };
}

/** The reference of an OpenAPI 3.1 document: its tags in order, each with its operations in path order. */
export function buildReference(doc: Json): Reference {
  const operations = new Map<string, OperationView>();
  for (const [path, item] of Object.entries((doc.paths ?? {}) as Json)) {
    for (const method of METHODS) {
      const op = (item as Json)[method] as Json | undefined;
      if (!op?.operationId) continue;
      const view = operationView(doc, method, path, op);
      operations.set(view.id, view);
    }
  }
  const declared = ((doc.tags ?? []) as { name: string; description?: string }[]).map((t) => ({ name: t.name, description: t.description ?? "" }));
  const names = new Set(declared.map((t) => t.name));
  for (const op of operations.values()) if (!names.has(op.tag)) (names.add(op.tag), declared.push({ name: op.tag, description: "" }));
  const tags = declared
    .map((t) => ({ ...t, operations: [...operations.values()].filter((o) => o.tag === t.name) }))
    .filter((t) => t.operations.length > 0);
  const info = (doc.info ?? {}) as Json;
  return { title: String(info.title ?? "API"), description: String(info.description ?? ""), version: String(info.version ?? ""), tags, operations };
}

/**
 * The operations matching a search: every word of `q` (case-insensitive) must occur in the
 * operation id, summary, path or tag. An empty search matches everything.
 */
export function searchReference(ref: Reference, q: string): TagView[] {
  const words = q.toLowerCase().split(/\s+/).filter(Boolean).slice(0, 10);
  if (words.length === 0) return ref.tags;
  const hit = (o: OperationView) => {
    const text = `${o.id} ${o.summary} ${o.method} ${o.path} ${o.tag}`.toLowerCase();
    return words.every((w) => text.includes(w));
  };
  return ref.tags.map((t) => ({ ...t, operations: t.operations.filter(hit) })).filter((t) => t.operations.length > 0);
}
