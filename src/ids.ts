import { z } from "zod";
import { randomBytes } from "node:crypto";

export const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/**
 * `n` base62 characters from the CSPRNG without modulo bias: bytes ≥ 248 (= 4·62) are
 * rejected, so each accepted byte maps onto 62 symbols exactly 4 times.
 */
export function randomBase62(n: number): string {
  let out = "";
  while (out.length < n) {
    const bytes = randomBytes(Math.ceil((n - out.length) * 1.1) + 4);
    for (const b of bytes) {
      if (b >= 248) continue;
      out += BASE62[b % 62];
      if (out.length === n) break;
    }
  }
  return out;
}

/** Prefixed ids (`acct_…`, `key_…`, `evt_…`): 16 base62 characters ≈ 95 bits. */
export function newId(prefix: string): string {
  return `${prefix}_${randomBase62(16)}`;
}

/**
 * A route's `:id`, for its params schema. A segment that is not valid percent-encoding
 * reaches the route as null through Elysia's router and as text with U+FFFD through Bun's
 * (a listening server); one with a NUL byte cannot even be searched for in Postgres. No
 * object has such an id: all are "no such object" (404), the same through either router.
 */
export const idParams = (description: string) =>
  z.object({ id: z.preprocess((v) => (typeof v === "string" && !v.includes("\0") ? v : ""), z.string()).describe(description) });
