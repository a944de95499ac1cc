import { randomBytes } from "node:crypto";
import { Redis, type RedisOptions } from "ioredis";
import type { CappedIncrement, Lock, RateDecision, SharedState, Unsubscribe } from "./types.ts";

// The same arithmetic as gcra.ts, in whole microseconds. %.17g writes the integer TAT
// exactly (Lua's tostring keeps 14 digits, and a µs timestamp has 16).
const GCRA_LUA = `
local limit = tonumber(ARGV[1])
local now = math.floor(tonumber(ARGV[3]) * 1000 + 0.5)
local cost = tonumber(ARGV[4])
local interval = math.ceil(tonumber(ARGV[2]) * 1000 / limit)
local tolerance = interval * limit
local tat = tonumber(redis.call('GET', KEYS[1]))
local base = now
if tat and tat > now then base = tat end
local newTat = base + interval * cost
if newTat - now > tolerance then
  local remaining = math.floor((tolerance - (base - now)) / interval)
  if remaining < 0 then remaining = 0 end
  return {0, remaining, base - now, newTat - tolerance - now}
end
redis.call('SET', KEYS[1], string.format('%.17g', newTat), 'PX', math.ceil((newTat - now) / 1000) + 1000)
return {1, math.floor((tolerance - (newTat - now)) / interval), newTat - now, 0}
`;

const INCR_LUA = `
local v = redis.call('INCRBY', KEYS[1], ARGV[1])
if v == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v
`;

