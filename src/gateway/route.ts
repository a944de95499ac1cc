import type { Server } from "bun";
import type { Deps } from "../deps.ts";
import type { Scope } from "../keys/scopes.ts";
import { emit } from "../notify/service.ts";
import { apiErrorResponse } from "../plugins/errors.ts";
import { DomainError } from "../errors.ts";
import { requestOrigin } from "../plugins/origin.ts";
import { PROBLEM_CONTENT_TYPE, domainHeaders, domainProblem, problemAt, type Problem } from "../plugins/problem.ts";
import { newRequestId, type InFlight, type RequestRecorder } from "../plugins/observe.ts";
import { giveBackUnits, runChain, socketAddress, type GatewayPass, type PlanUsage, type Rejection } from "./chain.ts";

/** The once-a-month marker outlives any month. */
const QUOTA_WARNING_MARK_MS = 32 * 86_400_000;

/** The notified shares of a plan's included calls, and their events. */
const PLAN_USAGE_EVENTS = [
  [80, "plan.usage_80"],
  [100, "plan.usage_100"],
] as const;

/** What the data API's routes share: the services, the request recorder, the in-flight count and the listening server. */
export interface GatewayEnv {
  deps: Deps;
  record: RequestRecorder;
  inflight: InFlight;
  /** The server the app listens on, for the client's socket address (null under app.handle). */
  server: () => Server<unknown> | null;
}

export interface GatewayRoute {
  scope: Scope;
  /** The product of the plans file the route belongs to: the account's plan must include it. */
  product: string;
  /**
   * Units of quota, metering and the key's rate limit the request uses (a valid batch: its
   * item count). Decided before the chain; the quota units of a refused request go back in finish().
   */
  cost?: (body: unknown) => number;
}

/** The parts of Elysia's context a gateway route reads and writes. */
interface GatewaySet {
  headers: Record<string, string | number>;
  status?: number | string;
}
interface GatewayContext {
  request: Request;
  set: GatewaySet;
}

/**
 * Off the request path (after the answer is built): the notification and its webhook delivery.
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
 * Off the request path: `plan.usage_80` / `plan.usage_100` (in-app and webhook) for each share
 * of the plan's included calls this request reached and this instance had not yet notified.
 * Once per account, month and plan across instances: each instance's counter view can see a
 * share reached (or reach it again after units were given back), so the first to take the
 * shared marker sends it. A plan changed mid-month notifies its own shares.
 */
async function notifyPlanUsage(deps: Deps, key: GatewayPass["key"], u: PlanUsage): Promise<void> {
  const account = key.account;
  if (account.notified.month !== u.month || account.notified.level < u.level) account.notified = { month: u.month, level: u.level };
  for (const [level, event] of PLAN_USAGE_EVENTS) {
    if (level <= u.from || level > u.level) continue;
    try {
      if (!(await deps.state.tryLock(`plan-usage:${account.id}:${u.month}:${u.plan}:${level}`, QUOTA_WARNING_MARK_MS))) continue;
      await deps.db.transaction((tx) =>
        emit(tx, { accountId: account.id, event, data: { used: u.used, included: u.included, month: u.month, plan: u.plan } }, new Date(deps.clock.now())),
      );
    } catch (err) {
      deps.log.warn("plan usage notification not recorded", { accountId: account.id, event, error: (err as Error).message });
    }
  }
}

/**
 * A problem+json answer through Elysia's JSON path, like a 200: its headers are already in
 * `set`. (A Response here would be copied by Elysia into a new one, body streamed, to add them.)
 * Its type is made absolute here, where the request is known: on refusals only, from
 * requestOrigin's string slicing (no URL parsing on the hot path).
 */
function problemAnswer(deps: Deps, request: Request, set: GatewaySet, problem: Problem): Problem {
  set.status = problem.status;
  set.headers["content-type"] = PROBLEM_CONTENT_TYPE;
  return problemAt(requestOrigin(request, deps.config), problem);
}

/**
 * A data-API route: one handler that runs the gateway chain (key-auth → status → scope → IP →
 * rate limit → quota, src/gateway/chain.ts), then `handle`, then meters and records the answer.
 *
 * It is one function rather than Elysia hooks on purpose: per-request hooks (a derive for the
 * request id, beforeHandle for the chain, afterResponse for the meter) made Elysia build
 * extra context, await each hook and schedule a task after every answer, which cost more
 * than the chain itself (test/bench/README.md). Here a request whose key is cached and whose
 * limits are decided in memory or from a lease runs start to end without a promise. The
 * meter records before the answer leaves, so an answered request is always counted, even
 * when the process stops right after.
 *
 * `input` is what the handler reads from the request (path params, or the body); `handle` also
 * gets the request itself.
 */
