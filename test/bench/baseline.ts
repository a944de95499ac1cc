import { Elysia } from "elysia";
import { emailAnswer, limitAnswer } from "./handlers.ts";

/**
 * The reference servers of `bun run bench`, each its own process (PORT from the environment):
 *
 * - `BENCH_VARIANT=bare` (default): the data API's own email handler in a bare Elysia app —
 *   no gateway chain, no access log, no metrics — plus a bare JSON route.
 * - `BENCH_VARIANT=frame`: Keyport's whole app (createApp: every plugin and route, on an
 *   in-memory PGlite and in-process state) with the same handler mounted at
 *   /frame/email/:address where the data API's routes sit, without the chain: what the app
 *   costs around a /v1 handler, so `keyport − frame` is the chain's cost alone.
 * - `BENCH_VARIANT=limit`: the bare app's email handler plus the least the gateway contract
 *   asks of every answer: the key read from the request's `Authorization` header (401 without
 *   one) and the six headers `RateLimit-Policy`, `RateLimit`, `X-RateLimit-Limit`,
 *   `X-RateLimit-Remaining`, `X-RateLimit-Reset` and `X-Request-Id`, their values as cheap as
 *   they can be (prebuilt strings, a plain counter for the remaining count, the reset time
 *   rebuilt once a second, a counter for the request id), written into the answer's headers as
 *   an Elysia handler writes them. No key is verified and nothing is limited: the fastest any
 *   implementation of the contract can be on this Bun and this Elysia.
 */
const port = Number(process.env.PORT ?? 3100);

const variant = process.env.BENCH_VARIANT ?? "bare";

if (variant === "frame") {
  const { createApp } = await import("../../src/app.ts");
  const { assembleDeps } = await import("../../src/runtime.ts");
  const { openPglite } = await import("../../src/db/client.ts");
  const { MemoryState } = await import("../../src/state/memory.ts");
  const { parseConfig } = await import("../../src/config.ts");
  const { createLogger } = await import("../../src/ops/log.ts");
  const level = process.env.LOG_LEVEL === "info" ? "info" : "warn";
  const database = await openPglite(undefined);
  await database.migrate();
  const config = parseConfig({ LOG_LEVEL: level, SECRET_KEY: process.env.SECRET_KEY });
  const deps = await assembleDeps(config, database, new MemoryState(), { log: createLogger(level) });
  const { errorsPlugin } = await import("../../src/plugins/errors.ts");
  const { errorPage } = await import("../../src/portal/respond.ts");
  // Mounted where the data API is: after the error hook, before the app's observe and html
  // hooks (which, as in createApp, do not apply to routes registered before them).
  new Elysia()
    .use(errorsPlugin(deps, errorPage))
    .get("/frame/email/:address", emailAnswer)
    .use(createApp(deps))
    .listen({ port, hostname: "127.0.0.1" });
} else if (variant === "limit") {
  new Elysia()
    .get("/v1/email/:address", limitAnswer(`req_${crypto.randomUUID().slice(0, 8)}`))
    .get("/json", () => ({ hello: "world" }))
    .listen({ port, hostname: "127.0.0.1" });
} else {
  new Elysia()
    .get("/v1/email/:address", emailAnswer)
    .get("/json", () => ({ hello: "world" }))
    .listen({ port, hostname: "127.0.0.1" });
}

console.log(JSON.stringify({ level: "info", msg: "listening", port, variant }));

// Exit through process.exit so `bun --cpu-prof` writes its profile.
for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => process.exit(0));
