import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { cliActor } from "../../src/audit/service.ts";
import { PROXY_BODY_CAP } from "../../src/products/model.ts";
import { registerProduct } from "../../src/products/service.ts";
import { backends, UNMETERED_PLANS } from "../support/backends.ts";
import { bearer, newAccount, newKey } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

/** 10 MiB: the size the issue names, over Keyport's own 1 MiB routes and under the product's limit. */
const SIZE = 10 * 1024 * 1024;
const CHUNK = 64 * 1024;
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** `bytes` as a stream of 64 KiB chunks, pulled as the reader wants them. */
function chunksOf(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let at = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.byteLength) return controller.close();
      controller.enqueue(bytes.subarray(at, at + CHUNK));
      at += CHUNK;
    },
  });
}

/** What a stream carried: its SHA-256 and its length, hashed as it arrives (never held whole). */
async function digest(body: ReadableStream<Uint8Array>, onFirstChunk?: () => void): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash("sha256");
  let bytes = 0;
  const reader = body.getReader();
  for (let r = await reader.read(); !r.done; r = await reader.read()) {
    if (bytes === 0) onFirstChunk?.();
    hash.update(r.value);
    bytes += r.value.byteLength;
  }
  return { sha256: hash.digest("hex"), bytes };
}

const spec = {
  openapi: "3.1.0",
  info: { title: "Bulk", version: "1.0.0" },
  paths: {
    "/objects/{name}": {
      parameters: [{ name: "name", in: "path", required: true, schema: { type: "string" } }],
      put: {
        requestBody: { content: { "application/octet-stream": { schema: { type: "string", contentMediaType: "application/octet-stream" } } } },
        responses: { "200": { description: "What arrived.", content: { "application/json": { schema: { type: "object" } } } } },
      },
      get: { responses: { "200": { description: "The object.", content: { "application/octet-stream": {} } } } },
    },
    "/feed": { get: { responses: { "200": { description: "Lines, as they happen.", content: { "text/plain": {} } } } } },
  },
};

const embedded = backends.find((b) => b.name === "embedded")!;

describe("bodies streamed through a listening Keyport [embedded]", () => {
  const object = randomBytes(SIZE);
  let h: Harness;
  let upstream: ReturnType<typeof Bun.serve>;
  let origin: string;
  let secret: string;
  /** Set by a test that needs to step in while the upstream reads a request or writes an answer. */
  let onFirstChunk: (() => void) | undefined;
  let feedHeld: Promise<void> = Promise.resolve();
  let feedFinished = false;

  beforeAll(async () => {
    upstream = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      maxRequestBodySize: PROXY_BODY_CAP,
      async fetch(req) {
        const path = new URL(req.url).pathname;
        if (req.method === "PUT") {
          return Response.json({ ...(await digest(req.body!, onFirstChunk)), contentLength: req.headers.get("content-length") });
        }
        if (path === "/feed") {
          const encoder = new TextEncoder();
          return new Response(
            new ReadableStream<Uint8Array>({
              async start(controller) {
                controller.enqueue(encoder.encode("first\n"));
                await feedHeld;
                controller.enqueue(encoder.encode("second\n"));
                feedFinished = true;
                controller.close();
              },
            }),
            { headers: { "content-type": "text/plain" } },
          );
        }
        return new Response(chunksOf(object), { headers: { "content-type": "application/octet-stream" } });
      },
    });
    h = await startHarness(embedded, { config: { plansFile: UNMETERED_PLANS } });
    await registerProduct(h.deps, { id: "bulk", upstreamUrl: `http://127.0.0.1:${upstream.port}`, maxBodyBytes: 16 * 1024 * 1024 }, { text: JSON.stringify(spec), name: "spec.json" }, cliActor);
    const account = await newAccount(h);
    ({ secret } = await newKey(h, account.id, { scopes: ["bulk:read", "bulk:write"] }));
    h.app.listen({ port: 0, hostname: "127.0.0.1", maxRequestBodySize: PROXY_BODY_CAP });
    origin = `http://127.0.0.1:${h.app.server!.port}`;
  });
  afterAll(async () => {
    await h.app.stop();
    await h.close();
    await upstream.stop(true);
  });

  it("streams a 10 MB request body sent in chunks, without Content-Length, to the upstream byte for byte", async () => {
    const res = await fetch(`${origin}/v1/bulk/objects/big`, { method: "PUT", headers: { ...bearer(secret), "content-type": "application/octet-stream" }, body: chunksOf(object), duplex: "half" } as RequestInit);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ sha256: sha256(object), bytes: SIZE, contentLength: null });
  });

  it("streams a 10 MB request body with its Content-Length to the upstream byte for byte", async () => {
    const res = await fetch(`${origin}/v1/bulk/objects/big`, { method: "PUT", headers: { ...bearer(secret), "content-type": "application/octet-stream" }, body: object });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ sha256: sha256(object), bytes: SIZE, contentLength: String(SIZE) });
  });

  it("streams a 10 MB answer back to the client byte for byte", async () => {
    const res = await fetch(`${origin}/v1/bulk/objects/big`, { headers: bearer(secret) });
    expect(res.status).toBe(200);
    expect(res.headers.get("ratelimit")).toStartWith('"default";');
    expect(await digest(res.body!)).toEqual({ sha256: sha256(object), bytes: SIZE });
  });

  it("passes a request body on as it arrives: the upstream reads its first chunk before the client sends the rest", async () => {
    let arrived!: () => void;
    const firstArrived = new Promise<void>((resolve) => (arrived = resolve));
    onFirstChunk = arrived;
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        // Held after the first chunk until the upstream has it: a gateway that waited for the
        // whole body would never pass it on, and the test would time out.
        if (sent === CHUNK) await firstArrived;
        if (sent >= SIZE) return controller.close();
        controller.enqueue(object.subarray(sent, sent + CHUNK));
        sent += CHUNK;
      },
    });
    try {
      const res = await fetch(`${origin}/v1/bulk/objects/big`, { method: "PUT", headers: { ...bearer(secret), "content-type": "application/octet-stream" }, body, duplex: "half" } as RequestInit);
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ sha256: sha256(object), bytes: SIZE });
    } finally {
      onFirstChunk = undefined;
    }
  });

  it("starts the answer before the upstream has finished it: the client reads the first chunk while the rest is held", async () => {
    let release!: () => void;
    feedHeld = new Promise<void>((resolve) => (release = resolve));
    feedFinished = false;
    try {
      const res = await fetch(`${origin}/v1/bulk/feed`, { headers: bearer(secret) });
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      const decoder = new TextDecoder();
      const first = await reader.read();
      expect(decoder.decode(first.value)).toBe("first\n");
      expect(feedFinished).toBe(false);
      release();
      let rest = "";
      for (let r = await reader.read(); !r.done; r = await reader.read()) rest += decoder.decode(r.value, { stream: true });
      expect(rest).toBe("second\n");
      expect(feedFinished).toBe(true);
    } finally {
      release();
    }
  });
});
