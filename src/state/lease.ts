import type { CappedIncrement, MaybePromise, RateDecision } from "./types.ts";

/**
 * Leases: the in-process half of the shared limits in service mode. An instance takes a
 * share of a key's budget from Redis in one atomic call and decides locally while it lasts,
 * so Redis is reached rarely for a key far from its limit and about once per admitted
 * request near it; over-limit answers come from a local "blocked until" without Redis.
 * Neither kind ever admits more than the limit across instances: Redis hands out each unit
 * of budget once.
 */

/** Redis' answer to a rate lease request; times in whole microseconds, like gcra.ts. */
export interface RateGrant {
  /** Cells granted: at least the cost asked for (less the held cells they continue), or 0 (refused). */
  granted: number;
  /** The TAT the grant starts from, max(stored TAT, now): cell k's slot is base + k × interval. */
  base: number;
  /** When refused: microseconds until the cost asked for fits. */
  retryUs: number;
}

export interface RateLeaseStore {
  /**
   * Atomically takes up to `want` of the key's free cells — no more than a share that shrinks
   * with the free budget, down to `cost` — or none. `held` cells this instance still holds
   * up to its lease's last slot `end` count toward the cost when the key's TAT is still `end`
   * (nobody leased since: the new cells continue them); the grant's `base` is then `end`.
   */
  take(key: string, limit: number, windowMs: number, nowUs: number, cost: number, want: number, end?: number, held?: number): Promise<RateGrant>;
  /** Gives back the cells after `last` if the key's TAT is still `end` (nobody leased since). */
  giveBack(key: string, end: number, last: number, nowUs: number): Promise<void>;
}

interface RateLease {
  limit: number;
  windowMs: number;
  interval: number;
  /** Slot of the next unused leased cell (µs); a cell is usable while its slot is in the future. */
  next: number;
  /** Slot of the last leased cell: the TAT this lease left in Redis. */
  end: number;
  /** Refused by Redis: until then (µs, when the cost refused fits) a cost that does not fit on `blockedTat` is answered locally. */
  blockedUntil: number;
  /**
   * The stored TAT at that refusal (µs). Other instances' leases only move it later, so a
   * cost c cannot fit before blockedTat + c × interval − τ: a smaller cost than the one
   * refused may fit sooner (it is asked of Redis then), a larger one no sooner.
   */
  blockedTat: number;
  /** The lease left less than half the limit free: worth giving back when idle. */
  scarce: boolean;
  /** Cells the next lease asks for, and when (caller's clock, µs) the current one was taken. */
  size: number;
  leasedAt: number;
  pending: Promise<void> | undefined;
  /** performance.now() of the last decision, and the caller's clock then (µs). */
  usedAt: number;
  lastNow: number;
}

/**
 * Rate limiting by leased GCRA cells. Redis keeps one number per key, the theoretical
 * arrival time (TAT); a lease advances it by n emission intervals, granting the n cells
 * whose slots lie between the old and the new TAT. A cell is spent only before its slot time
 * passes, so every admitted request at time t holds a distinct slot in (t, t + τ] — the same
 * invariant single-instance GCRA keeps — and no window ever sees more than GCRA allows.
 * Unspent cells simply expire with time; `giveBack` returns the unexpired ones of an idle
 * lease near the limit when no other instance has leased since.
 *
 * The local state per key is one small object; the sweeper drops it once its cells have
 * expired and any refusal has run out.
 */
export class RateLeases {
  private readonly leases = new Map<string, RateLease>();
  private readonly sweeper: ReturnType<typeof setInterval>;
  private readonly idleMs: number;

  constructor(
    private readonly store: RateLeaseStore,
    opts: { idleMs?: number; sweepMs?: number } = {},
  ) {
    this.idleMs = opts.idleMs ?? 1000;
    this.sweeper = setInterval(() => void this.sweep(), opts.sweepMs ?? 1000);
    this.sweeper.unref?.();
  }

  /** Keys with local state (tests and the benchmark read it). */
  size(): number {
    return this.leases.size;
  }

  /** Decides in process (no promise) while the lease lasts or a refusal holds; otherwise after a new lease. */
  decide(key: string, limit: number, windowMs: number, nowMs: number, cost = 1): MaybePromise<RateDecision> {
    const now = Math.round(nowMs * 1000);
    const lease = this.lease(key, limit, windowMs, now);
    return this.local(lease, now, cost) ?? this.decideAfterRefill(key, limit, windowMs, now, cost, lease);
  }

