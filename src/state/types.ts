/**
 * Shared state: what several Keyport instances must agree on (rate limits, quota counters,
 * cache evictions, once-per-cluster timers). In-process for one instance, Redis for many.
 * Both implementations pass the same contract suite (test/state/contract.test.ts).
 */
/**
 * A value now, or later. The request path's two shared-state calls answer synchronously when
 * they can decide in process (always in memory; from a lease in service mode), so a request
 * that needs no I/O never waits on a promise.
 */
export type MaybePromise<T> = T | Promise<T>;

export interface RateDecision {
  allowed: boolean;
  limit: number;
  /** Requests still allowed right now. */
  remaining: number;
  /** Milliseconds until the limiter is fully replenished. */
  resetMs: number;
  /** Milliseconds until the next request would be allowed (0 when allowed). */
  retryAfterMs: number;
}

export interface CappedIncrement {
  ok: boolean;
  /** The counter's value after the call (unchanged when not ok). */
  value: number;
}

export interface Lock {
  release(): Promise<void>;
}

export type Unsubscribe = () => Promise<void>;

export interface SharedState {
  readonly kind: "memory" | "redis";
  /**
   * GCRA: `limit` requests per `windowMs`, bursting to `limit`; O(1) memory per key
   * (one theoretical arrival time). `now` is passed in so every instance and every test
   * decides on the same clock. Across instances (Redis) decisions are made on leased cells
   * (lease.ts): never more admitted than one instance's GCRA would, Redis reached rarely far
   * from the limit and never for a key answered "over the limit" until its retry time.
   */
  rateLimit(key: string, limit: number, windowMs: number, now: number, cost?: number): MaybePromise<RateDecision>;
  /** Adds `by` to a counter that expires `ttlMs` after its creation; returns the new value. */
  incr(key: string, by: number, ttlMs: number): Promise<number>;
  /** Adds `by` only if the result stays ≤ cap; atomic across instances. */
  incrCapped(key: string, by: number, cap: number, ttlMs: number): Promise<CappedIncrement>;
  /**
   * Spends `cost` units of a budget capped at `cap` (a monthly quota): never more than `cap`
   * spent across instances. Unlike incrCapped, Redis may reserve units ahead for this
   * instance (lease.ts), so `get` on the key can read up to the unspent reservations above
   * what was spent until they are given back (when idle, at close); `value` is this
   * instance's view of what was spent.
   */
  consume(key: string, cost: number, cap: number, ttlMs: number): MaybePromise<CappedIncrement>;
  /**
   * Returns `units` that `consume` spent on `key` (a request admitted, then failed or refused
   * by a later step), so the counter holds only what was used: into this instance's lease of
   * the key when it holds one (no I/O), otherwise to the shared counter. Never below zero; a
   * counter that has expired is left alone.
   */
  giveBack(key: string, units: number): MaybePromise<void>;
  get(key: string): Promise<number>;
  del(key: string): Promise<void>;
  publish(channel: string, message: string): Promise<void>;
  subscribe(channel: string, handler: (message: string) => void): Promise<Unsubscribe>;
  /** Called when messages may have been lost (the subscriber connection dropped). */
  onMessagesMaybeLost(handler: () => void): void;
  /** Returns a lock held until released or until `ttlMs` passes, or null if another holds it. */
  tryLock(name: string, ttlMs: number): Promise<Lock | null>;
  ping(): Promise<void>;
  /** Commands sent to a remote store since start (0 in process); /metrics and the benchmark read it. */
  commandCount(): number;
  close(): Promise<void>;
}
