import { Elysia } from "elysia";
import type { Actor } from "../audit/service.ts";
import type { Deps } from "../deps.ts";
import { runChain } from "../gateway/chain.ts";

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
 * The `api` macro for the management API: a key holding `keys:manage` (checked like a
 * gateway request: status, expiry, IP allowlist, rate limit; no quota, no metering).
 */
export const apiAuthPlugin = (deps: Deps) =>
  new Elysia({ name: "api-auth" }).macro({
    api: (enabled: boolean) => ({
      async beforeHandle(ctx) {
        if (!enabled) return;
        const socketIp = ctx.server?.requestIP(ctx.request)?.address;
        const result = await runChain(deps, ctx.request, ctx.set.headers as Record<string, string>, socketIp, "keys:manage", 0, { quota: false });
        if ("response" in result) return result.response;
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
