import type { Logger } from "../ops/log.ts";
import { MemoryState } from "./memory.ts";
import type { RedisState } from "./redis.ts";
import type { CappedIncrement, Lock, MaybePromise, RateDecision, SharedState, Unsubscribe } from "./types.ts";

export type RedisErrorPolicy = "local" | "allow" | "deny";

export interface ResilienceOptions {
  /** What rate limits and quotas do while Redis is away (RATE_LIMIT_ON_REDIS_ERROR). */
  policy: RedisErrorPolicy;
  /** Instances sharing the load: the local fallback allows limit / instanceCount each. */
  instanceCount: number;
  log: Logger;
  clock?: { now(): number };
  /** How long the breaker stays open before one call probes Redis again. */
  retryAfterMs?: number;
}

/**
 * Redis behind a circuit breaker. A failed call opens the breaker: for `retryAfterMs` no
 * call goes to Redis at all (no request waits on a dead connection), rate limits and quotas
 * follow the configured policy — by default an in-process limiter at the key's limit divided
 * by the instance count, so the cluster as a whole stays near the limit — and then one call
 * probes Redis; success closes the breaker by itself. Calls whose callers have their own
 * fallback (epoch, publish, locks) fail fast instead.
 */
export class ResilientState implements SharedState {
  readonly kind = "redis" as const;
  private readonly local: MemoryState;
  private openUntil = 0;
  private degradedSince: number | null = null;
  private readonly retryAfterMs: number;
  private readonly clock: { now(): number };

  constructor(
    readonly inner: RedisState,
    private readonly opts: ResilienceOptions,
  ) {
    this.clock = opts.clock ?? Date;
    this.local = new MemoryState(this.clock);
    this.retryAfterMs = opts.retryAfterMs ?? 1000;
  }

  /** Since when Redis has been failing (null while healthy); /readyz reports it. */
  degraded(): number | null {
    return this.degradedSince;
  }

  private available(): boolean {
    // 0 while closed: the request path reads no clock when Redis is healthy.
    return this.openUntil === 0 || this.clock.now() >= this.openUntil;
  }

  private failed(err: unknown): void {
    const now = this.clock.now();
    this.openUntil = now + this.retryAfterMs;
    if (this.degradedSince === null) {
      this.degradedSince = now;
      this.opts.log.error("redis unavailable: shared state degraded", { policy: this.opts.policy, error: (err as Error)?.message });
    }
  }

  private succeeded(): void {
    this.openUntil = 0;
    if (this.degradedSince !== null) {
      this.opts.log.info("redis is back: shared state restored", { degradedMs: this.clock.now() - this.degradedSince });
      this.degradedSince = null;
    }
  }

  /**
   * Runs `call` on Redis unless the breaker is open; `fallback` answers when it cannot. A call
   * that answers without I/O (a lease) stays synchronous.
   */
  private guarded<T>(call: () => MaybePromise<T>, fallback: () => MaybePromise<T>): MaybePromise<T> {
    if (!this.available()) return fallback();
    let result: MaybePromise<T>;
    try {
      result = call();
    } catch (err) {
      this.failed(err);
      return fallback();
    }
    if (!(result instanceof Promise)) return result;
    return result.then(
      (value) => {
        this.succeeded();
        return value;
      },
      (err: unknown) => {
        this.failed(err);
        return fallback();
      },
    );
  }

  /** For calls without a fallback: fail fast while the breaker is open. */
  private async direct<T>(call: () => Promise<T>): Promise<T> {
    if (!this.available()) throw new Error("redis unavailable (circuit open)");
    try {
      const result = await call();
      this.succeeded();
      return result;
    } catch (err) {
      this.failed(err);
      throw err;
    }
  }

  rateLimit(key: string, limit: number, windowMs: number, now: number, cost = 1): MaybePromise<RateDecision> {
    return this.guarded(
      () => this.inner.rateLimit(key, limit, windowMs, now, cost),
      () => {
        switch (this.opts.policy) {
          case "allow":
            return { allowed: true, limit, remaining: limit, resetMs: 0, retryAfterMs: 0 };
          case "deny":
            return { allowed: false, limit, remaining: 0, resetMs: windowMs, retryAfterMs: this.retryAfterMs };
          default: {
            const share = Math.max(1, Math.floor(limit / this.opts.instanceCount));
            const d = this.local.rateLimit(key, share, windowMs, now, cost);
            return { ...d, limit };
          }
        }
      },
    );
  }

  async incrCapped(key: string, by: number, cap: number, ttlMs: number): Promise<CappedIncrement> {
    return this.guarded(
      () => this.inner.incrCapped(key, by, cap, ttlMs),
      () => this.cappedFallback(cap, (share) => this.local.incrCapped(key, by, share, ttlMs)),
    );
  }

  /** Quotas spent through leases (RedisState.consume), with the same outage policy as incrCapped. */
  consume(key: string, cost: number, cap: number, ttlMs: number): MaybePromise<CappedIncrement> {
    return this.guarded(
      () => this.inner.consume(key, cost, cap, ttlMs),
      () => this.cappedFallback(cap, (share) => this.local.consume(key, cost, share, ttlMs)),
    );
  }

  /**
   * While Redis is away the units go back to the local fallback counter (where they were
   * taken if the breaker was open then; otherwise there is nothing there to lower).
   */
  giveBack(key: string, units: number): MaybePromise<void> {
    return this.guarded(
      () => this.inner.giveBack(key, units),
      () => this.local.giveBack(key, units),
    );
  }

  /** A capped counter while Redis is away: the policy, or this instance's share of the cap counted locally. */
  private cappedFallback(cap: number, local: (share: number) => MaybePromise<CappedIncrement>): MaybePromise<CappedIncrement> {
    if (this.opts.policy === "allow") return { ok: true, value: 0 };
    if (this.opts.policy === "deny") return { ok: false, value: cap };
    return local(Math.max(1, Math.floor(cap / this.opts.instanceCount)));
  }

  incr(key: string, by: number, ttlMs: number): Promise<number> {
    return this.direct(() => this.inner.incr(key, by, ttlMs));
  }

  get(key: string): Promise<number> {
    return this.direct(() => this.inner.get(key));
  }

  del(key: string): Promise<void> {
    return this.direct(() => this.inner.del(key));
  }

  publish(channel: string, message: string): Promise<void> {
    return this.direct(() => this.inner.publish(channel, message));
  }

  subscribe(channel: string, handler: (message: string) => void): Promise<Unsubscribe> {
    return this.inner.subscribe(channel, handler);
  }

  onMessagesMaybeLost(handler: () => void): void {
    this.inner.onMessagesMaybeLost(handler);
  }

  tryLock(name: string, ttlMs: number): Promise<Lock | null> {
    return this.direct(() => this.inner.tryLock(name, ttlMs));
  }

  async ping(): Promise<void> {
    // Readiness asks Redis itself, whatever the breaker says, and a success closes it.
    try {
      await this.inner.ping();
      this.succeeded();
      this.openUntil = 0;
    } catch (err) {
      this.failed(err);
      throw err;
    }
  }

  commandCount(): number {
    const inner = this.inner as unknown as { commandCount?: () => number };
    return inner.commandCount ? inner.commandCount() : 0;
  }

  async close(): Promise<void> {
    await this.local.close();
    await this.inner.close();
  }
}
