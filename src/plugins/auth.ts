import { Elysia } from "elysia";
import type { Actor } from "../audit/service.ts";
import type { Deps } from "../deps.ts";
import { runChain } from "../gateway/chain.ts";
import { sameOrigin, sessionToken } from "../portal/http.ts";
import { csrfMatches, validateSession } from "../accounts/sessions.ts";
import { problemJson, problemResponse } from "./problem.ts";

/** Who is calling /api: the account whose data every query is filtered by, and the audit actor. */
export interface Caller {
  accountId: string;
  actor: Actor;
}

export function callerOf(ctx: object): Caller {
  const caller = (ctx as { caller?: Caller }).caller;
  if (!caller) throw new Error("api route without the `api` macro");
  return caller;
}

/**
 * The `api` macro for the management API. Either a key holding `keys:manage` (checked like a
 * gateway request: status, expiry, IP allowlist, rate limit; no quota, no metering), or a
 * portal session cookie, which on a state-changing request also needs the session's CSRF
 * token in X-CSRF-Token and a same-origin request (403 `csrf_failed` otherwise).
 */
export const apiAuthPlugin = (deps: Deps) =>
  new Elysia({ name: "api-auth" }).macro({
    api: (enabled: boolean) => ({
      async beforeHandle(ctx) {
        if (!enabled) return;
        const socketIp = ctx.server?.requestIP(ctx.request)?.address;
        const h = ctx.request.headers;
        const cookieToken = h.has("authorization") || h.has("x-api-key") ? undefined : sessionToken(ctx.request);
        if (cookieToken) {
          const session = await validateSession(deps, cookieToken);
          if (!session) return problemResponse("invalid_session", "The session has ended; log in again.");
          if (ctx.request.method !== "GET" && ctx.request.method !== "HEAD" && (!sameOrigin(ctx.request) || !csrfMatches(session, h.get("x-csrf-token")))) {
            return problemResponse("csrf_failed", "A request authenticated by a session cookie needs the session's X-CSRF-Token header.");
          }
          (ctx as { caller?: Caller }).caller = {
            accountId: session.accountId,
            actor: { actor: `account:${session.accountId}`, ip: socketIp ?? null, userAgent: h.get("user-agent") },
          };
          return;
        }
        const result = await runChain(deps, ctx.request, ctx.set.headers as Record<string, string>, socketIp, "keys:manage", 0, { quota: false });
        if ("problem" in result) return problemJson(result.problem);
        // Test keys exercise the data API; changing an account's keys is a live operation.
        if (result.key.environment === "test") {
          return problemResponse("test_key_not_allowed", "A test key cannot use the management API; use a live key with keys:manage.");
        }
        const caller: Caller = {
          accountId: result.key.accountId,
          actor: {
            actor: `key:${result.key.id}`,
            ip: socketIp ?? null,
            userAgent: ctx.request.headers.get("user-agent"),
          },
        };
        (ctx as { caller?: Caller }).caller = caller;
      },
    }),
  });