  private lease(key: string, limit: number, windowMs: number, now: number): RateLease {
    let lease = this.leases.get(key);
    if (lease !== undefined && (lease.limit !== limit || lease.windowMs !== windowMs)) {
      // The key's limit changed: its cells were cut for another interval; they expire unused.
      this.leases.delete(key);
      lease = undefined;
    }
    if (lease === undefined) {
      lease = emptyLease(limit, windowMs);
      this.leases.set(key, lease);
    }
    lease.usedAt = performance.now();
    lease.lastNow = now;
    return lease;
  }

  /**
   * The cells this lease holds first (a refusal of a larger cost leaves them usable), then a
   * refusal without Redis when the cost cannot fit on the TAT Redis last refused from.
   */
  private local(lease: RateLease, now: number, cost: number): RateDecision | undefined {
    const spent = spend(lease, now, cost);
    if (spent !== undefined || now >= lease.blockedUntil) return spent;
    // Cells held up to the TAT Redis refused from would continue into the next lease.
    const held = lease.end === lease.blockedTat ? heldCells(lease, now) : 0;
    const fitsAt = lease.blockedTat + (cost - held - lease.limit) * lease.interval;
    return now < fitsAt ? refused(lease, now, fitsAt) : undefined;
  }

  private async decideAfterRefill(key: string, limit: number, windowMs: number, now: number, cost: number, lease: RateLease): Promise<RateDecision> {
    for (;;) {
      // One lease request per key at a time; concurrent requests wait for it and decide again.
      lease.pending ??= this.refill(key, lease, now, cost);
      await lease.pending;
      lease = this.lease(key, limit, windowMs, now);
      const decision = this.local(lease, now, cost);
      if (decision !== undefined) return decision;
    }
  }

  private async refill(key: string, lease: RateLease, now: number, cost: number): Promise<void> {
    try {
      // Slow start: a key's first lease is one cell; leases that last under a second double,
      // those lasting over four halve. A busy key settles near a second of traffic per lease,
      // a quiet one asks for about what it spends.
      if (lease.leasedAt > 0) {
        const lasted = now - lease.leasedAt;
        if (lasted < 1_000_000) lease.size = Math.min(MAX_RATE_LEASE, lease.size * 2);
        else if (lasted > 4_000_000) lease.size = Math.max(1, Math.floor(lease.size / 2));
      }
      const held = heldCells(lease, now);
      const grant = await this.store.take(key, lease.limit, lease.windowMs, now, cost, Math.max(cost, lease.size), held > 0 ? lease.end : 0, held);
      if (grant.granted > 0) {
        // The new cells continue the held ones when nobody leased since (base = end); otherwise
        // the cells left (fewer than `cost`) are abandoned: they expire.
        if (held === 0 || grant.base !== lease.end) lease.next = grant.base + lease.interval;
        lease.end = grant.base + grant.granted * lease.interval;
        lease.blockedUntil = 0;
        lease.leasedAt = now;
        lease.scarce = (lease.interval * lease.limit - (lease.end - now)) / lease.interval < lease.limit / 2;
      } else {
        lease.blockedUntil = now + Math.max(1, grant.retryUs);
        lease.blockedTat = grant.base;
      }
    } finally {
      lease.pending = undefined;
    }
  }

  /**
   * Drops spent state and gives back leases near their limit idle for `idleMs`. The caller's
   * clock is estimated from its last reading (or given: tests).
   */
  sweep(idleMs = this.idleMs, nowMs?: number): Promise<void> {
    const real = performance.now();
    const returns: Promise<void>[] = [];
    for (const [key, lease] of this.leases) {
      if (lease.pending) continue;
      const idle = real - lease.usedAt;
      const now = nowMs !== undefined ? Math.round(nowMs * 1000) : lease.lastNow + Math.round(idle * 1000);
      const unused = firstUnused(lease, now) <= lease.end;
      if (!unused && now >= lease.blockedUntil) this.leases.delete(key);
      else if (unused && lease.scarce && idle >= idleMs) {
        this.leases.delete(key);
        returns.push(this.giveBack(key, lease, now));
      }
    }
    return Promise.all(returns).then(() => {});
  }

  private giveBack(key: string, lease: RateLease, now: number): Promise<void> {
    const next = firstUnused(lease, now);
    if (next > lease.end) return Promise.resolve();
    return this.store.giveBack(key, lease.end, next - lease.interval, now).catch(() => {});
  }

  /** Forgets a key's local state (its cells expire in Redis). */
  forget(key: string): void {
    this.leases.delete(key);
  }

