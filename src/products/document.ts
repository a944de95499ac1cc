import type { ErrorCode } from "../errors.ts";
import { GATEWAY_CODES, GATEWAY_HEADERS, problemResponses } from "../plugins/openapi.ts";
import { PROBLEM_CONTENT_TYPE } from "../plugins/problem.ts";
import type { Product } from "./registry.ts";

type Json = Record<string, unknown>;

/** What the gateway itself may answer on a product's operation, beyond the chain's codes. */
const PROXY_CODES: ErrorCode[] = ["not_found", "sandbox_unavailable", "payload_too_large", "upstream_unavailable", "upstream_timeout", "internal_error"];

/**
 * The registered products' part of /openapi.json: their namespaced paths and components
 * (src/products/spec.ts), one tag each, and on every operation the gateway's own answers —
 * the chain's refusals and the proxy's (no sandbox, body too large, upstream unavailable or
 * late, and invalid_request when the product checks requests) as problem+json, and the
 * gateway's headers on the upstream's answers too.
 */
export function productsDocument(list: Product[]): { paths: Record<string, Json>; components: Record<string, Record<string, unknown>>; tags: { name: string; description: string; "x-displayName": string; "x-status": string }[] } {
  const paths: Record<string, Json> = {};
  const components: Record<string, Record<string, unknown>> = {};
  const tags = [];
  for (const p of list) {
    const gatewayAnswers = problemResponses([...GATEWAY_CODES, ...PROXY_CODES, ...(p.validateRequests ? (["invalid_request"] as const) : [])]);
    for (const [path, item] of Object.entries(p.paths)) {
      const out: Json = {};
      for (const [k, v] of Object.entries(item)) {
        if (k === "parameters" || k === "summary" || k === "description" || v === null || typeof v !== "object") {
          out[k] = v;
          continue;
        }
        const op = v as Json;
        const responses: Record<string, Json> = {};
        for (const [status, r] of Object.entries((op.responses ?? {}) as Record<string, Json>)) {
          responses[status] = typeof r.$ref === "string" ? r : { ...r, headers: { ...GATEWAY_HEADERS, ...((r.headers as Json | undefined) ?? {}) } };
        }
        for (const [status, answer] of Object.entries(gatewayAnswers)) {
          const own = responses[status] === undefined ? undefined : resolveResponse(p, responses[status]!);
          if (own === undefined) {
            responses[status] = answer;
            continue;
          }
          // The upstream's own answer at this status, and the gateway's problem beside it: a
          // problem+json of the upstream's own is either shape.
          const content: Json = { ...((own.content as Json | undefined) ?? {}) };
          const gatewayProblem = answer.content[PROBLEM_CONTENT_TYPE] as Json;
          const upstreamProblem = content[PROBLEM_CONTENT_TYPE] as Json | undefined;
          content[PROBLEM_CONTENT_TYPE] = upstreamProblem?.schema ? { ...upstreamProblem, schema: { anyOf: [gatewayProblem.schema, upstreamProblem.schema] } } : gatewayProblem;
          responses[status] = { ...own, description: `${String(own.description ?? "")} ${answer.description}`.trim(), headers: { ...GATEWAY_HEADERS, ...((own.headers as Json | undefined) ?? {}) }, content };
        }
        out[k] = { ...op, responses };
      }
      paths[path] = out;
    }
    for (const [kind, entries] of Object.entries(p.components)) components[kind] = { ...(components[kind] ?? {}), ...entries };
    tags.push({ name: p.id, description: p.description || p.name, "x-displayName": p.name, "x-status": p.status });
  }
  return { paths, components, tags };
}

/** A response given as a `$ref` to the product's (renamed) components, followed; inline ones as they are. */
function resolveResponse(p: Product, r: Json): Json {
  let cur: Json | undefined = r;
  for (let hops = 0; cur && typeof cur.$ref === "string" && hops < 10; hops++) {
    const m = /^#\/components\/responses\/(.+)$/.exec(cur.$ref);
    cur = m ? (p.components.responses?.[m[1]!.replace(/~1/g, "/").replace(/~0/g, "~")] as Json | undefined) : undefined;
  }
  return cur ?? {};
}