const INCR_CAPPED_LUA = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local by = tonumber(ARGV[1])
if cur + by > tonumber(ARGV[2]) then return {0, cur} end
local v = redis.call('INCRBY', KEYS[1], by)
if cur == 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return {1, v}
`;

const UNLOCK_LUA = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;

interface Scripts {
  kpGcra(key: string, limit: number, window: number, now: number, cost: number): Promise<[number, number, number, number]>;
  kpIncr(key: string, by: number, ttl: number): Promise<number>;
  kpIncrCapped(key: string, by: number, cap: number, ttl: number): Promise<[number, number]>;
  kpUnlock(key: string, token: string): Promise<number>;
}

export class RedisUnavailable extends Error {
  override name = "RedisUnavailable";
}

export interface RedisStateOptions {
  /** Prepended to every key and channel, so tenants of one Redis (or test files) stay apart. */
  prefix?: string;
  commandTimeoutMs?: number;
}

/**
 * Shared state in Redis. Fails fast by design: no offline queue, a short command timeout
 * and one retry, so a Redis outage surfaces as an error the caller's policy handles instead
 * of requests piling up. Scripts go through ioredis `defineCommand` (EVALSHA, EVAL once on
 * NOSCRIPT); auto-pipelining batches the commands of concurrent requests.
 */
export class RedisState implements SharedState {
  readonly kind = "redis" as const;
  private readonly lostHandlers = new Set<() => void>();
  private readonly handlers = new Map<string, Set<(message: string) => void>>();
  private subscriberWasReady = false;

  private constructor(
    private readonly client: Redis & Scripts,
    private readonly subscriber: Redis,
    private readonly prefix: string,
  ) {
    subscriber.on("message", (channel: string, message: string) => {
      for (const h of this.handlers.get(channel) ?? []) h(message);
    });
    // While the subscriber is away, published evictions are lost: tell the listeners when it
    // drops and again when it is back (messages sent in between never arrived).
    subscriber.on("close", () => {
      if (this.subscriberWasReady) this.notifyLost();
    });
    subscriber.on("ready", () => {
      if (this.subscriberWasReady) this.notifyLost();
      this.subscriberWasReady = true;
    });
  }

  static async connect(url: string, opts: RedisStateOptions = {}): Promise<RedisState> {
    const base: RedisOptions = {
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      commandTimeout: opts.commandTimeoutMs ?? 1000,
      maxRetriesPerRequest: 1,
      connectTimeout: 3000,
      lazyConnect: true,
      retryStrategy: (times) => Math.min(times * 200, 2000),
    };
    const client = new Redis(url, base) as Redis & Scripts;
    client.defineCommand("kpGcra", { numberOfKeys: 1, lua: GCRA_LUA });
    client.defineCommand("kpIncr", { numberOfKeys: 1, lua: INCR_LUA });
    client.defineCommand("kpIncrCapped", { numberOfKeys: 1, lua: INCR_CAPPED_LUA });
    client.defineCommand("kpUnlock", { numberOfKeys: 1, lua: UNLOCK_LUA });
    // The subscriber keeps its offline queue: SUBSCRIBE issued while it reconnects must wait.
    const subscriber = new Redis(url, { ...base, enableOfflineQueue: true, commandTimeout: undefined, maxRetriesPerRequest: null });
    // Connection errors are reported through commands and readiness, not as unhandled events.
    client.on("error", () => {});
    subscriber.on("error", () => {});
    try {
      await Promise.all([client.connect(), subscriber.connect()]);
      await client.ping();
    } catch (err) {
      client.disconnect();
      subscriber.disconnect();
      throw new RedisUnavailable(`cannot reach REDIS_URL (${(err as Error).message})`);
    }
    const state = new RedisState(client, subscriber, opts.prefix ?? "keyport:");
    state.subscriberWasReady = true;
    return state;
  }

  private k(key: string): string {
    return this.prefix + key;
  }

  private notifyLost(): void {
    for (const h of this.lostHandlers) h();
  }

  async rateLimit(key: string, limit: number, windowMs: number, now: number, cost = 1): Promise<RateDecision> {
    const [allowed, remaining, resetMs, retryAfterMs] = await this.client.kpGcra(this.k(key), limit, windowMs, now, cost);
    return {
      allowed: allowed === 1,
      limit,
      remaining,
      resetMs: Math.max(0, resetMs / 1000),
      retryAfterMs: Math.max(0, retryAfterMs / 1000),
    };
  }

  async incr(key: string, by: number, ttlMs: number): Promise<number> {
    return this.client.kpIncr(this.k(key), by, ttlMs);
  }

  async incrCapped(key: string, by: number, cap: number, ttlMs: number): Promise<CappedIncrement> {
    const [ok, value] = await this.client.kpIncrCapped(this.k(key), by, cap, ttlMs);
    return { ok: ok === 1, value };
  }

  async get(key: string): Promise<number> {
    const v = await this.client.get(this.k(key));
    return v === null ? 0 : Number(v);
  }

  async del(key: string): Promise<void> {
    await this.client.del(this.k(key));
  }

  async publish(channel: string, message: string): Promise<void> {
    await this.client.publish(this.k(channel), message);
  }

  async subscribe(channel: string, handler: (message: string) => void): Promise<Unsubscribe> {
    const full = this.k(channel);
    let set = this.handlers.get(full);
    if (!set) {
      this.handlers.set(full, (set = new Set()));
      await this.subscriber.subscribe(full);
    }
    set.add(handler);
    return async () => {
      set.delete(handler);
      if (set.size === 0) {
        this.handlers.delete(full);
        await this.subscriber.unsubscribe(full).catch(() => {});
      }
    };
  }

  onMessagesMaybeLost(handler: () => void): void {
    this.lostHandlers.add(handler);
  }

  async tryLock(name: string, ttlMs: number): Promise<Lock | null> {
    const token = randomBytes(16).toString("hex");
    const key = this.k(`lock:${name}`);
    const ok = await this.client.set(key, token, "PX", ttlMs, "NX");
    if (ok !== "OK") return null;
    return {
      release: async () => {
        await this.client.kpUnlock(key, token);
      },
    };
  }

  async ping(): Promise<void> {
    await this.client.ping();
  }

  /** Test hook: drop the subscriber's socket, as a network fault would. */
  dropSubscriber(): void {
    this.subscriber.disconnect(true);
  }

  /** Deletes every key under this state's prefix (test teardown). */
  async purge(): Promise<void> {
    let cursor = "0";
    do {
      const [next, keys] = await this.client.scan(cursor, "MATCH", `${this.prefix}*`, "COUNT", 500);
      if (keys.length) await this.client.del(...keys);
      cursor = next;
    } while (cursor !== "0");
  }

  async close(): Promise<void> {
    this.lostHandlers.clear();
    await Promise.allSettled([this.client.quit(), this.subscriber.quit()]);
    this.client.disconnect();
    this.subscriber.disconnect();
  }
}
