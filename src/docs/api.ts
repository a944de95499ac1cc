import { Elysia, type AnyElysia } from "elysia";
import { openApiDocument } from "./openapi.ts";
import { buildReference, type Reference } from "./reference.ts";
import type { ProductRegistry } from "../products/registry.ts";

/** The app's OpenAPI document and the reference made from it: built on first use, then kept. */
export interface DocsCatalog {
  json(): { body: string; etag: string };
  reference(): Reference;
}

export function docsCatalog(app: AnyElysia, products: ProductRegistry): DocsCatalog {
  let json: { body: string; etag: string } | undefined;
  let reference: Reference | undefined;
  // Rebuilt when the registered products change (a new product, a spec version).
  let builtFor = -1;
  const document = () => openApiDocument(app, products.list());
  return {
    json() {
      if (builtFor !== products.version) {
        json = undefined;
        reference = undefined;
        builtFor = products.version;
      }
      if (!json) {
        const body = JSON.stringify(document());
        json = { body, etag: `"${new Bun.CryptoHasher("sha256").update(body).digest("hex").slice(0, 32)}"` };
      }
      return json;
    },
    reference() {
      // From the serialised document, exactly what /openapi.json answers.
      const body = this.json().body;
      reference ??= buildReference(JSON.parse(body) as Record<string, unknown>);
      return reference;
    },
  };
}

/** GET /openapi.json: the document, made on first request from the app's routes and kept. */
export const docsRoutes = (catalog: DocsCatalog) =>
  new Elysia({ name: "docs" }).get("/openapi.json", ({ request }) => {
    const { body, etag } = catalog.json();
    const headers = { "content-type": "application/json; charset=utf-8", "cache-control": "public, max-age=300", etag };
    if (request.headers.get("if-none-match") === etag) return new Response(null, { status: 304, headers });
    return new Response(body, { headers });
  });
