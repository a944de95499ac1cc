import type { Server } from "bun";
import type { Deps } from "../deps.ts";
import { KeyStoreUnavailable, type CachedKey } from "../keys/cache.ts";
import { hashKey, keyLength, parseKey } from "../keys/format.ts";
import { ipAllowed } from "../keys/ips.ts";
import type { ErrorCode } from "../errors.ts";
import { problemBody, type Problem } from "../plugins/problem.ts";
import type { CappedIncrement, MaybePromise, RateDecision } from "../state/types.ts";

/** What a request that passed the chain carries into the handler and the meter. */
export interface GatewayPass {
  key: CachedKey;
  cost: number;
  /** Set when this request carried the key's monthly usage across QUOTA_WARNING_SHARE. */
  quotaWarning?: { used: number; quota: number; month: string };
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

export type ChainDeps = Pick<Deps, "config" | "state" | "clock" | "keyCache" | "log">;

const MINUTE = 60_000;
/** Failed authentications allowed per client IP per minute before 429. */
export const AUTH_FAILURE_LIMIT = 60;

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

function extractKey(headers: Headers): string | null {
  const auth = headers.get("authorization");
  if (auth !== null) {
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(auth);
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

/** The client address: the socket's, or the last X-Forwarded-For hop (added by our proxy) when TRUST_PROXY is set. */
export function clientIp(headers: Headers, socketIp: string | undefined, trustProxy: boolean): string | undefined {
  if (trustProxy) {
    const xff = headers.get("x-forwarded-for");
    if (xff) {
      const hops = xff.split(",");
      const last = hops[hops.length - 1]!.trim();
      if (last) return last;
    }
  }
  return socketIp;
}

/** The current UTC month, formatted once per month rather than once per request. */
let monthSpan = { id: "", start: 0, end: 0 };
function currentMonth(now: number): { id: string; msLeft: number } {
  if (now < monthSpan.start || now >= monthSpan.end) {
    const d = new Date(now);
    monthSpan = { id: d.toISOString().slice(0, 7), start: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), end: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
  }
  return { id: monthSpan.id, msLeft: monthSpan.end - now };
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
  socketIp: string | undefined | (() => string | undefined);
  /** The client's address once asked (null: not yet). */
  address: string | undefined | null;
  scope: string;
  cost: number;
  /** Whether the request spends monthly quota (the management API does not). */
  quota: boolean;
  now: number;
}

const SPEND_QUOTA = { quota: true };

/** The client address: looked up only when a step needs it (a failed authentication, an allowlist). */
function clientAddress(c: ChainRequest): string | undefined {
  if (c.address === null) {
    c.address = clientIp(c.request.headers, typeof c.socketIp === "function" ? c.socketIp() : c.socketIp, c.deps.config.trustProxy);
  }
  return c.address;
}

/**
 * The gateway chain, in order: key-auth → status/expiry → scope → IP allowlist → rate limit
 * → quota. Answers the first failing step's problem+json, or the pass for the handler.
 * Sets the rate-limit headers on `headers` (every answer carries them). Synchronous when no
 * step has to wait.
 */
export function runChain(
  deps: ChainDeps,
  request: Request,
  headers: Record<string, string | number>,
  socketIp: string | undefined | (() => string | undefined),
  scope: string,
  cost: number,
  opts: { quota: boolean } = SPEND_QUOTA,
): MaybePromise<GatewayPass | Rejection> {
  const c: ChainRequest = { deps, request, headers, socketIp, address: null, scope, cost, quota: opts.quota, now: deps.clock.now() };

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

/** Steps 2-5 for a looked-up key (null: no such key). */
function authorize(c: ChainRequest, key: CachedKey | null): MaybePromise<GatewayPass | Rejection> {
  const now = c.now;
  if (key === null) return authFailure(c, "invalid_api_key", "The API key is not valid.");

  // 2. status and expiry
  if ((key.revokedAt !== null && key.revokedAt <= now) || (key.graceEndsAt !== null && key.graceEndsAt <= now)) {
    return authFailure(c, "key_revoked", "This API key has been revoked.");
  }
  if (key.expiresAt !== null && key.expiresAt <= now) return authFailure(c, "key_expired", "This API key has expired.");

  // 3. scope
  if (!key.scopes.has(c.scope)) {
    return withRate(c, key, () => problemBody("insufficient_scope", `This key lacks the scope "${c.scope}" this endpoint needs.`, { requiredScope: c.scope }));
  }

  // 4. IP allowlist
  if (key.allow !== null) {
    const ip = clientAddress(c);
    if (ip === undefined || !ipAllowed(key.allow, ip)) {
      return withRate(c, key, () => problemBody("ip_not_allowed", "Requests from this address are not allowed for this key."));
    }
  }

  // 5. rate limit
  const decision = c.deps.state.rateLimit(key.rateKey, key.rateLimit, MINUTE, now);
  return decision instanceof Promise ? decision.then((d) => limit(c, key, d)) : limit(c, key, decision);
}

/** Step 5's answer, then step 6. */
function limit(c: ChainRequest, key: CachedKey, decision: RateDecision): MaybePromise<GatewayPass | Rejection> {
  setRateHeaders(c.headers, decision, c.now);
  if (!decision.allowed) {
    return { key, problem: problemBody("rate_limited", `Rate limit of ${key.rateLimit} requests per minute exceeded.`) };
  }
  // 6. quota
  if (key.monthlyQuota === null || !c.quota) return { key, cost: c.cost };
  const month = currentMonth(c.now);
  // The counter's name is built once a month per key, not per request: a new string is
  // hashed again at every lookup.
  if (key.quotaKey.month !== month.id) key.quotaKey = { month: month.id, name: `quota:${key.id}:${month.id}` };
  const used = c.deps.state.consume(key.quotaKey.name, c.cost, key.monthlyQuota, month.msLeft + 86_400_000);
  return used instanceof Promise ? used.then((u) => quota(c, key, key.monthlyQuota!, month, u)) : quota(c, key, key.monthlyQuota, month, used);
}

/** Step 6's answer. */
function quota(c: ChainRequest, key: CachedKey, monthlyQuota: number, month: { id: string; msLeft: number }, used: CappedIncrement): GatewayPass | Rejection {
  if (!used.ok) {
    c.headers["retry-after"] = String(Math.ceil(month.msLeft / 1000));
    return { key, problem: problemBody("quota_exceeded", `The monthly quota of ${monthlyQuota} requests is used up; it renews at the start of the next UTC month.`) };
  }
  // The counter is atomic across instances, so exactly one request sees the crossing.
  const threshold = Math.ceil(monthlyQuota * QUOTA_WARNING_SHARE);
  if (used.value >= threshold && used.value - c.cost < threshold) {
    return { key, cost: c.cost, quotaWarning: { used: used.value, quota: monthlyQuota, month: month.id } };
  }
  return { key, cost: c.cost };
}

/**
 * A 403 after authentication: the request still counts against the key's rate limit (it
 * used the key), so the headers stay truthful; the 403 is the answer either way.
 */
function withRate(c: ChainRequest, key: CachedKey, answer: () => Problem): MaybePromise<Rejection> {
  const refuse = (decision: RateDecision): Rejection => {
    setRateHeaders(c.headers, decision, c.now);
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
    if (!decision.allowed) {
      return { problem: problemBody("rate_limited", "Too many failed authentications from this address; retry later.") };
    }
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
