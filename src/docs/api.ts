import { Elysia, type AnyElysia } from "elysia";
import { openApiDocument } from "./openapi.ts";

/** GET /openapi.json: the document, made on first request from the app's routes and kept. */
export const docsRoutes = (app: AnyElysia) => {
  let cached: { body: string; etag: string } | undefined;
  const document = () => {
    if (!cached) {
      const body = JSON.stringify(openApiDocument(app));
      cached = { body, etag: `"${new Bun.CryptoHasher("sha256").update(body).digest("hex").slice(0, 32)}"` };
    }
    return cached;
  };
  return new Elysia({ name: "docs" }).get("/openapi.json", ({ request }) => {
    const { body, etag } = document();
    const headers = { "content-type": "application/json; charset=utf-8", "cache-control": "public, max-age=300", etag };
    if (request.headers.get("if-none-match") === etag) return new Response(null, { status: 304, headers });
    return new Response(body, { headers });
  });
};
