import { toOpenAPISchema } from "@elysiajs/openapi";
import type { AnyElysia } from "elysia";
import { z } from "zod";
import { version } from "../../package.json";
import type { Product } from "../products/registry.ts";
import { productsDocument } from "../products/document.ts";
import { PARAM_DOCS, REQUEST_EXAMPLES, TAGS, jsonSchema, problemSchema } from "../plugins/openapi.ts";

/** Only the programs' API is documented: the data API and the management API (the products' proxy routes are documented by their specs). */
const DOCUMENTED = /^\/(v1|api)\//;
const PROXY_ROUTE = /^\/v1\/:product/;

type Operation = {
  operationId?: string;
  parameters?: { name: string; in: string; description?: string; example?: unknown; schema?: Record<string, unknown> }[];
  requestBody?: { content?: Record<string, { example?: unknown }> };
};

/**
 * The OpenAPI 3.1 document of /v1 and /api, made from the running app's routes: their zod
 * body/query/params schemas (through @elysiajs/openapi's generator and zod's JSON Schema)
 * and the `detail` each route declares (operation id, tag, scope, answers). Portal pages,
 * ops routes and this document itself are left out.
 */
export function openApiDocument(app: AnyElysia, registered: Product[] = []): Record<string, unknown> {
  const routes = app.routes.filter((r) => DOCUMENTED.test(r.path) && !PROXY_ROUTE.test(r.path)).map((r) => r.path);
  const generated = toOpenAPISchema(app, { paths: app.routes.map((r) => r.path).filter((p) => !routes.includes(p)) }, undefined, { zod: (s: z.ZodType) => jsonSchema(s, "input") }, "3.1.0");
  const paths = generated.paths as Record<string, Record<string, Operation>>;
  for (const item of Object.values(paths)) {
    for (const op of Object.values(item)) {
      const example = op.operationId ? REQUEST_EXAMPLES.get(op.operationId) : undefined;
      const json = op.requestBody?.content?.["application/json"];
      if (example !== undefined && json) json.example = example;
      const params = op.operationId ? PARAM_DOCS.get(op.operationId) : undefined;
      for (const p of op.parameters ?? []) {
        const d = params?.[p.name];
        // The generator leaves a schema's description inside it; the parameter carries it too.
        const description = d?.description ?? (typeof p.schema?.description === "string" ? p.schema.description : undefined);
        if (description !== undefined) p.description = description;
        if (d?.example !== undefined) p.example = d.example;
      }
      // Bodies are JSON: the generator also lists form encodings Elysia could parse.
      if (op.requestBody?.content) op.requestBody.content = json ? { "application/json": json } : op.requestBody.content;
    }
  }
  const own = productsDocument(registered);
  const components: Record<string, Record<string, unknown>> = { ...own.components };
  components.schemas = { ...(own.components.schemas ?? {}), ...(generated.components?.schemas ?? {}), Problem: problemSchema };
  return {
    openapi: "3.1.0",
    info: {
      title: "Keyport API",
      version,
      description:
        "The metered data API (`/v1`, a key with the operation's scope) and the management API (`/api`, a key holding `keys:manage`, or a portal session with its X-CSRF-Token). Errors are RFC 9457 problem details with a stable `code`.",
    },
    servers: [{ url: "/", description: "This Keyport instance" }],
    tags: [...Object.entries(TAGS).map(([name, description]) => ({ name, description })), ...own.tags],
    paths: { ...paths, ...own.paths },
    components: {
      ...components,
      securitySchemes: {
        bearer: { type: "http", scheme: "bearer", description: "`Authorization: Bearer kp_live_…`" },
        apiKey: { type: "apiKey", in: "header", name: "X-API-Key", description: "`X-API-Key: kp_live_…`" },
      },
    },
  };
}
