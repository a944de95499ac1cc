import { randomBytes } from "node:crypto";
import { Redis, type RedisOptions } from "ioredis";
import { CountLeases, RateLeases, type CountGrant, type RateGrant } from "./lease.ts";
import type { CappedIncrement, Lock, MaybePromise, RateDecision, SharedState, Unsubscribe } from "./types.ts";

// Rate leases (lease.ts): GCRA's arithmetic (gcra.ts) in whole microseconds, taking n cells
// at once. %.17g writes the integer TAT exactly (Lua's tostring keeps 14 digits, and a µs
// timestamp has 16). A grant is what the instance wants (lease.ts sizes it to the key's
// traffic), at most a quarter of the free cells: the share falls to one cell near the limit.
// The ARGV[7] cells the instance holds up to its lease's end ARGV[6] count toward the cost
// while the TAT is still that end: the new cells continue them.
const RATE_TAKE_LUA = `
local limit = tonumber(ARGV[1])
local interval = math.ceil(tonumber(ARGV[2]) * 1000 / limit)
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local want = tonumber(ARGV[5])
local tolerance = interval * limit
local tat = tonumber(redis.call('GET', KEYS[1]))
local base = now
if tat and tat > now then base = tat end
if tat and tat > now and tat == tonumber(ARGV[6]) then cost = cost - tonumber(ARGV[7]) end
local free = math.floor((now + tolerance - base) / interval)
if free < cost then
  return {0, base, base + cost * interval - tolerance - now}
end
local granted = math.floor(free / 4)
if granted > want then granted = want end
if granted < cost then granted = cost end
local newTat = base + granted * interval
redis.call('SET', KEYS[1], string.format('%.17g', newTat), 'PX', math.ceil((newTat - now) / 1000) + 1000)
return {granted, base, 0}
`;

// Only the last lease can shrink the TAT back: if another instance leased after it, the
// unused cells sit below that lease's and simply expire.
const RATE_GIVE_BACK_LUA = `
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat ~= tonumber(ARGV[1]) then return 0 end
local last = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if last <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.17g', last), 'PX', math.ceil((last - now) / 1000) + 1000)
end
return 1
`;

