import { gcra } from "./gcra.ts";
import type { CappedIncrement, Lock, RateDecision, SharedState, Unsubscribe } from "./types.ts";

interface Counter {
  value: number;
  expiresAt: number;
}

/** Shared state for a single instance: plain maps, swept of expired entries once a minute. */
export class MemoryState implements SharedState {
  readonly kind = "memory" as const;
  private readonly tats = new Map<string, number>();
  private readonly counters = new Map<string, Counter>();
  private readonly locks = new Map<string, { token: symbol; expiresAt: number }>();
  private readonly channels = new Map<string, Set<(message: string) => void>>();
  private readonly sweeper: ReturnType<typeof setInterval>;

  constructor(private readonly clock: { now(): number } = Date) {
    this.sweeper = setInterval(() => this.sweep(), 60_000);
    this.sweeper.unref?.();
  }

  /** Entries kept (limiter states and counters); the benchmark reads it for bytes per key. */
  size(): number {
    return this.tats.size + this.counters.size;
  }

  sweep(): void {
    const now = this.clock.now();
    for (const [k, tat] of this.tats) if (tat <= now * 1000) this.tats.delete(k);
    for (const [k, c] of this.counters) if (c.expiresAt <= now) this.counters.delete(k);
    for (const [k, l] of this.locks) if (l.expiresAt <= now) this.locks.delete(k);
  }

  rateLimit(key: string, limit: number, windowMs: number, now: number, cost = 1): RateDecision {
    const result = gcra(this.tats.get(key), limit, windowMs, now, cost);
    if (result.tat !== undefined) this.tats.set(key, result.tat);
    return result.decision;
  }

  private live(key: string): Counter | undefined {
    const c = this.counters.get(key);
    if (c && c.expiresAt <= this.clock.now()) {
      this.counters.delete(key);
      return undefined;
    }
    return c;
  }

  async incr(key: string, by: number, ttlMs: number): Promise<number> {
    const c = this.live(key);
    if (c) return (c.value += by);
    this.counters.set(key, { value: by, expiresAt: this.clock.now() + ttlMs });
    return by;
  }

  async incrCapped(key: string, by: number, cap: number, ttlMs: number): Promise<CappedIncrement> {
    return this.incrCappedNow(key, by, cap, ttlMs);
  }

  private incrCappedNow(key: string, by: number, cap: number, ttlMs: number): CappedIncrement {
    const c = this.live(key);
    const current = c?.value ?? 0;
    if (current + by > cap) return { ok: false, value: current };
    if (c) return { ok: true, value: (c.value += by) };
    this.counters.set(key, { value: by, expiresAt: this.clock.now() + ttlMs });
    return { ok: true, value: by };
  }

  /** In one process there is nothing to lease: exactly incrCapped. */
  consume(key: string, cost: number, cap: number, ttlMs: number): CappedIncrement {
    return this.incrCappedNow(key, cost, cap, ttlMs);
  }

  giveBack(key: string, units: number): void {
    const c = this.live(key);
    if (c) c.value = Math.max(0, c.value - units);
  }

  async get(key: string): Promise<number> {
    return this.live(key)?.value ?? 0;
  }

  async del(key: string): Promise<void> {
    this.counters.delete(key);
    this.tats.delete(key);
  }

  async publish(channel: string, message: string): Promise<void> {
    for (const handler of this.channels.get(channel) ?? []) handler(message);
  }

  async subscribe(channel: string, handler: (message: string) => void): Promise<Unsubscribe> {
    let set = this.channels.get(channel);
    if (!set) this.channels.set(channel, (set = new Set()));
    set.add(handler);
    return async () => void set.delete(handler);
  }

  onMessagesMaybeLost(): void {
    // In one process a published message cannot be lost.
  }

  async tryLock(name: string, ttlMs: number): Promise<Lock | null> {
    const now = this.clock.now();
    const held = this.locks.get(name);
    if (held && held.expiresAt > now) return null;
    const token = Symbol(name);
    this.locks.set(name, { token, expiresAt: now + ttlMs });
    return {
      release: async () => {
        if (this.locks.get(name)?.token === token) this.locks.delete(name);
      },
    };
  }

  async ping(): Promise<void> {}

  commandCount(): number {
    return 0;
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    this.channels.clear();
  }
}
