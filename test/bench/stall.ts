/**
 * A server that stalls, for checking test/bench/wrk/cofree.lua (`bun test/bench/cofree-check.ts`):
 * a bare `Bun.serve` answering `GET /v1/email/:address` with the address echoed as `input`
 * (as the email handler does), whose thread blocks for STALL_MS (50) every STALL_EVERY_MS
 * (2,000) — what a synchronous pause in a server looks like from outside. STALL_MS=0: never.
 */
const port = Number(process.env.PORT ?? 3300);
const stallMs = Number(process.env.STALL_MS ?? 50);
const everyMs = Number(process.env.STALL_EVERY_MS ?? 2000);

if (import.meta.main) {
  Bun.serve({
    port,
    hostname: "127.0.0.1",
    routes: {
      "/healthz": new Response("ok"),
      "/v1/email/:address": (req) => Response.json({ input: req.params.address, valid: true }),
    },
    fetch: () => new Response("not found", { status: 404 }),
  });
  if (stallMs > 0) setInterval(() => Bun.sleepSync(stallMs), everyMs);
  console.log(JSON.stringify({ level: "info", msg: "listening", port, variant: "stall", stallMs, everyMs }));
  for (const signal of ["SIGTERM", "SIGINT"] as const) process.on(signal, () => process.exit(0));
}
