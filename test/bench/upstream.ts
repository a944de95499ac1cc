/**
 * The bare upstream of the bench's proxy rows, its own process (PORT from the environment,
 * 127.0.0.1 only): `GET /things/:id` answers a small JSON body, as a team's own API would.
 * Plain `Bun.serve` with no framework, so that what the proxy rows add is Keyport's alone.
 * `UPSTREAM_SPEC` below is the same API as Keyport registers it.
 */
const port = Number(process.env.PORT ?? 3200);

/** One operation, `GET /things/{id}` (scope `<product>:read`); shared with test/bench/fixtures.ts. */
export const UPSTREAM_SPEC = {
  openapi: "3.1.0",
  info: { title: "Bench upstream", version: "1.0.0", description: "A bare Bun.serve answering a small JSON body." },
  paths: {
    "/things/{id}": {
      get: {
        operationId: "getThing",
        summary: "One thing",
        parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
        responses: { "200": { description: "The thing", content: { "application/json": { schema: { type: "object" } } } } },
      },
    },
  },
};

export const UPSTREAM_PATH = "/things/42";

if (import.meta.main) {
  Bun.serve({
    port,
    hostname: "127.0.0.1",
    routes: {
      "/healthz": new Response("ok"),
      "/things/:id": (req) => Response.json({ id: req.params.id, name: "A thing", priceCents: 1234, tags: ["bench", "upstream"], inStock: true }),
    },
    fetch: () => new Response("not found", { status: 404 }),
  });
  console.log(JSON.stringify({ level: "info", msg: "listening", port, variant: "upstream" }));
  // Exit through process.exit, like baseline.ts, so `bun --cpu-prof` would write its profile.
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => process.exit(0));
}
