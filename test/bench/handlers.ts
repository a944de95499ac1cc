import { analyzeEmail } from "../../src/data-api/email.ts";

/**
 * The reference handlers of the bench's baseline and limit rows (test/bench/baseline.ts) and
 * of the in-process variants (test/bench/inprocess.ts).
 *
 * Each is written so that Elysia compiles it synchronously. Elysia decides whether to `await`
 * a handler from its source: a body with `return f(` or `=> f(` counts as async (elysia's
 * compose.mjs `isAsync`, elysiajs/elysia#2005), and an awaited handler costs its request a
 * promise and a microtask. Keyport's data-API handlers are written the same way
 * (src/gateway/route.ts), so every row compares like with like.
 */

/** The data API's email handler alone. */
export function emailAnswer({ params }: { params: { address: string } }) {
  let answer;
  answer = analyzeEmail(params.address);
  return answer;
}

interface LimitContext {
  params: { address: string };
  request: Request;
  set: { status?: number | string; headers: Record<string, string | number> };
}

/**
 * The email handler plus the least the gateway contract asks of every answer: the key read
 * from the request's `Authorization` header (401 without one) and the six headers
 * `RateLimit-Policy`, `RateLimit`, `X-RateLimit-Limit`, `X-RateLimit-Remaining`,
 * `X-RateLimit-Reset` and `X-Request-Id`, their values as cheap as they can be (prebuilt
 * strings, a plain counter for the remaining count, the reset time rebuilt once a second, a
 * counter after `idPrefix` for the request id). No key is verified and nothing is limited.
 */
export function limitAnswer(idPrefix: string) {
  const LIMIT = 100_000;
  const policy = `"default";q=${LIMIT};w=60`;
  const limit = String(LIMIT);
  let sequence = 0;
  let remaining = LIMIT;
  let second = 0;
  let reset = "";
  return ({ params, request, set }: LimitContext) => {
    if (request.headers.get("authorization") === null) {
      set.status = 401;
      return { status: 401, code: "missing_api_key" };
    }
    if (--remaining < 0) remaining = LIMIT - 1;
    const now = Date.now();
    if (now >= second) {
      second = now - (now % 1000) + 1000;
      reset = String(second / 1000 + 60);
    }
    const h = set.headers;
    h["x-request-id"] = idPrefix + (++sequence).toString(36);
    h["ratelimit-policy"] = policy;
    h.ratelimit = `"default";r=${remaining};t=60`;
    h["x-ratelimit-limit"] = limit;
    h["x-ratelimit-remaining"] = String(remaining);
    h["x-ratelimit-reset"] = reset;
    let answer;
    answer = analyzeEmail(params.address);
    return answer;
  };
}
