import { isIP } from "node:net";
import type { Server } from "bun";
import type { Deps } from "../deps.ts";
import { KeyStoreUnavailable, type CachedKey, type PolicyHeaders } from "../keys/cache.ts";
import { hashKey, keyLength, parseKey } from "../keys/format.ts";
import { ipAllowed } from "../keys/ips.ts";
import { quotaCounter } from "../keys/service.ts";
import type { ErrorCode } from "../errors.ts";
import { problemBody, type Problem } from "../plugins/problem.ts";
import type { CappedIncrement, MaybePromise, RateDecision } from "../state/types.ts";

/** The account's calls this month reached a notified share of its plan's included calls. */
export interface PlanUsage {
  /** The share reached (80 or 100 %), and the highest this instance had notified before. */
  level: number;
  from: number;
  used: number;
  included: number;
  month: string;
  plan: string;
}

/** What a request that passed the chain carries into the handler and the meter. */
export interface GatewayPass {
  key: CachedKey;
  cost: number;
  /**
   * The counters this request took `cost` units from: the key's monthly quota and the
   * account's calls this month. An answer that is not a success gives them back
   * (`giveBackUnits`), so the counters hold exactly the successes the usage rows count.
   */
  quotaCounter: string | undefined;
  callsCounter: string | undefined;
  /** Set when this request carried the key's monthly usage across QUOTA_WARNING_SHARE. */
  quotaWarning: { used: number; quota: number; month: string } | undefined;
  /** Set when this request carried the account's calls to a share of its plan not yet notified. */
  planUsage: PlanUsage | undefined;
}

/** `usage.quota_warning` fires once a month per key, on the request that crosses 80%. */
export const QUOTA_WARNING_SHARE = 0.8;

/**
 * A request the chain refused: the problem+json body to answer (its `status` is the answer's);
 * every header of the answer, Retry-After included, is already in the request's `headers`.
 * `key` is set when it was refused after authentication (it is metered). A body rather than
 * a Response: the data API answers it through Elysia's JSON path like a 200, where a Response
 * would be copied by Elysia into a new one, its body streamed, to add those headers.
 */
export interface Rejection {
  problem: Problem;
  key?: CachedKey;
}

export type ChainDeps = Pick<Deps, "config" | "state" | "clock" | "keyCache" | "log" | "catalog">;

const SECOND = 1000;
const MINUTE = 60_000;
const DAY = 86_400_000;
/**
 * The calls counter's cap on a plan with an overage price: such plans keep serving past their
 * included calls (the overage is billed from the usage rows), so the cap is out of reach.
 */
const UNCAPPED = 1e15;
/** Failed authentications allowed per client IP per minute before 429. */
export const AUTH_FAILURE_LIMIT = 60;
const TOO_MANY_FAILURES = "Too many failed authentications from this address; retry later.";

/** An address the failed-authentication budget refuses: until when (the next failure fits), and when the budget is whole again. */
interface OverBudget {
  until: number;
  resetAt: number;
}
/**
 * Addresses at or over their failed-authentication budget, per shared state (one per app),
 * as the state's own decisions said: a key not in the cache from one of them is refused
 * before its lookup, so guessing keys from an address over its budget costs no database
 * query. In process, like the leases' over-limit answers (DESIGN.md, hot path rules): on
 * several instances each learns it from its own first refusal. Bounded: an address leaves
 * once its wait is over, and a flood of addresses empties the map.
 */
const overBudget = new WeakMap<object, Map<string, OverBudget>>();
const MAX_OVER_BUDGET = 10_000;

/** The two headers that depend only on the policy and the limit, built once per pair. */
const fixedHeaders = new Map<string, Map<number, { policy: string; limit: string }>>();
function policyHeaders(policy: string, limit: number): { policy: string; limit: string } {
  let byLimit = fixedHeaders.get(policy);
  if (!byLimit) fixedHeaders.set(policy, (byLimit = new Map()));
  let h = byLimit.get(limit);
  if (!h) {
    // Bounded: a few policies, and limits are whole numbers a key holds (a new limit, a new entry).
    if (byLimit.size >= 10_000) byLimit.clear();
    byLimit.set(limit, (h = { policy: `"${policy}";q=${limit};w=60`, limit: String(limit) }));
  }
  return h;
}