export function gatewayHandler<I>(env: GatewayEnv, method: string, route: string, opts: GatewayRoute, handle: (input: I, pass: GatewayPass, request: Request) => unknown) {
  const { deps, record, inflight } = env;
  const endpoint = `${method} ${route}`;
  const chain = { quota: true, product: opts.product };
  const socketIp = (request: Request) => socketAddress(env.server(), request);

  const finish = (request: Request, set: GatewaySet, input: I, cost: number, startedAt: number, requestId: string, result: GatewayPass | Rejection): unknown => {
    let answer: unknown;
    let status = 200;
    if ("problem" in result) {
      answer = problemAnswer(deps, request, set, result.problem);
      status = result.problem.status;
    } else {
      try {
        answer = handle(input, result, request);
      } catch (err) {
        if (err instanceof DomainError) {
          // The handler's expected refusals (a bad address, an invalid batch).
          Object.assign(set.headers, domainHeaders(err));
          const problem = domainProblem(err);
          answer = problemAnswer(deps, request, set, problem);
          status = problem.status;
        } else {
          const response = apiErrorResponse(err, request, set.headers, deps);
          answer = response;
          status = response.status;
        }
      }
    }
    const ms = performance.now() - startedAt;
    const key = result.key;
    // What the meter counts as successes (`cost` units each) is what the quota counters keep:
    // a failure is metered as one error, and the units it took at admission go back.
    if (key !== undefined) deps.meter.record(key.id, key.accountId, key.environment, endpoint, status, ms, status < 400 ? cost : 1);
    record(method, route, status, ms, requestId);
    inflight.n--;
    if (!("problem" in result)) {
      if (status >= 400) giveBackUnits(deps, result);
      else {
        if (result.quotaWarning !== undefined) void warnQuota(deps, result.key, result.quotaWarning);
        if (result.planUsage !== undefined) void notifyPlanUsage(deps, result.key, result.planUsage);
      }
    }
    return answer;
  };

  const failed = (request: Request, headers: Record<string, string | number>, startedAt: number, requestId: string, err: unknown): Response => {
    const response = apiErrorResponse(err, request, headers, deps);
    record(method, route, response.status, performance.now() - startedAt, requestId);
    inflight.n--;
    return response;
  };

  const serve = (request: Request, set: GatewaySet, input: I, cost: number): unknown => {
    const startedAt = performance.now();
    const requestId = newRequestId();
    const headers = set.headers;
    headers["x-request-id"] = requestId;
    inflight.n++;
    let result: ReturnType<typeof runChain>;
    try {
      result = runChain(deps, request, headers, socketIp, opts.scope, cost, chain);
    } catch (err) {
      return failed(request, headers, startedAt, requestId, err);
    }
    if (result instanceof Promise) {
      // Elysia's catch does not see a promise the handler returns (it runs the handler
      // synchronously, below): a failure is answered here.
      return result.then(
        (r) => {
          try {
            return finish(request, set, input, cost, startedAt, requestId, r);
          } catch (err) {
            return failed(request, headers, startedAt, requestId, err);
          }
        },
        (err: unknown) => failed(request, headers, startedAt, requestId, err),
      );
    }
    return finish(request, set, input, cost, startedAt, requestId, result);
  };

  // Elysia reads a handler's parameters to decide what each request must prepare: only a
  // route that mentions the body gets one parsed (and is awaited: the body is read first).
  const cost = opts.cost;
  if (cost !== undefined) {
    return ({ request, set, body }: GatewayContext & { body: unknown }) => serve(request, set, body as I, cost(body));
  }
  // Elysia also reads the source to decide whether to await the handler: `return f(` or
  // `=> f(` anywhere in it counts as async (compose.mjs `isAsync`, elysiajs/elysia#2005), and
  // an awaited handler costs every request a promise, a microtask and an async answer (7-8 µs
  // of this host's 35-45 µs, measured). Written without either, the handler runs synchronously
  // and a cached key's request is answered without a promise; a promise it returns (a lookup,
  // Redis) is still answered through Elysia's mapResponse. test/gateway/sync-path.test.ts
  // keeps it so.
  return ({ request, set, params }: GatewayContext & { params: unknown }) => {
    let answer: unknown;
    answer = serve(request, set, params as I, 1);
    return answer;
  };
}