// Counter leases: a quarter of what is left under the cap, at most ARGV[1], at least the cost.
const COUNT_RESERVE_LUA = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local cost = tonumber(ARGV[2])
local left = tonumber(ARGV[3]) - cur
if left < cost then return {0, cur} end
local n = math.floor(left / 4)
if n > tonumber(ARGV[1]) then n = tonumber(ARGV[1]) end
if n < cost then n = cost end
local v = redis.call('INCRBY', KEYS[1], n)
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return {n, v}
`;

// Unused leased units, or spent units given back (a request that then failed): never below
// zero, and an expired counter is not brought back.
const COUNT_RELEASE_LUA = `
local cur = tonumber(redis.call('GET', KEYS[1]))
if cur == nil then return 0 end
local n = tonumber(ARGV[1])
if n > cur then n = cur end
return redis.call('DECRBY', KEYS[1], n)
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
  kpRateTake(key: string, limit: number, windowMs: number, nowUs: number, cost: number, want: number, end: number, held: number): Promise<[number, number, number]>;
  kpRateGiveBack(key: string, end: number, last: number, nowUs: number): Promise<number>;
  kpCountReserve(key: string, want: number, cost: number, cap: number, ttlMs: number): Promise<[number, number]>;
  kpCountRelease(key: string, units: number): Promise<number>;
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
  /** Commands sent (a script call counts once: one round trip). */
  private sent = 0;
  private readonly rates: RateLeases;
  private readonly counts: CountLeases;

  private constructor(
    private readonly client: Redis & Scripts,
    private readonly subscriber: Redis,
    private readonly prefix: string,
  ) {
    this.rates = new RateLeases({
      take: async (key, limit, windowMs, nowUs, cost, want, end = 0, held = 0): Promise<RateGrant> => {
        this.sent++;
        const [granted, base, retryUs] = await this.client.kpRateTake(this.k(key), limit, windowMs, nowUs, cost, want, end, held);
        return { granted, base, retryUs };
      },
      giveBack: async (key, end, last, nowUs) => {
        this.sent++;
        await this.client.kpRateGiveBack(this.k(key), end, last, nowUs);
      },
    });
    this.counts = new CountLeases({
      reserve: async (key, want, cost, cap, ttlMs): Promise<CountGrant> => {
        this.sent++;
        const [granted, value] = await this.client.kpCountReserve(this.k(key), want, cost, cap, ttlMs);
        return { granted, value };
      },
      release: async (key, units) => {
        this.sent++;
        await this.client.kpCountRelease(this.k(key), units);
      },
    });
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
    client.defineCommand("kpRateTake", { numberOfKeys: 1, lua: RATE_TAKE_LUA });
    client.defineCommand("kpRateGiveBack", { numberOfKeys: 1, lua: RATE_GIVE_BACK_LUA });
    client.defineCommand("kpCountReserve", { numberOfKeys: 1, lua: COUNT_RESERVE_LUA });
    client.defineCommand("kpCountRelease", { numberOfKeys: 1, lua: COUNT_RELEASE_LUA });
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

  /** Leased GCRA (lease.ts): Redis is reached for a new lease, not for every decision. */
  rateLimit(key: string, limit: number, windowMs: number, now: number, cost = 1): MaybePromise<RateDecision> {
    return this.rates.decide(key, limit, windowMs, now, cost);
  }

  /** Leased capped counter (lease.ts): blocks of units, sized to the key's traffic. */
  consume(key: string, cost: number, cap: number, ttlMs: number): MaybePromise<CappedIncrement> {
    return this.counts.consume(key, cost, cap, ttlMs);
  }

  /** Into this instance's lease of the counter when it holds one (no round trip), else DECRBY. */
  giveBack(key: string, units: number): MaybePromise<void> {
    return this.counts.giveBack(key, units);
  }

  async incr(key: string, by: number, ttlMs: number): Promise<number> {
    this.sent++;
    return this.client.kpIncr(this.k(key), by, ttlMs);
  }

  async incrCapped(key: string, by: number, cap: number, ttlMs: number): Promise<CappedIncrement> {
    this.sent++;
    const [ok, value] = await this.client.kpIncrCapped(this.k(key), by, cap, ttlMs);
    return { ok: ok === 1, value };
  }

  async get(key: string): Promise<number> {
    this.sent++;
    const v = await this.client.get(this.k(key));
    return v === null ? 0 : Number(v);
  }

  async del(key: string): Promise<void> {
    this.rates.forget(key);
    this.counts.forget(key);
    this.sent++;
    await this.client.del(this.k(key));
  }

  async publish(channel: string, message: string): Promise<void> {
    this.sent++;
    await this.client.publish(this.k(channel), message);
  }

  async subscribe(channel: string, handler: (message: string) => void): Promise<Unsubscribe> {
    const full = this.k(channel);
    let set = this.handlers.get(full);
    if (!set) {
      this.handlers.set(full, (set = new Set()));
      this.sent++;
      await this.subscriber.subscribe(full);
    }
    set.add(handler);
    return async () => {
      set.delete(handler);
      if (set.size === 0) {
        this.handlers.delete(full);
        this.sent++;
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
    this.sent++;
    const ok = await this.client.set(key, token, "PX", ttlMs, "NX");
    if (ok !== "OK") return null;
    return {
      release: async () => {
        this.sent++;
        await this.client.kpUnlock(key, token);
      },
    };
  }

  async ping(): Promise<void> {
    this.sent++;
    await this.client.ping();
  }

  commandCount(): number {
    return this.sent;
  }

  /** Keys with local lease state (rate limits and counters). */
  leasedKeys(): number {
    return this.rates.size() + this.counts.size();
  }

  /**
   * Test hook: runs the lease sweep now, as if leases had been idle `idleMs` (and, for rate
   * leases, the caller's clock read `nowMs`), and waits for what it gives back.
   */
  async returnIdleLeases(idleMs: number, nowMs?: number): Promise<void> {
    await Promise.all([this.rates.sweep(idleMs, nowMs), this.counts.sweep(idleMs)]);
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
    // Unused leases go back first, so other instances can spend them.
    await Promise.allSettled([this.rates.close(), this.counts.close()]);
    await Promise.allSettled([this.client.quit(), this.subscriber.quit()]);
    this.client.disconnect();
    this.subscriber.disconnect();
  }
}
