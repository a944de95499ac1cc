/** A delivery a test receiver got. */
export interface Received {
  headers: Headers;
  body: string;
}

/**
 * A webhook receiver on loopback (port 0: any free one) that records every delivery and
 * answers with the statuses it is given, in order, then 200.
 */
export function webhookReceiver(statuses: number[] = []) {
  const got: Received[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    async fetch(req) {
      got.push({ headers: req.headers, body: await req.text() });
      return new Response("ok", { status: statuses.shift() ?? 200 });
    },
  });
  return { url: `http://127.0.0.1:${server.port}/hooks`, port: server.port, got, stop: () => server.stop(true) };
}