/** Writes the rate-limit headers of a decision into `h` (the answer's headers) in place; sets or clears Retry-After. */
export function setRateHeaders(h: Record<string, string | number>, d: RateDecision, now: number, policy = "default"): void {
  // draft-ietf-httpapi-ratelimit-headers: quota q in window w seconds; r remaining, t seconds to reset.
  const fixed = policyHeaders(policy, d.limit);
  h["ratelimit-policy"] = fixed.policy;
  h.ratelimit = `"${policy}";r=${d.remaining};t=${Math.ceil(d.resetMs / 1000)}`;
  h["x-ratelimit-limit"] = fixed.limit;
  h["x-ratelimit-remaining"] = String(d.remaining);
  // Unix time in seconds at which the limit is fully replenished (GitHub's convention).
  h["x-ratelimit-reset"] = String(Math.ceil((now + d.resetMs) / 1000));
  if (!d.allowed) h["retry-after"] = String(Math.max(1, Math.ceil(d.retryAfterMs / 1000)));
  else if (h["retry-after"] !== undefined) delete h["retry-after"];
}

const BEARER = /^Bearer[ ]+(\S+)\s*$/i;

/**
 * The key of `Authorization: Bearer <key>` ("" when malformed), else X-API-Key. The usual
 * form, `Bearer ` and a token of printable ASCII, is read without the regular expression
 * (its match array and capture were a tenth of the chain's own JavaScript); anything else
 * goes through it, so both read every header alike.
 */
export function extractKey(headers: Headers): string | null {
  const auth = headers.get("authorization");
  if (auth !== null) {
    if (auth.length > 7 && auth.startsWith("Bearer ")) {
      let plain = true;
      for (let i = 7; i < auth.length; i++) {
        const c = auth.charCodeAt(i);
        if (c < 33 || c > 126) {
          plain = false;
          break;
        }
      }
      if (plain) return auth.slice(7);
    }
    const m = BEARER.exec(auth);
    return m ? m[1]! : "";
  }
  return headers.get("x-api-key");
}

/**
 * Requests the app makes to itself through `app.handle` (the reference's try-it) have no
 * socket: this holds the address of the client each one acts for, so IP allowlists, the
 * failed-authentication limit and the audit log see the real caller.
 */
export const innerRequestIp = new WeakMap<Request, string>();

/** The socket's address of a request, or the client's address an in-process request acts for. */
export function socketAddress(server: Pick<Server<unknown>, "requestIP"> | null, request: Request): string | undefined {
  return server?.requestIP(request)?.address ?? innerRequestIp.get(request);
}

/**
 * The client address: the socket's, or the last X-Forwarded-For hop (added by our proxy) when
 * TRUST_PROXY is set. A last hop that is no IP address (a proxy that adds none, a client
 * reaching the server past it) is not taken: the socket's address is, so budgets, allowlists,
 * the audit log and Settings → Sessions only ever see an address.
 */
export function clientIp(headers: Headers, socketIp: string | undefined, trustProxy: boolean): string | undefined {
  if (trustProxy) {
    const xff = headers.get("x-forwarded-for");
    if (xff) {
      const hops = xff.split(",");
      const last = hops[hops.length - 1]!.trim();
      if (last && isIP(last) !== 0) return last;
    }
  }
  return socketIp;
}

/** A calendar month (UTC): its `YYYY-MM` and its span in epoch ms. */
interface MonthSpan {
  id: string;
  start: number;
  end: number;
}

/** The current UTC month, formatted once per month rather than once per request. */
let monthSpan: MonthSpan = { id: "", start: 0, end: 0 };
function currentMonth(now: number): MonthSpan {
  if (now < monthSpan.start || now >= monthSpan.end) {
    const d = new Date(now);
    monthSpan = { id: d.toISOString().slice(0, 7), start: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), end: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
  }
  return monthSpan;
}

/**
 * One request going through the chain. The steps below are plain functions continuing one
 * another: a step whose value is already there (a cached key, a decision from memory or a
 * lease) calls the next at once, and only a real promise defers the rest, so a cached key
 * goes through without a promise, a microtask or an allocation beyond its answer. (A
 * generator-driven chain cost 1.6 µs more a request over HTTP, measured here.)
 */
