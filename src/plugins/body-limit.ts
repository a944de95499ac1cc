import { Elysia } from "elysia";
import { requestOrigin } from "./origin.ts";
import type { Config } from "../config.ts";
import { problemResponse } from "./problem.ts";
import { MAX_SPEC_BYTES } from "../products/spec.ts";

/** The largest request body a route of Keyport's own accepts: a full 100-item batch is ~60 KiB. */
export const MAX_BODY_BYTES = 1024 * 1024;

/** The operator's spec uploads (src/products/portal.tsx): a spec of up to 5 MB, and the form around it. */
const SPEC_UPLOAD = /^\/admin\/products(\/[^/]+\/versions)?\/?$/;
const SPEC_UPLOAD_BYTES = MAX_SPEC_BYTES + 64 * 1024;

/** The registered products' proxy, whose bodies stream on under each product's own limit. */
const PROXIED = /^\/v1\/[a-z][a-z0-9-]*(\/|$)/;
const OWN_DATA_API = /^\/v1\/(email|ip|batch)(\/|$)/;

/**
 * The server refuses bodies over the products' cap (src/main.ts, before any parsing); the
 * rest of the app keeps its 1 MiB: a body declared larger is a 413 before a route reads it.
 * GET and HEAD carry none, so they cost one comparison.
 */
export const bodyLimitPlugin = (config: Pick<Config, "trustProxy">) =>
  new Elysia({ name: "body-limit" }).onRequest(({ request }) => {
    if (request.method === "GET" || request.method === "HEAD") return;
    const declared = request.headers.get("content-length");
    if (declared === null || Number(declared) <= MAX_BODY_BYTES) return;
    const url = request.url;
    const query = url.indexOf("?");
    const path = url.slice(url.indexOf("/", url.indexOf("://") + 3), query < 0 ? undefined : query);
    if (PROXIED.test(path) && !OWN_DATA_API.test(path)) return;
    const limit = SPEC_UPLOAD.test(path) ? SPEC_UPLOAD_BYTES : MAX_BODY_BYTES;
    if (Number(declared) <= limit) return;
    // The body is left unread, so the connection cannot carry another request: it is closed
    // once the answer is sent (RFC 9112 §9.6). Kept open, a client still sending the refused
    // body held it, and a graceful shutdown waited on it for ever. (Assigned, not returned
    // directly: see the onRequest hook in src/plugins/errors.ts.)
    let refused: Response;
    refused = problemResponse(requestOrigin(request, config), "payload_too_large", `The request body is larger than ${limit} bytes.`, {}, { connection: "close" });
    return refused;
  });
