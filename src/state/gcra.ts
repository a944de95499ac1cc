import type { RateDecision } from "./types.ts";

/**
 * Generic cell rate algorithm over one number, the theoretical arrival time (TAT), kept in
 * whole microseconds: doubles hold integers exactly up to 2^53 (~285 years of µs since
 * 1970), while adding fractional milliseconds near Date.now() drifts by ~2e-4 ms per step
 * (0.1 ms after 1,000 requests, measured). The emission interval is rounded up to a whole
 * µs and the burst tolerance is `limit` intervals, so exactly `limit` requests fit in a
 * burst; the rate is lower than `limit/window` by under 1 µs per request.
 *
 * Returns the decision and the TAT to store (undefined = unchanged). The Redis Lua script
 * in redis.ts is the same arithmetic.
 */
export function gcra(tat: number | undefined, limit: number, windowMs: number, nowMs: number, cost = 1): { decision: RateDecision; tat: number | undefined } {
  const now = Math.round(nowMs * 1000);
  const interval = Math.ceil((windowMs * 1000) / limit);
  const tolerance = interval * limit;
  const base = tat === undefined || tat < now ? now : tat;
  const newTat = base + interval * cost;
  if (newTat - now > tolerance) {
    return {
      decision: {
        allowed: false,
        limit,
        remaining: Math.max(0, Math.floor((tolerance - (base - now)) / interval)),
        resetMs: (base - now) / 1000,
        retryAfterMs: (newTat - tolerance - now) / 1000,
      },
      tat: undefined,
    };
  }
  return {
    decision: {
      allowed: true,
      limit,
      remaining: Math.floor((tolerance - (newTat - now)) / interval),
      resetMs: (newTat - now) / 1000,
      retryAfterMs: 0,
    },
    tat: newTat,
  };
}