interface ChainRequest {
  deps: ChainDeps;
  request: Request;
  /** The answer's headers, written in place. */
  headers: Record<string, string | number>;
  /** The socket's address, or how to ask for it (a native call, made only when needed). */
  socketIp: SocketIp;
  /** The client's address once asked (null: not yet). */
  address: string | undefined | null;
  scope: string;
  cost: number;
  /**
   * Whether this is a call to the data API: it spends the key's monthly quota and counts
   * toward the plan (its requests per second and calls a month). The management API does not.
   */
  quota: boolean;
  /** The product the request calls (a tag of Keyport's own, or a registered product's id): the plan must include it. */
  product: string | undefined;
  now: number;
  /** The decisions of the key's limit and the plan's, once made: the answer's headers name both. */
  keyRate: RateDecision | undefined;
  planRate: RateDecision | undefined;
  /** The key quota counter units were taken from (given back if a later step refuses). */
  quotaTaken: string | undefined;
  quotaWarning: GatewayPass["quotaWarning"];
}

/**
 * The socket's address of the request, or a function asking for it with the request (one
 * function for every request of a route, rather than a closure per request).
 */
export type SocketIp = string | undefined | ((request: Request) => string | undefined);

export interface ChainOptions {
  quota: boolean;
  product?: string;
}
const SPEND_QUOTA: ChainOptions = { quota: true };

/** The client address: looked up only when a step needs it (a failed authentication, an allowlist). */
function clientAddress(c: ChainRequest): string | undefined {
  if (c.address === null) {
    c.address = clientIp(c.request.headers, typeof c.socketIp === "function" ? c.socketIp(c.request) : c.socketIp, c.deps.config.trustProxy);
  }
  return c.address;
}

/**
 * The gateway chain, in order: key-auth → status/expiry → account suspended → scope → the
 * plan includes the product → IP
 * allowlist → the key's rate limit → the plan's rate limit → the key's monthly quota → the
 * plan's calls this month (the plan's steps and the quotas for data-API calls only). Answers
 * the first failing step's problem+json, or the pass for the handler. Sets the rate-limit
 * headers on `headers` (every answer carries them). Synchronous when no step has to wait.
 */
export function runChain(
  deps: ChainDeps,
  request: Request,
  headers: Record<string, string | number>,
  socketIp: SocketIp,
  scope: string,
  cost: number,
  opts: ChainOptions = SPEND_QUOTA,
): MaybePromise<GatewayPass | Rejection> {
  const c: ChainRequest = {
    deps,
    request,
    headers,
    socketIp,
    address: null,
    scope,
    cost,
    quota: opts.quota,
    product: opts.product,
    now: deps.clock.now(),
    keyRate: undefined,
    planRate: undefined,
    quotaTaken: undefined,
    quotaWarning: undefined,
  };

  // 1. key-auth
  const raw = extractKey(request.headers);
  if (raw === null || raw === "") {
    return authFailure(c, "missing_api_key", "Send your key as `Authorization: Bearer <key>` or `X-API-Key: <key>`.");
  }
  // A cached hash is a key already checked: the shape and checksum are checked on a miss,
  // before the lookup, so a typo or a made-up key never reaches the database.
  if (raw.length !== keyLength(deps.config.keyPrefix)) return authFailure(c, "invalid_api_key", "The API key is malformed or mistyped.");
  const hash = hashKey(raw);
  const cached = deps.keyCache.peek(hash, c.now);
  if (cached !== undefined) return authorize(c, cached);
  if (!parseKey(raw, deps.config.keyPrefix).ok) return authFailure(c, "invalid_api_key", "The API key is malformed or mistyped.");
  // The budget before the lookup: an address over it gets its 429 without a query.
  const refused = refusedBeforeLookup(c);
  if (refused !== undefined) return refused;
  return deps.keyCache.load(hash).then(
    (key) => authorize(c, key),
    (err: unknown) => {
      if (err instanceof KeyStoreUnavailable) {
        c.headers["retry-after"] = "5";
        return { problem: problemBody("temporarily_unavailable", "Keys cannot be verified right now; retry shortly.") };
      }
      throw err;
    },
  );
}

