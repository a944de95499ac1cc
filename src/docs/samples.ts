import type { CodeSample } from "../plugins/openapi.ts";
import type { OperationView } from "./reference.ts";

/** A request to show as code: an absolute URL, its header parameters, and a JSON body when the operation takes one. */
export interface SampleRequest {
  method: string;
  url: string;
  body: unknown;
  headers?: Record<string, string>;
}

/**
 * The key in a sample: a placeholder read from the environment (`$KEYPORT_KEY`), or a key
 * written out. The reference writes out the masked form of the user's sandbox key
 * (`kp_test_AbCd…wxyz`); the copy button swaps in the whole key (static/app.js).
 */
export type SampleKey = { env: "KEYPORT_KEY" } | { literal: string };

export const PLACEHOLDER_KEY: SampleKey = { env: "KEYPORT_KEY" };

export const SAMPLE_LANGS = [
  { lang: "curl", label: "curl" },
  { lang: "javascript", label: "JavaScript (fetch)" },
  { lang: "python", label: "Python (requests)" },
] as const;

/** A shell word in single quotes. */
const shellQuote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** A JSON value as a Python literal (True, False, None; strings as JSON writes them, which Python reads the same). */
function pyLiteral(v: unknown, indent = ""): string {
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "number") return String(v);
  if (typeof v === "string") return JSON.stringify(v);
  const inner = indent + "    ";
  if (Array.isArray(v)) return v.length ? `[\n${v.map((x) => inner + pyLiteral(x, inner)).join(",\n")},\n${indent}]` : "[]";
  const entries = Object.entries(v as Record<string, unknown>);
  return entries.length ? `{\n${entries.map(([k, x]) => `${inner}${JSON.stringify(k)}: ${pyLiteral(x, inner)}`).join(",\n")},\n${indent}}` : "{}";
}

function curl(r: SampleRequest, key: SampleKey): string {
  const auth = "env" in key ? `"Authorization: Bearer $${key.env}"` : shellQuote(`Authorization: Bearer ${key.literal}`);
  const lines = [`curl${r.method === "GET" ? "" : r.method === "HEAD" ? " -I" : ` -X ${r.method}`} ${shellQuote(r.url)}`, `  -H ${auth}`];
  for (const [name, value] of Object.entries(r.headers ?? {})) lines.push(`  -H ${shellQuote(`${name}: ${value}`)}`);
  if (r.body !== undefined) lines.push(`  -H 'Content-Type: application/json'`, `  -d ${shellQuote(JSON.stringify(r.body))}`);
  return lines.join(" \\\n");
}

function javascript(r: SampleRequest, key: SampleKey): string {
  const auth = "env" in key ? `\`Bearer \${process.env.${key.env}}\`` : JSON.stringify(`Bearer ${key.literal}`);
  const own = Object.entries(r.headers ?? {}).map(([name, value]) => `, ${JSON.stringify(name)}: ${JSON.stringify(value)}`).join("");
  const headers = r.body !== undefined ? `{ Authorization: ${auth}${own}, "Content-Type": "application/json" }` : `{ Authorization: ${auth}${own} }`;
  const init = [`  method: ${JSON.stringify(r.method)},`, `  headers: ${headers},`];
  if (r.body !== undefined) init.push(`  body: JSON.stringify(${JSON.stringify(r.body, null, 2).replaceAll("\n", "\n  ")}),`);
  return [`const res = await fetch(${JSON.stringify(r.url)}, {`, ...init, `});`, `console.log(res.status, res.headers.get("ratelimit"), await res.json());`].join("\n");
}

function python(r: SampleRequest, key: SampleKey): string {
  const auth = "env" in key ? `f"Bearer {os.environ['${key.env}']}"` : JSON.stringify(`Bearer ${key.literal}`);
  const own = Object.entries(r.headers ?? {}).map(([name, value]) => `, ${JSON.stringify(name)}: ${JSON.stringify(value)}`).join("");
  const args = [`    ${JSON.stringify(r.url)},`, `    headers={"Authorization": ${auth}${own}},`];
  if (r.body !== undefined) args.push(`    json=${pyLiteral(r.body, "    ")},`);
  const imports = "env" in key ? ["import os", "", "import requests"] : ["import requests"];
  return [...imports, "", `res = requests.${r.method.toLowerCase()}(`, ...args, ")", `print(res.status_code, res.headers.get("RateLimit"), res.json())`].join("\n");
}

const GENERATORS: Record<string, (r: SampleRequest, key: SampleKey) => string> = { curl, javascript, python };

/**
 * The code samples of a request: curl, JavaScript fetch and Python requests, generated from
 * the operation; an `x-codeSamples` entry of the operation replaces the generated sample of
 * its language (its text as written, without the key or values filled in).
 */
export function codeSamples(op: Pick<OperationView, "codeSamples">, r: SampleRequest, key: SampleKey): CodeSample[] {
  return SAMPLE_LANGS.map(({ lang, label }) => {
    const own = op.codeSamples.find((s) => s.lang.toLowerCase() === lang || (lang === "javascript" && /^(js|node)$/i.test(s.lang)));
    if (own) return { lang, label: own.label ?? label, source: own.source };
    return { lang, label, source: GENERATORS[lang]!(r, key) };
  });
}

/** The path with its parameters filled in (percent-encoded) and the query of those given. */
export function requestPath(op: Pick<OperationView, "path" | "params">, values: Record<string, string>): string {
  let path = op.path;
  const query = new URLSearchParams();
  for (const p of op.params) {
    const v = values[p.name] ?? "";
    if (p.in === "path") path = path.replaceAll(`{${p.name}}`, encodeURIComponent(v));
    else if (p.in === "query" && v !== "") query.set(p.name, v);
  }
  const q = query.toString();
  return q ? `${path}?${q}` : path;
}

/** Headers a request must not set from a form: the credential's, the connection's, and those only the gateway sets. */
const RESERVED_HEADERS = /^(authorization|x-api-key|cookie|host|content-length|content-type|transfer-encoding|connection|x-csrf-token|sec-.*|keyport-.*|x-forwarded-.*|forwarded|x-request-id)$/i;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** The operation's header parameters given a value, as request headers (a name HTTP or the gateway reserves is left out). */
export function requestHeaders(op: Pick<OperationView, "params">, values: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of op.params) {
    const v = values[p.name] ?? "";
    if (p.in === "header" && v !== "" && TOKEN.test(p.name) && !RESERVED_HEADERS.test(p.name)) out[p.name] = v;
  }
  return out;
}
