import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";
import type { Scope } from "../keys/scopes.ts";
import { emit } from "../notify/service.ts";
import { runChain, type GatewayPass } from "./chain.ts";

export interface GatewayRoute {
  scope: Scope;
  /** Units of quota and metering the request uses (a batch: its item count). */
  cost?: (body: unknown) => number;
}

/** Handlers read the authenticated key through this (set by the chain before the handler). */
export function gatewayPass(ctx: object): GatewayPass {
  const pass = (ctx as { gateway?: GatewayPass }).gateway;
  if (!pass) throw new Error("gateway route without the gateway macro");
  return pass;
}

/** Off the request path (after the answer is sent): the notification and its webhook delivery. */
async function warnQuota(deps: Deps, key: GatewayPass["key"], w: NonNullable<GatewayPass["quotaWarning"]>): Promise<void> {
  try {
    await deps.db.transaction((tx) =>
      emit(tx, { accountId: key.accountId, event: "usage.quota_warning", keyId: key.id, data: { used: w.used, quota: w.quota, month: w.month } }, new Date(deps.clock.now())),
    );
  } catch (err) {
    deps.log.warn("quota warning not recorded", { keyId: key.id, error: (err as Error).message });
  }
}

/**
 * The `gateway` macro: `{ gateway: { scope } }` on a route runs the chain before the handler
 * and meters the answer after it is sent (src/gateway/chain.ts has the steps).
 */
export const gatewayPlugin = (deps: Deps) =>
  new Elysia({ name: "gateway" }).macro({
    gateway: (opts: GatewayRoute) => ({
      async beforeHandle(ctx) {
        const cost = opts.cost ? opts.cost(ctx.body) : 1;
        const socketIp = ctx.server?.requestIP(ctx.request)?.address;
        const result = await runChain(deps, ctx.request, ctx.set.headers as Record<string, string>, socketIp, opts.scope, cost);
        if ("response" in result) {
          if (result.key) (ctx as { gateway?: GatewayPass }).gateway = { key: result.key, cost: 1 };
          return result.response;
        }
        (ctx as { gateway?: GatewayPass }).gateway = result;
      },
      afterResponse(ctx) {
        const pass = (ctx as { gateway?: GatewayPass }).gateway;
        if (!pass) return;
        const answered = (ctx as { responseValue?: unknown }).responseValue;
        const status = answered instanceof Response ? answered.status : typeof ctx.set.status === "number" ? ctx.set.status : 200;
        const startedAt = (ctx as { startedAt?: number }).startedAt;
        const latencyMs = startedAt === undefined ? 0 : performance.now() - startedAt;
        deps.meter.record(pass.key.id, pass.key.accountId, pass.key.environment, `${ctx.request.method} ${ctx.route}`, status, latencyMs, status < 400 ? pass.cost : 1);
        if (pass.quotaWarning) void warnQuota(deps, pass.key, pass.quotaWarning);
      },
    }),
  });