/** Steps 2-6 for a looked-up key (null: no such key). */
function authorize(c: ChainRequest, key: CachedKey | null): MaybePromise<GatewayPass | Rejection> {
  const now = c.now;
  if (key === null) return authFailure(c, "invalid_api_key", "The API key is not valid.");

  // 2. status and expiry
  if ((key.revokedAt !== null && key.revokedAt <= now) || (key.graceEndsAt !== null && key.graceEndsAt <= now)) {
    return authFailure(c, "key_revoked", "This API key has been revoked.");
  }
  if (key.expiresAt !== null && key.expiresAt <= now) return authFailure(c, "key_expired", "This API key has expired.");

  // 3. the account, suspended by an operator
  if (key.account.suspended) {
    return withRate(c, key, () => problemBody("account_suspended", "The account this key belongs to is suspended; its users can read why in the portal."));
  }

  // 4. scope
  if (!key.scopes.has(c.scope)) {
    return withRate(c, key, () => problemBody("insufficient_scope", `This key lacks the scope "${c.scope}" this endpoint needs.`, { requiredScope: c.scope }));
  }

  // 4b. the account's plan includes the product
  if (c.product !== undefined) {
    const included = c.deps.catalog.includes.get(key.account.planId);
    if (included !== undefined && !included.has(c.product)) {
      const product = c.product;
      return withRate(c, key, () => problemBody("product_not_in_plan", `The account's plan does not include ${product}; see /pricing for the plans that do.`, { product }));
    }
  }

  // 5. IP allowlist
  if (key.allow !== null) {
    const ip = clientAddress(c);
    if (ip === undefined || !ipAllowed(key.allow, ip)) {
      return withRate(c, key, () => problemBody("ip_not_allowed", "Requests from this address are not allowed for this key."));
    }
  }

  // 6. the key's rate limit, spent by the request's cost (a batch: its item count), one at
  // least (the management API's requests cost no quota). A cost over the limit could never
  // be admitted: refused as a request, spending one like the refusals above, and never asked
  // of the limiter (a lease would stay blocked for minutes).
  const cost = c.cost > 1 ? c.cost : 1;
  if (cost > key.rateLimit) return withRate(c, key, () => overLimitCost(cost, key.rateLimit));
  const decision = c.deps.state.rateLimit(key.rateKey, key.rateLimit, MINUTE, now, cost);
  return decision instanceof Promise ? decision.then((d) => keyLimited(c, key, d)) : keyLimited(c, key, decision);
}

function overLimitCost(cost: number, limit: number): Problem {
  return problemBody("invalid_request", `This request counts ${cost} against the key's rate limit of ${limit} a minute, more than the limit ever admits: send at most ${limit} items at a time.`, {
    errors: [{ field: "items", message: `must hold at most ${limit} items for this key (its rate limit a minute)` }],
  });
}

/**
 * Step 6's answer, then step 7: the plan's requests per second, across all the account's
 * keys. The plan counts requests, not items: its limit is of requests a second, and a batch
 * counts its items toward the plan's calls a month (step 9).
 */
function keyLimited(c: ChainRequest, key: CachedKey, decision: RateDecision): MaybePromise<GatewayPass | Rejection> {
  c.keyRate = decision;
  if (!decision.allowed) return rateRefusal(c, key, decision, `Rate limit of ${key.rateLimit} requests per minute exceeded.`);
  // The management API is no call to a product: the plan's limits are not its business.
  if (!c.quota) {
    writeRateHeaders(c, key, false, 0);
    return admit(c, key, undefined, undefined);
  }
  const account = key.account;
  const plan = c.deps.state.rateLimit(account.rateKey, account.rps, SECOND, c.now);
  return plan instanceof Promise ? plan.then((d) => planLimited(c, key, d)) : planLimited(c, key, plan);
}

/** Step 7's answer, then step 8: the key's monthly quota. */
function planLimited(c: ChainRequest, key: CachedKey, decision: RateDecision): MaybePromise<GatewayPass | Rejection> {
  c.planRate = decision;
  if (!decision.allowed) return rateRefusal(c, key, decision, `The account's plan allows ${key.account.rps} requests per second across its keys.`);
  // The key's own quota before the plan's month: a request the key refuses never reaches the
  // account's counter, and one the plan refuses gives its key unit back (callsCounted).
  const month = currentMonth(c.now);
  const quota = key.monthlyQuota;
  if (quota === null) return countCall(c, key, month);
  // The counter's name is built once a month per key, not per request: a new string is
  // hashed again at every lookup. A roll or rotation copies it to the replacement (carryQuota).
  if (key.quotaKey.month !== month.id) key.quotaKey = { month: month.id, name: quotaCounter(key.id, c.now).name };
  const used = c.deps.state.consume(key.quotaKey.name, c.cost, quota, month.end - c.now + DAY);
  return used instanceof Promise ? used.then((u) => quotaSpent(c, key, quota, month, u)) : quotaSpent(c, key, quota, month, used);
}

