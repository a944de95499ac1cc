import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";
import type { Scope } from "../keys/scopes.ts";
import { emit } from "../notify/service.ts";
import { runChain, type GatewayPass } from "./chain.ts";

/** The once-a-month marker outlives any month. */
const QUOTA_WARNING_MARK_MS = 32 * 86_400_000;

/** `GET /v1/email/:address`: one string per route and method, built once, so metering hashes nothing new per request. */
const endpointNames = new Map<string, Map<string, string>>();
function endpointName(method: string, route: string): string {
  let byMethod = endpointNames.get(route);
  if (!byMethod) endpointNames.set(route, (byMethod = new Map()));
  let name = byMethod.get(method);
  if (name === undefined) byMethod.set(method, (name = `${method} ${route}`));
  return name;
}

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

/**
 * Off the request path (after the answer is sent): the notification and its webhook delivery.
 * Once per key and month across instances: in service mode quotas are spent from leases
 * (src/state/lease.ts), and a block given back can let two instances each see the crossing,
 * so the first to take the shared marker sends it.
 */
async function warnQuota(deps: Deps, key: GatewayPass["key"], w: NonNullable<GatewayPass["quotaWarning"]>): Promise<void> {
  try {
    if (!(await deps.state.tryLock(`quota-warning:${key.id}:${w.month}`, QUOTA_WARNING_MARK_MS))) return;
    await deps.db.transaction((tx) =>
      emit(tx, { accountId: key.accountId, event: "usage.quota_warning", keyId: key.id, data: { used: w.used, quota: w.quota, month: w.month } }, new Date(deps.clock.now())),
    );
  } catch (err) {
    deps.log.warn("quota warning not recorded", { keyId: key.id, error: (err as Error).message });
  }
}

/**
 * What the gateway hooks read and write on Elysia's context. The context is never passed
 * whole to a function: Elysia would then prepare everything (cookies, query, headers) for
 * every request of every route.
 */
interface GatewayContext {
  request: Request;
  body?: unknown;
  set: { headers: Record<string, string | number> };
  server: { requestIP(request: Request): { address: string } | null } | null;
  gateway?: GatewayPass;
}

/**
 * The `gateway` macro: `{ gateway: { scope } }` on a route runs the chain before the handler
 * and meters the answer after it is sent (src/gateway/chain.ts has the steps).
 */
export const gatewayPlugin = (deps: Deps) =>
  new Elysia({ name: "gateway" }).macro({
    gateway: (opts: GatewayRoute) => ({
      // Two hooks, because Elysia reads a hook's source to decide what each request of the
      // route must prepare: a mention of the body makes it parse one (~1 µs a request,
      // measured), which only routes with a cost function need.
      beforeHandle: opts.cost
        ? async (ctx: GatewayContext) => {
            const result = await runChain(deps, ctx.request, ctx.set.headers, () => ctx.server?.requestIP(ctx.request)?.address, opts.scope, opts.cost!(ctx.body));
            if ("response" in result) {
              if (result.key) ctx.gateway = { key: result.key, cost: 1 };
              return result.response;
            }
            ctx.gateway = result;
          }
        : async (ctx: GatewayContext) => {
            const result = await runChain(deps, ctx.request, ctx.set.headers, () => ctx.server?.requestIP(ctx.request)?.address, opts.scope, 1);
            if ("response" in result) {
              if (result.key) ctx.gateway = { key: result.key, cost: 1 };
              return result.response;
            }
            ctx.gateway = result;
          },
      afterResponse(ctx) {
        const pass = (ctx as { gateway?: GatewayPass }).gateway;
        if (!pass) return;
        const answered = (ctx as { responseValue?: unknown }).responseValue;
        const status = answered instanceof Response ? answered.status : typeof ctx.set.status === "number" ? ctx.set.status : 200;
        const startedAt = (ctx as { startedAt?: number }).startedAt;
        const latencyMs = startedAt === undefined ? 0 : performance.now() - startedAt;
        deps.meter.record(pass.key.id, pass.key.accountId, pass.key.environment, endpointName(ctx.request.method, ctx.route), status, latencyMs, status < 400 ? pass.cost : 1);
        if (pass.quotaWarning) void warnQuota(deps, pass.key, pass.quotaWarning);
      },
    }),
  });
