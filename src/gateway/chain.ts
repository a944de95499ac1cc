import type { Deps } from "../deps.ts";
import { KeyStoreUnavailable, type CachedKey } from "../keys/cache.ts";
import { hashKey, keyLength, parseKey } from "../keys/format.ts";
import { ipAllowed } from "../keys/ips.ts";
import { problemResponse } from "../plugins/problem.ts";
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

/** A request the chain refused; `key` is set when it was refused after authentication (it is metered). */
export interface Rejection {
  response: Response;
  key?: CachedKey;
}

export type ChainDeps = Pick<Deps, "config" | "state" | "clock" | "keyCache" | "log">;

const MINUTE = 60_000;
/** Failed authentications allowed per client IP per minute before 429. */
export const AUTH_FAILURE_LIMIT = 60;

export function rateHeaders(d: RateDecision, now: number, policy = "default"): Record<string, string> {
  const h: Record<string, string> = {};
  setRateHeaders(h, d, now, policy);
  return h;
}

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
 * Runs a chain of steps written as a generator: each `yield` hands over a value the step may
 * have to wait for. Values already there are handed back at once, so a request that needs no
 * I/O (a cached key, a decision from memory or a lease) goes through without a promise, a
 * microtask or an await; the first real promise switches the rest of the chain to async.
 */
function drive<T>(steps: Generator<unknown, T, unknown>, next: IteratorResult<unknown, T> = steps.next()): MaybePromise<T> {
  for (;;) {
    if (next.done) return next.value;
    const value = next.value;
    if (value instanceof Promise) {
      return value.then(
        (resolved) => drive(steps, steps.next(resolved)),
        (err: unknown) => drive(steps, steps.throw(err)),
      );
    }
    next = steps.next(value);
  }
}

/**
 * The gateway chain, in order: key-auth → status/expiry → scope → IP allowlist → rate limit
 * → quota. Answers the first failing step's problem+json, or the pass for the handler.
 * Sets the rate-limit headers on `headers` (every answer carries them). Synchronous when no
 * step has to wait (see drive).
 */
export function runChain(...args: Parameters<typeof chainSteps>): MaybePromise<GatewayPass | Rejection> {
  return drive(chainSteps(...args));
}