/** Step 8's answer, then step 9. */
function quotaSpent(c: ChainRequest, key: CachedKey, monthlyQuota: number, month: MonthSpan, used: CappedIncrement): MaybePromise<GatewayPass | Rejection> {
  if (!used.ok) {
    writeRateHeaders(c, key, false, 0);
    c.headers["retry-after"] = String(Math.ceil((month.end - c.now) / 1000));
    return { key, problem: problemBody("quota_exceeded", `The monthly quota of ${monthlyQuota} requests is used up; it renews at the start of the next UTC month.`) };
  }
  c.quotaTaken = key.quotaKey.name;
  // The counter is atomic across instances, so exactly one request sees the crossing.
  const threshold = Math.ceil(monthlyQuota * QUOTA_WARNING_SHARE);
  if (used.value >= threshold && used.value - c.cost < threshold) c.quotaWarning = { used: used.value, quota: monthlyQuota, month: month.id };
  return countCall(c, key, month);
}

/**
 * Step 9: the account's calls this month, exact across instances (the state layer's capped
 * counter). Only live keys count: a test key's calls (the sandbox's too) are never billed.
 */
function countCall(c: ChainRequest, key: CachedKey, month: MonthSpan): MaybePromise<GatewayPass | Rejection> {
  if (key.environment === "test") {
    writeRateHeaders(c, key, false, 0);
    return admit(c, key, undefined, undefined);
  }
  const account = key.account;
  if (account.callsKey.month !== month.id) account.callsKey = { month: month.id, name: `calls:${account.id}:${month.id}` };
  const ttl = month.end - c.now + DAY;
  // A hard cap is exact across instances: one atomic capped increment in Redis a call (a
  // capped plan's few requests a second make that cheap). Leased units would let one
  // instance refuse while another still held unspent ones. Uncapped counts use leases.
  const used =
    account.hardCap && c.deps.state.kind === "redis"
      ? c.deps.state.incrCapped(account.callsKey.name, c.cost, account.included, ttl)
      : c.deps.state.consume(account.callsKey.name, c.cost, account.hardCap ? account.included : UNCAPPED, ttl);
  if (!(used instanceof Promise)) return callsCounted(c, key, month, used);
  return used.then(
    (u) => callsCounted(c, key, month, u),
    (err: unknown) => {
      if (c.quotaTaken !== undefined) giveBack(c.deps, c.quotaTaken, c.cost);
      throw err;
    },
  );
}

/** Step 9's answer: the pass, or the free plan's cap. */
function callsCounted(c: ChainRequest, key: CachedKey, month: MonthSpan, used: CappedIncrement): GatewayPass | Rejection {
  const account = key.account;
  writeRateHeaders(c, key, true, used.value);
  if (!used.ok) {
    // A refusal never counts: the unit the key's quota gave this request goes back.
    if (c.quotaTaken !== undefined) giveBack(c.deps, c.quotaTaken, c.cost);
    c.headers["retry-after"] = String(Math.ceil((month.end - c.now) / 1000));
    return {
      key,
      problem: problemBody("quota_exceeded", `The ${account.included} calls a month of the account's plan are used up; they renew at the start of the next UTC month.`),
    };
  }
  let usage: PlanUsage | undefined;
  if (account.included > 0) {
    // 5·used ≥ 4·included: 80 % without a division.
    const level = used.value >= account.included ? 100 : used.value * 5 >= account.included * 4 ? 80 : 0;
    if (level > 0) {
      const sent = account.notified.month === month.id ? account.notified.level : 0;
      if (level > sent) usage = { level, from: sent, used: used.value, included: account.included, month: month.id, plan: account.planId };
    }
  }
  return admit(c, key, account.callsKey.name, usage);
}

function admit(c: ChainRequest, key: CachedKey, callsCounter: string | undefined, planUsage: PlanUsage | undefined): GatewayPass {
  return { key, cost: c.cost, quotaCounter: c.quotaTaken, callsCounter, quotaWarning: c.quotaWarning, planUsage };
}