  /** Stops the sweeper and gives back every unused cell it still can. */
  async close(nowMs?: number): Promise<void> {
    clearInterval(this.sweeper);
    const real = performance.now();
    const leases = [...this.leases];
    this.leases.clear();
    await Promise.allSettled(
      leases.map(([key, lease]) => this.giveBack(key, lease, nowMs !== undefined ? Math.round(nowMs * 1000) : lease.lastNow + Math.round((real - lease.usedAt) * 1000))),
    );
  }
}

/** The largest rate lease, in cells (Redis' share of the free budget bounds it first). */
const MAX_RATE_LEASE = 1 << 20;

function emptyLease(limit: number, windowMs: number): RateLease {
  return {
    limit,
    windowMs,
    interval: Math.ceil((windowMs * 1000) / limit),
    next: Number.POSITIVE_INFINITY,
    end: Number.NEGATIVE_INFINITY,
    blockedUntil: 0,
    blockedTat: 0,
    scarce: false,
    size: 1,
    leasedAt: 0,
    pending: undefined,
    usedAt: 0,
    lastNow: 0,
  };
}

/** Leased cells still usable at `now`. */
function heldCells(lease: RateLease, now: number): number {
  const next = firstUnused(lease, now);
  return next > lease.end ? 0 : Math.floor((lease.end - next) / lease.interval) + 1;
}

/** The slot of the first cell still usable at `now`: cells whose slot has passed are gone. */
function firstUnused(lease: RateLease, now: number): number {
  if (lease.next > now) return lease.next;
  return lease.next + (Math.floor((now - lease.next) / lease.interval) + 1) * lease.interval;
}

function spend(lease: RateLease, now: number, cost: number): RateDecision | undefined {
  const next = firstUnused(lease, now);
  if (next + (cost - 1) * lease.interval > lease.end) return undefined;
  lease.next = next + cost * lease.interval;
  // What one instance's GCRA would answer with its TAT at the last cell spent (gcra.ts).
  const tat = lease.next - lease.interval;
  return {
    allowed: true,
    limit: lease.limit,
    remaining: Math.max(0, Math.floor((lease.interval * lease.limit - (tat - now)) / lease.interval)),
    resetMs: Math.max(0, tat - now) / 1000,
    retryAfterMs: 0,
  };
}

/** A local refusal: what one instance's GCRA would answer on the TAT Redis refused from (free cells, the lease's own included). */
function refused(lease: RateLease, now: number, fitsAt: number): RateDecision {
  const free = Math.max(0, Math.floor((lease.interval * lease.limit - (lease.blockedTat - now)) / lease.interval));
  return {
    allowed: false,
    limit: lease.limit,
    remaining: free + heldCells(lease, now),
    resetMs: Math.max(0, lease.blockedTat - now) / 1000,
    retryAfterMs: (fitsAt - now) / 1000,
  };
}

/** Redis' answer to a counter lease request. */
export interface CountGrant {
  /** Units granted: at least the cost, or 0 (the cap is reached). */
  granted: number;
  /** The counter after the call: units spent or leased by every instance. */
  value: number;
}

export interface CountLeaseStore {
  /** Atomically reserves min(want, a share of what is left under the cap), at least `cost`, or nothing. */
  reserve(key: string, want: number, cost: number, cap: number, ttlMs: number): Promise<CountGrant>;
  /** Returns unused units to the counter. */
  release(key: string, units: number): Promise<void>;
}

interface CountLease {
  cap: number;
  ttlMs: number;
  /** Units leased and not yet spent. */
  left: number;
  /** The counter as of the last lease: spent + leased by every instance. */
  value: number;
  /** Units the next lease asks for: doubles while leases run out within a second, halves when they last long. */
  size: number;
  leasedAt: number;
  /** A cost of `refusedCost` or more did not fit: refused locally until then (performance.now() ms), then asked again. */
  fullUntil: number;
  refusedCost: number;
  pending: Promise<void> | undefined;
  usedAt: number;
}

/** The largest counter lease: what a crashed instance can strand is at most this, per key. */
export const MAX_COUNT_LEASE = 1024;
/** After the cap is reached, Redis is asked again this often (units other instances give back). */
const FULL_RECHECK_MS = 1000;

/**
 * Capped counters (monthly quotas) by leased blocks of units. Redis' counter holds what was
 * spent plus what is leased, never more than the cap, so no instance can spend a unit
 * another holds. Lease sizes adapt to the key's traffic (a key making one request a minute
 * leases one unit, the exact per-request behaviour), so unused units are few; they go back
 * when a lease sits idle and at shutdown. A crash strands at most MAX_COUNT_LEASE units.
 */
