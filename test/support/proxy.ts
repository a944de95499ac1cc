import type { Socket, TCPSocketListener } from "bun";

/**
 * A loopback TCP proxy in front of a real service (Postgres, Redis), so a test can take
 * the service away from one app — `cut()` drops every connection and refuses new ones —
 * and bring it back with `restore()`, without stopping the shared server.
 */
export interface FaultProxy {
  port: number;
  cut(): void;
  restore(): void;
  close(): void;
}

interface Pair {
  client: Socket<Pair>;
  upstream?: Socket<{ pair: Pair }>;
  pending: Uint8Array[];
}

export function startProxy(targetPort: number, targetHost = "127.0.0.1"): FaultProxy {
  let down = false;
  const pairs = new Set<Pair>();
  const listener: TCPSocketListener<Pair> = Bun.listen<Pair>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      open(client) {
        if (down) {
          client.end();
          return;
        }
        const pair: Pair = { client, pending: [] };
        client.data = pair;
        pairs.add(pair);
        void Bun.connect<{ pair: Pair }>({
          hostname: targetHost,
          port: targetPort,
          data: { pair },
          socket: {
            open(upstream) {
              pair.upstream = upstream;
              for (const chunk of pair.pending) upstream.write(chunk);
              pair.pending = [];
            },
            data(_, chunk) {
              pair.client.write(chunk);
            },
            close() {
              pair.client.end();
              pairs.delete(pair);
            },
            error() {
              pair.client.end();
            },
          },
        }).catch(() => client.end());
      },
      data(client, chunk) {
        const pair = client.data;
        if (pair.upstream) pair.upstream.write(chunk);
        else pair.pending.push(new Uint8Array(chunk));
      },
      close(client) {
        client.data?.upstream?.end();
        if (client.data) pairs.delete(client.data);
      },
      error(client) {
        client.data?.upstream?.end();
      },
    },
  });
  return {
    port: listener.port,
    cut() {
      down = true;
      for (const p of pairs) {
        p.client.terminate();
        p.upstream?.terminate();
      }
      pairs.clear();
    },
    restore() {
      down = false;
    },
    close() {
      this.cut();
      listener.stop(true);
    },
  };
}