/** Returns units to a counter off the request path; a failure only leaves the counter a little high (logged). */
function giveBack(deps: Pick<ChainDeps, "state" | "log">, counter: string, units: number): void {
  const failed = (err: unknown) => deps.log.warn("units not given back to a quota counter", { counter, units, error: (err as Error)?.message });
  try {
    const done = deps.state.giveBack(counter, units);
    if (done instanceof Promise) done.catch(failed);
  } catch (err) {
    failed(err);
  }
}

/**
 * After an answer that is not a success (the handler's refusal, a server error): the units
 * the pass took go back to the key's quota and the account's calls, so both counters hold
 * what the usage rows count as successes and bill, to the unit.
 */
export function giveBackUnits(deps: Pick<ChainDeps, "state" | "log">, pass: GatewayPass): void {
  if (pass.quotaCounter !== undefined) giveBack(deps, pass.quotaCounter, pass.cost);
  if (pass.callsCounter !== undefined) giveBack(deps, pass.callsCounter, pass.cost);
}

/** A 429 of the key's limit or the plan's: the policies decided so far, and when to retry. */
function rateRefusal(c: ChainRequest, key: CachedKey, decision: RateDecision, detail: string): Rejection {
  writeRateHeaders(c, key, false, 0);
  c.headers["retry-after"] = String(Math.max(1, Math.ceil(decision.retryAfterMs / 1000)));
  return { key, problem: problemBody("rate_limited", detail) };
}

/** The key's fixed header values for the month of `span`, rebuilt when the month turns. */
function policyOf(key: CachedKey, span: MonthSpan): PolicyHeaders {
  if (key.policy.month === span.id) return key.policy;
  const account = key.account;
  const own = `"default";q=${key.rateLimit};w=60`;
  const plan = `${own}, "plan";q=${account.rps};w=1`;
  key.policy = {
    month: span.id,
    key: own,
    plan,
    all: `${plan}, "month";q=${account.included};w=${(span.end - span.start) / 1000}`,
    keyLimit: String(key.rateLimit),
    planLimit: String(account.rps),
    monthLimit: String(account.included),
  };
  return key.policy;
}

/**
 * The rate-limit headers of an authenticated request (draft-ietf-httpapi-ratelimit-headers-11):
 * `RateLimit-Policy` and `RateLimit` list every policy decided for it as Structured Field
 * lists, in order — the key's per-minute limit ("default", first: clients read it there), the
 * plan's per-second limit ("plan") once decided, and the account's calls this month ("month",
 * q = the plan's included calls, r = those left) for a request that counts. X-RateLimit-*
 * describe the one nearest exhaustion, the smallest r/q (ties: the first listed). A paid
 * plan's month is listed but never nearest: it does not refuse, its overage is billed.
 */
function writeRateHeaders(c: ChainRequest, key: CachedKey, withMonth: boolean, used: number): void {
  const h = c.headers;
  const now = c.now;
  const span = currentMonth(now);
  const p = policyOf(key, span);
  const own = c.keyRate!;
  const ownT = Math.ceil(own.resetMs / 1000);
  let limit = p.keyLimit;
  let remaining = own.remaining;
  let quota = key.rateLimit;
  let resetAt = now + own.resetMs;
  const plan = c.planRate;
  if (plan === undefined) {
    h["ratelimit-policy"] = p.key;
    h.ratelimit = `"default";r=${own.remaining};t=${ownT}`;
  } else {
    // r/q < remaining/quota, compared without a division.
    if (plan.remaining * quota < remaining * plan.limit) {
      limit = p.planLimit;
      remaining = plan.remaining;
      quota = plan.limit;
      resetAt = now + plan.resetMs;
    }
    const planT = Math.ceil(plan.resetMs / 1000);
    if (!withMonth) {
      h["ratelimit-policy"] = p.plan;
      h.ratelimit = `"default";r=${own.remaining};t=${ownT}, "plan";r=${plan.remaining};t=${planT}`;
    } else {
      const account = key.account;
      const left = used >= account.included ? 0 : account.included - used;
      if (account.hardCap && (account.included === 0 || left * quota < remaining * account.included)) {
        limit = p.monthLimit;
        remaining = left;
        resetAt = span.end;
      }
      h["ratelimit-policy"] = p.all;
      h.ratelimit = `"default";r=${own.remaining};t=${ownT}, "plan";r=${plan.remaining};t=${planT}, "month";r=${left};t=${Math.ceil((span.end - now) / 1000)}`;
    }
  }
  h["x-ratelimit-limit"] = limit;
  h["x-ratelimit-remaining"] = String(remaining);
  // Unix time in seconds at which that policy is fully replenished (GitHub's convention).
  h["x-ratelimit-reset"] = String(Math.ceil(resetAt / 1000));
}