export class CountLeases {
  private readonly leases = new Map<string, CountLease>();
  private readonly sweeper: ReturnType<typeof setInterval>;
  private readonly idleMs: number;

  constructor(
    private readonly store: CountLeaseStore,
    opts: { idleMs?: number; sweepMs?: number } = {},
  ) {
    this.idleMs = opts.idleMs ?? 2000;
    this.sweeper = setInterval(() => void this.sweep(), opts.sweepMs ?? 1000);
    this.sweeper.unref?.();
  }

  size(): number {
    return this.leases.size;
  }

  /** Spends from the local block when it holds enough (no promise), otherwise after a new lease. */
  consume(key: string, cost: number, cap: number, ttlMs: number): MaybePromise<CappedIncrement> {
    const lease = this.leases.get(key);
    if (lease !== undefined && lease.cap === cap) {
      const answer = spendUnits(lease, cost);
      if (answer !== undefined) return answer;
    }
    return this.consumeAfterRefill(key, cost, cap, ttlMs);
  }

  private async consumeAfterRefill(key: string, cost: number, cap: number, ttlMs: number): Promise<CappedIncrement> {
    for (;;) {
      let lease = this.leases.get(key);
      if (lease !== undefined && lease.cap !== cap) {
        this.leases.delete(key);
        if (lease.left > 0) await this.store.release(key, lease.left).catch(() => {});
        lease = undefined;
      }
      if (lease === undefined) {
        lease = { cap, ttlMs, left: 0, value: 0, size: 1, leasedAt: 0, fullUntil: 0, refusedCost: 0, pending: undefined, usedAt: 0 };
        this.leases.set(key, lease);
      }
      const answer = spendUnits(lease, cost);
      if (answer !== undefined) return answer;
      lease.pending ??= this.refill(key, lease, cost);
      await lease.pending;
    }
  }

  private async refill(key: string, lease: CountLease, cost: number): Promise<void> {
    try {
      // Units this instance holds count toward the cost: Redis is asked for the rest only, so
      // a cost that fits with them near the cap is not refused for want of the whole of it.
      const need = cost - lease.left;
      const real = performance.now();
      if (lease.leasedAt > 0) {
        const lasted = real - lease.leasedAt;
        if (lasted < 1000) lease.size = Math.min(MAX_COUNT_LEASE, lease.size * 2);
        else if (lasted > 5000) lease.size = Math.max(1, Math.floor(lease.size / 2));
      }
      const grant = await this.store.reserve(key, Math.max(need, lease.size), need, lease.cap, lease.ttlMs);
      lease.value = grant.value;
      if (grant.granted > 0) {
        lease.left += grant.granted;
        lease.leasedAt = performance.now();
        lease.fullUntil = 0;
      } else {
        lease.fullUntil = performance.now() + FULL_RECHECK_MS;
        lease.refusedCost = cost;
      }
    } finally {
      lease.pending = undefined;
    }
  }

  /**
   * Returns spent units: into the key's lease when this instance holds one, where the next
   * request spends them without Redis (and an idle sweep or the close returns them), or else
   * straight to the shared counter.
   */
  giveBack(key: string, units: number): MaybePromise<void> {
    const lease = this.leases.get(key);
    if (lease !== undefined) {
      lease.left += units;
      return;
    }
    return this.store.release(key, units);
  }

  /** Gives back the units of leases idle for `idleMs` and drops their state. */
  sweep(idleMs = this.idleMs): Promise<void> {
    const real = performance.now();
    const returns: Promise<void>[] = [];
    for (const [key, lease] of this.leases) {
      if (lease.pending || real - lease.usedAt < idleMs) continue;
      this.leases.delete(key);
      if (lease.left > 0) returns.push(this.store.release(key, lease.left).catch(() => {}));
    }
    return Promise.all(returns).then(() => {});
  }

  forget(key: string): void {
    this.leases.delete(key);
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    const leases = [...this.leases];
    this.leases.clear();
    await Promise.allSettled(leases.filter(([, l]) => l.left > 0).map(([key, l]) => this.store.release(key, l.left)));
  }
}

/** Spends `cost` units of a counter lease, or refuses while the cap is known reached; undefined: Redis must be asked. */
function spendUnits(lease: CountLease, cost: number): CappedIncrement | undefined {
  const real = performance.now();
  lease.usedAt = real;
  if (lease.left >= cost) {
    lease.left -= cost;
    return { ok: true, value: lease.value - lease.left };
  }
  if (real < lease.fullUntil && cost >= lease.refusedCost) return { ok: false, value: lease.value - lease.left };
  return undefined;
}
