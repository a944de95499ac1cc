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
  /** Cookie parameters are listed as headers would be, but try-it does not send them (the gateway strips the consumer's cookies). */
  in: "path" | "query" | "header" | "cookie";
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
  /** Every media type the answer may have, comma-separated (a product's own answer and the gateway's problem may share a status). */
  contentType: string;
  /** The fields of the answer's body, unless it is only the gateway's problem (whose codes say more). */
  rows: SchemaRow[];
  /** Whether a body other than the gateway's problem is described: its table is shown. */
  described: boolean;
  example: unknown;
  /** For a refusal: the problem codes it can carry. */
  codes: string[];
}

export interface OperationView {
  id: string;
  method: string;
  path: string;
  tag: string;
  /** The tag's name for people: its `x-displayName` (a registered product's name), else the tag itself. */
  tagTitle: string;
  /** `beta` or `deprecated`: the product's status (its tag's `x-status`), or `deprecated` when the operation says so. */
  status: string | undefined;
  /** An operation of a registered product: the gateway passes it on to the product's server (`x-keyport-scope`). */
  upstream: boolean;
  summary: string;
  description: string;
  /** The scope the key needs. */
  scope: string;
  /** A data-API operation (/v1): through the gateway, with its rate-limit headers. */
  gateway: boolean;
  /** Changes state (anything but GET, HEAD and OPTIONS). */
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
  /** Its `x-displayName` (a registered product's name), else the name. */
  title: string;
  /** A registered product's `beta` or `deprecated` (`x-status`); undefined when active. */
  status: string | undefined;
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

/** Every method an OpenAPI path item may hold: a registered product's spec may use any of them. */
const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"] as const;
const SAFE_METHODS = new Set(["get", "head", "options"]);

/** The value a local reference points to (`#/components/schemas/tracking.Shipment`), per RFC 6901; undefined when it points nowhere. */
function pointTo(doc: Json, ref: string): unknown {
  if (!ref.startsWith("#")) return undefined;
  let target: unknown = doc;
  for (const raw of ref.slice(1).split("/").slice(1)) {
    let part = raw;
    try {
      part = decodeURIComponent(raw);
    } catch {
      // Not percent-encoded: read as written.
    }
    part = part.replace(/~1/g, "/").replace(/~0/g, "~");
    if (target === null || typeof target !== "object" || !Object.hasOwn(target, part)) return undefined;
    target = (target as Json)[part];
  }
  return target;
}

/**
 * An object with its `$ref` followed (a schema, or a parameter, body or answer of a product's
 * components), to a bounded number of hops so a cycle ends. The reference's siblings (3.1
 * allows a `description` beside it) win over the target's.
 */
function deref(doc: Json, node: unknown): Json {
  let s = (node !== null && typeof node === "object" ? node : {}) as Json;
  for (let hops = 0; typeof s.$ref === "string" && hops < 10; hops++) {
    const { $ref, ...siblings } = s;
    const target = pointTo(doc, $ref as string);
    s = { ...(target !== null && typeof target === "object" ? (target as Json) : {}), ...siblings };
  }
  return s;
}

function resolve(doc: Json, schema: unknown, depth = 0): Json {
  const s = deref(doc, schema);
  if (Array.isArray(s.allOf) && depth < 6) {
    // Merged for reading: properties and required lists of every part.
    const parts = (s.allOf as unknown[]).map((p) => resolve(doc, p, depth + 1));
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

/** The object a field holds when its schema is `X | null` (an upgraded 3.0 `nullable` reference): X, to list its fields. */
function objectPart(doc: Json, s: Json): Json {
  if (s.properties) return s;
  const union = (s.anyOf ?? s.oneOf) as unknown[] | undefined;
  if (!Array.isArray(union)) return s;
  const parts = union.map((u) => resolve(doc, u)).filter((u) => u.type !== "null");
  return parts.length === 1 ? parts[0]! : s;
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
  const s = objectPart(doc, resolve(doc, schema));
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
    const inner = objectPart(doc, p);
    const items = objectPart(doc, resolve(doc, inner.items));
    if (inner.properties) rows.push(...schemaRows(doc, inner, full, depth + 1));
    else if (items.properties) rows.push(...schemaRows(doc, items, `${full}[]`, depth + 1));
  }
  return rows;
}

const PROBLEM_TYPE = "application/problem+json";
const isJson = (type: string) => /^application\/([\w.+-]*\+)?json\s*(;|$)/i.test(type);

/** A media type's example: its `example`, else the first of its `examples` (each `{ value }`, maybe a reference). */
function exampleOf(doc: Json, media: Json): unknown {
  if (media.example !== undefined) return media.example;
  const first = Object.values((media.examples ?? {}) as Json)[0];
  return first === undefined ? undefined : deref(doc, first).value;
}

/** The problem codes a gateway answer's schema names: `allOf: [Problem, { properties: { code: { enum } } }]`. */
function problemCodes(doc: Json, schema: unknown): string[] {
  const own = deref(doc, schema);
  const codes: string[] = [];
  for (const part of Array.isArray(own.allOf) ? (own.allOf as unknown[]) : []) {
    const code = (((part as Json).properties as Json | undefined)?.code as Json | undefined)?.enum;
    if (Array.isArray(code)) codes.push(...code.map(String));
  }
  return codes;
}

function answerView(doc: Json, status: string, raw: unknown): AnswerView {
  const r = deref(doc, raw);
  const content = Object.entries((r.content ?? {}) as Json).map(([type, m]) => [type, deref(doc, m)] as const);
  const codes: string[] = [];
  let body: readonly [string, Json] | undefined;
  for (const entry of content) {
    const found = entry[0] === PROBLEM_TYPE ? problemCodes(doc, entry[1].schema) : [];
    codes.push(...found);
    // The body described is the product's own (or the only one); the gateway's problem is told by its codes.
    if (found.length === 0) body ??= entry;
  }
  const [, media] = body ?? content[0] ?? ["", {}];
  return {
    status,
    description: typeof r.description === "string" ? r.description : "",
    contentType: content.map(([type]) => type).join(", "),
    rows: body ? schemaRows(doc, media.schema) : [],
    described: body !== undefined,
    example: exampleOf(doc, media),
    codes: [...new Set(codes)],
  };
}

function paramView(doc: Json, raw: unknown): ParamView | undefined {
  const p = deref(doc, raw);
  if (typeof p.name !== "string" || !["path", "query", "header", "cookie"].includes(String(p.in))) return undefined;
  const schema = resolve(doc, p.schema);
  const example = p.example ?? (p.examples ? Object.values(p.examples as Json).map((e) => deref(doc, e).value)[0] : undefined) ?? schema.example ?? (Array.isArray(schema.examples) ? schema.examples[0] : undefined);
  return {
    name: p.name,
    in: p.in as ParamView["in"],
    type: typeOf(doc, schema),
    required: p.required === true || p.in === "path",
    constraints: constraintsOf(doc, schema),
    description: typeof p.description === "string" ? p.description : typeof schema.description === "string" ? schema.description : "",
    example: example === undefined || example === null ? undefined : typeof example === "object" ? JSON.stringify(example) : String(example),
    enum: Array.isArray(schema.enum) ? (schema.enum as unknown[]).map(String) : undefined,
  };
}

/** The operation's parameters: the path item's, replaced by the operation's own of the same name and place (OpenAPI 3.1 §4.8.9.1). */
function paramsOf(doc: Json, item: Json, op: Json): ParamView[] {
  const byPlace = new Map<string, ParamView>();
  for (const raw of [...((item.parameters ?? []) as unknown[]), ...((op.parameters ?? []) as unknown[])]) {
    const view = paramView(doc, raw);
    if (view) byPlace.set(`${view.in}\0${view.name}`, view);
  }
  return [...byPlace.values()];
}

interface TagInfo {
  title: string;
  status: string | undefined;
}

function operationView(doc: Json, method: string, path: string, item: Json, op: Json, tags: Map<string, TagInfo>): OperationView {
  const requestBody = deref(doc, op.requestBody);
  const bodyEntry = Object.entries((requestBody.content ?? {}) as Json).find(([type]) => isJson(type));
  const bodyContent = bodyEntry ? deref(doc, bodyEntry[1]) : undefined;
  const answers: AnswerView[] = [];
  const errorCodes: { code: string; status: number }[] = [];
  for (const [status, raw] of Object.entries((op.responses ?? {}) as Json)) {
    const answer = answerView(doc, status, raw);
    for (const code of answer.codes) errorCodes.push({ code, status: Number(status) });
    answers.push(answer);
  }
  const security = ((op.security ?? []) as Record<string, string[]>[])[0] ?? {};
  const tag = ((op.tags ?? []) as string[])[0] ?? "other";
  const info = tags.get(tag);
  return {
    id: String(op.operationId),
    method: method.toUpperCase(),
    path,
    tag,
    tagTitle: info?.title ?? tag,
    status: op.deprecated === true ? "deprecated" : info?.status,
    upstream: typeof op["x-keyport-scope"] === "string",
    summary: typeof op.summary === "string" ? op.summary : "",
    description: typeof op.description === "string" ? op.description : "",
    scope: Object.values(security)[0]?.[0] ?? "",
    gateway: path.startsWith("/v1/"),
    changes: !SAFE_METHODS.has(method),
    params: paramsOf(doc, item, op),
    body: bodyContent ? { required: requestBody.required === true, rows: schemaRows(doc, bodyContent.schema), example: exampleOf(doc, bodyContent) ?? resolve(doc, bodyContent.schema).example } : undefined,
    answers,
    errorCodes,
    codeSamples: Array.isArray(op["x-codeSamples"]) ? (op["x-codeSamples"] as CodeSample[]) : [],
  };
}

/** A tag's status worth a badge: a registered product's `beta` or `deprecated` (`active` needs none). */
const tagStatus = (t: Json) => (typeof t["x-status"] === "string" && t["x-status"] !== "active" ? t["x-status"] : undefined);

/** The reference of an OpenAPI 3.1 document: its tags in order, each with its operations in path order. */
export function buildReference(doc: Json): Reference {
  const declared = ((doc.tags ?? []) as Json[])
    .filter((t) => typeof t?.name === "string")
    .map((t) => ({ name: t.name as string, title: typeof t["x-displayName"] === "string" && t["x-displayName"] ? t["x-displayName"] : (t.name as string), status: tagStatus(t), description: typeof t.description === "string" ? t.description : "" }));
  const tags = new Map<string, TagInfo>(declared.map((t) => [t.name, t]));
  const operations = new Map<string, OperationView>();
  for (const [path, item] of Object.entries((doc.paths ?? {}) as Json)) {
    for (const method of METHODS) {
      const op = (item as Json)[method] as Json | undefined;
      if (!op?.operationId) continue;
      const view = operationView(doc, method, path, item as Json, op, tags);
      operations.set(view.id, view);
    }
  }
  for (const op of operations.values()) if (!tags.has(op.tag)) (tags.set(op.tag, { title: op.tag, status: undefined }), declared.push({ name: op.tag, title: op.tag, status: undefined, description: "" }));
  const list = declared
    .map((t) => ({ ...t, operations: [...operations.values()].filter((o) => o.tag === t.name) }))
    .filter((t) => t.operations.length > 0);
  const info = (doc.info ?? {}) as Json;
  return { title: String(info.title ?? "API"), description: String(info.description ?? ""), version: String(info.version ?? ""), tags: list, operations };
}

/**
 * The operations matching a search: every word of `q` (case-insensitive) must occur in the
 * operation id, summary, method, path, or its tag's name or title (a registered product's
 * name). An empty search matches everything.
 */
export function searchReference(ref: Reference, q: string): TagView[] {
  const words = q.toLowerCase().split(/\s+/).filter(Boolean).slice(0, 10);
  if (words.length === 0) return ref.tags;
  const hit = (o: OperationView) => {
    const text = `${o.id} ${o.summary} ${o.method} ${o.path} ${o.tag} ${o.tagTitle}`.toLowerCase();
    return words.every((w) => text.includes(w));
  };
  return ref.tags.map((t) => ({ ...t, operations: t.operations.filter(hit) })).filter((t) => t.operations.length > 0);
}