/**
 * A 403 after authentication: the request still counts against the key's rate limit (it
 * used the key), so the headers stay truthful; the 403 is the answer either way.
 */
function withRate(c: ChainRequest, key: CachedKey, answer: () => Problem): MaybePromise<Rejection> {
  const refuse = (decision: RateDecision): Rejection => {
    c.keyRate = decision;
    writeRateHeaders(c, key, false, 0);
    delete c.headers["retry-after"];
    return { key, problem: answer() };
  };
  const decision = c.deps.state.rateLimit(key.rateKey, key.rateLimit, MINUTE, c.now);
  return decision instanceof Promise ? decision.then(refuse) : refuse(decision);
}

/**
 * Failed authentication spends from the client IP's failure budget; past it the answer is
 * 429, so guessing keys from one address is slow. The headers describe that budget.
 */
function authFailure(c: ChainRequest, code: ErrorCode, detail: string): MaybePromise<Rejection> {
  const refuse = (decision: RateDecision): Rejection => {
    setRateHeaders(c.headers, decision, c.now, "auth-failures");
    noteBudget(c, decision);
    if (!decision.allowed) return { problem: problemBody("rate_limited", TOO_MANY_FAILURES) };
    return { problem: problemBody(code, detail) };
  };
  // A state store that cannot answer does not turn a 401 into a 500: the budget is skipped.
  const open = (): RateDecision => ({ allowed: true, limit: AUTH_FAILURE_LIMIT, remaining: AUTH_FAILURE_LIMIT, resetMs: 0, retryAfterMs: 0 });
  let decision: MaybePromise<RateDecision>;
  try {
    decision = c.deps.state.rateLimit(`authfail:${clientAddress(c) ?? "unknown"}`, AUTH_FAILURE_LIMIT, MINUTE, c.now);
  } catch {
    return refuse(open());
  }
  return decision instanceof Promise ? decision.then(refuse, () => refuse(open())) : refuse(decision);
}

/**
 * Remembers an address whose failed-authentication budget admits no further failure now:
 * refused (the next fits after Retry-After), or admitted with none left (GCRA: the next fits
 * one emission interval, a minute / AUTH_FAILURE_LIMIT, after the budget is less than full).
 */
function noteBudget(c: ChainRequest, d: RateDecision): void {
  const wait = !d.allowed ? d.retryAfterMs : d.remaining === 0 ? d.resetMs - (MINUTE - MINUTE / AUTH_FAILURE_LIMIT) : 0;
  if (!(wait > 0)) return;
  let seen = overBudget.get(c.deps.state);
  if (seen === undefined) overBudget.set(c.deps.state, (seen = new Map()));
  if (seen.size >= MAX_OVER_BUDGET) {
    for (const [address, b] of seen) if (b.until <= c.now) seen.delete(address);
    if (seen.size >= MAX_OVER_BUDGET) seen.clear();
  }
  seen.set(clientAddress(c) ?? "unknown", { until: c.now + wait, resetAt: c.now + d.resetMs });
}

/**
 * The 429 of an address known over its failed-authentication budget, for a key not in the
 * cache, before any lookup; the same answer the budget gives (a refusal spends nothing).
 */
function refusedBeforeLookup(c: ChainRequest): Rejection | undefined {
  const seen = overBudget.get(c.deps.state);
  if (seen === undefined || seen.size === 0) return undefined;
  const address = clientAddress(c) ?? "unknown";
  const b = seen.get(address);
  if (b === undefined) return undefined;
  if (b.until <= c.now) {
    seen.delete(address);
    return undefined;
  }
  setRateHeaders(c.headers, { allowed: false, limit: AUTH_FAILURE_LIMIT, remaining: 0, resetMs: Math.max(0, b.resetAt - c.now), retryAfterMs: b.until - c.now }, c.now, "auth-failures");
  return { problem: problemBody("rate_limited", TOO_MANY_FAILURES) };
}