function* chainSteps(
  deps: ChainDeps,
  request: Request,
  headers: Record<string, string | number>,
  socketIp: string | undefined | (() => string | undefined),
  scope: string,
  cost: number,
  opts: { quota: boolean } = { quota: true },
): Generator<unknown, GatewayPass | Rejection, unknown> {
  const now = deps.clock.now();
  // The client address is looked up only when a step needs it (a failed authentication, an
  // allowlist): asking the server for the socket's address is a native call per request.
  let address: string | undefined | null = null;
  const clientAddress = () =>
    address === null ? (address = clientIp(request.headers, typeof socketIp === "function" ? socketIp() : socketIp, deps.config.trustProxy)) : address;

  // 1. key-auth
  const raw = extractKey(request.headers);
  if (raw === null || raw === "") {
    return { response: yield* authFailure(deps, headers, clientAddress(), now, "missing_api_key", "Send your key as `Authorization: Bearer <key>` or `X-API-Key: <key>`.") };
  }
  // A cached hash is a key already checked: the shape and checksum are checked on a miss,
  // before the lookup, so a typo or a made-up key never reaches the database.
  const malformed = () => authFailure(deps, headers, clientAddress(), now, "invalid_api_key", "The API key is malformed or mistyped.");
  if (raw.length !== keyLength(deps.config.keyPrefix)) return { response: yield* malformed() };
  const hash = hashKey(raw);
  let key = deps.keyCache.peek(hash, now);
  if (key === undefined) {
    if (!parseKey(raw, deps.config.keyPrefix).ok) return { response: yield* malformed() };
    try {
      key = (yield deps.keyCache.load(hash)) as CachedKey | null;
    } catch (err) {
      if (err instanceof KeyStoreUnavailable) {
        return { response: problemResponse(503, "temporarily_unavailable", "Keys cannot be verified right now; retry shortly.", {}, { "retry-after": "5" }) };
      }
      throw err;
    }
  }
  if (key === null) return { response: yield* authFailure(deps, headers, clientAddress(), now, "invalid_api_key", "The API key is not valid.") };

  // 2. status and expiry
  if ((key.revokedAt !== null && key.revokedAt <= now) || (key.graceEndsAt !== null && key.graceEndsAt <= now)) {
    return { response: yield* authFailure(deps, headers, clientAddress(), now, "key_revoked", "This API key has been revoked.") };
  }
  if (key.expiresAt !== null && key.expiresAt <= now) {
    return { response: yield* authFailure(deps, headers, clientAddress(), now, "key_expired", "This API key has expired.") };
  }

  // 3. scope
  if (!key.scopes.has(scope)) {
    return { key, response: yield* withRate(deps, key, headers, now, () => problemResponse(403, "insufficient_scope", `This key lacks the scope "${scope}" this endpoint needs.`, { requiredScope: scope })) };
  }

  // 4. IP allowlist
  const ip = key.allow === null ? undefined : clientAddress();
  if (key.allow !== null && (ip === undefined || !ipAllowed(key.allow, ip))) {
    return { key, response: yield* withRate(deps, key, headers, now, () => problemResponse(403, "ip_not_allowed", "Requests from this address are not allowed for this key.")) };
  }

  // 5. rate limit
  const decision = (yield deps.state.rateLimit(key.rateKey, key.rateLimit, MINUTE, now)) as RateDecision;
  setRateHeaders(headers, decision, now);
  if (!decision.allowed) {
    return { key, response: problemResponse(429, "rate_limited", `Rate limit of ${key.rateLimit} requests per minute exceeded.`, {}, { "retry-after": headers["retry-after"] as string }) };
  }

  // 6. quota
  if (key.monthlyQuota !== null && opts.quota) {
    const month = currentMonth(now);
    const used = (yield deps.state.consume(`quota:${key.id}:${month.id}`, cost, key.monthlyQuota, month.msLeft + 86_400_000)) as CappedIncrement;
    if (!used.ok) {
      const retry = String(Math.ceil(month.msLeft / 1000));
      headers["retry-after"] = retry;
      return { key, response: problemResponse(429, "quota_exceeded", `The monthly quota of ${key.monthlyQuota} requests is used up; it renews at the start of the next UTC month.`, {}, { "retry-after": retry }) };
    }
    // The counter is atomic across instances, so exactly one request sees the crossing.
    const threshold = Math.ceil(key.monthlyQuota * QUOTA_WARNING_SHARE);
    if (used.value >= threshold && used.value - cost < threshold) {
      return { key, cost, quotaWarning: { used: used.value, quota: key.monthlyQuota, month: month.id } };
    }
  }
  return { key, cost };
}

/**
 * A 403 after authentication: the request still counts against the key's rate limit (it
 * used the key), so the headers stay truthful; the 403 is the answer either way.
 */
function* withRate(deps: ChainDeps, key: CachedKey, headers: Record<string, string | number>, now: number, answer: () => Response): Generator<unknown, Response, unknown> {
  const decision = (yield deps.state.rateLimit(key.rateKey, key.rateLimit, MINUTE, now)) as RateDecision;
  setRateHeaders(headers, decision, now);
  delete headers["retry-after"];
  return answer();
}

/**
 * Failed authentication spends from the client IP's failure budget; past it the answer is
 * 429, so guessing keys from one address is slow. The headers describe that budget.
 */
function* authFailure(
  deps: ChainDeps,
  headers: Record<string, string | number>,
  ip: string | undefined,
  now: number,
  code: string,
  detail: string,
): Generator<unknown, Response, unknown> {
  let decision: RateDecision;
  try {
    decision = (yield deps.state.rateLimit(`authfail:${ip ?? "unknown"}`, AUTH_FAILURE_LIMIT, MINUTE, now)) as RateDecision;
  } catch {
    decision = { allowed: true, limit: AUTH_FAILURE_LIMIT, remaining: AUTH_FAILURE_LIMIT, resetMs: 0, retryAfterMs: 0 };
  }
  setRateHeaders(headers, decision, now, "auth-failures");
  if (!decision.allowed) {
    return problemResponse(429, "rate_limited", "Too many failed authentications from this address; retry later.", {}, { "retry-after": headers["retry-after"] as string });
  }
  return problemResponse(401, code, detail);
}
