import type { BlockList } from "node:net";
import { eq, sql } from "drizzle-orm";
import { accounts } from "../accounts/accounts.sql.ts";
import { plans } from "../billing/billing.sql.ts";
import type { Db } from "../db/client.ts";
import { keyRotations } from "../rotation/rotation.sql.ts";
import type { Clock } from "../ops/clock.ts";
import type { Logger } from "../ops/log.ts";
import type { SharedState, Unsubscribe } from "../state/types.ts";
import { compileAllowlist } from "./ips.ts";
import { apiKeys } from "./keys.sql.ts";

/**
 * The key's account as the gateway needs it, read in the key's own lookup (one query): its
 * plan's limits and whether it is suspended. A change to either evicts the account's keys
 * (suspendAccount, changePlan), like a change to the key itself.
 */
export interface CachedAccount {
  id: string;
  planId: string;
  /** The plan's requests per second, across all the account's keys. */
  rps: number;
  /** The plan's rate limiter state name (`arl:<accountId>`), built once per cached key. */
  rateKey: string;
  /** Calls a month the plan includes. */
  included: number;
  /** The plan has no overage price: calls over `included` are refused (the free plan). */
  hardCap: boolean;
  suspended: boolean;
  /** The account's calls counter for one month (`calls:<accountId>:<YYYY-MM>`), rebuilt when the month turns. */
  callsKey: { month: string; name: string };
  /** The highest share of `included` (80, 100) this instance has notified for one month. */
  notified: { month: string; level: number };
}

/**
 * The header values that depend only on the key's and the plan's limits and on the month
 * (whose length is the month policy's window): built by the chain once a month per cached
 * key, so an answer only writes the numbers that move.
 */
export interface PolicyHeaders {
  /** `YYYY-MM` they were built for; "" before the first request. */
  month: string;
  /** RateLimit-Policy naming the key's limit; with the plan's; with the plan's and the month's calls. */
  key: string;
  plan: string;
  all: string;
  /** X-RateLimit-Limit of each policy. */
  keyLimit: string;
  planLimit: string;
  monthLimit: string;
}

/** A key as the gateway needs it, parsed once when it enters the cache. */
export interface CachedKey {
  id: string;
  /** The key's rate limiter state name (`rl:<id>`), built once. */
  rateKey: string;
  /** The key's quota counter name for one month (`quota:<id>:<YYYY-MM>`), rebuilt when the month turns. */
  quotaKey: { month: string; name: string };
  accountId: string;
  account: CachedAccount;
  environment: "live" | "test";
  scopes: ReadonlySet<string>;
  rateLimit: number;
  allow: BlockList | null;
  monthlyQuota: number | null;
  expiresAt: number | null;
  graceEndsAt: number | null;
  revokedAt: number | null;
  /**
   * A leak report flagged the key (src/leaks/). With `emergency`, the management API refuses
   * it outright (src/portal/plugin.ts): whoever holds a leaked key must gain nothing from it.
   */
  leaked: boolean;
  /** The key is the old one of an emergency rotation in its grace period. */
  emergency: boolean;
  policy: PolicyHeaders;
}

/**
 * The key's row with its account's and plan's: one query. The plan row always exists: plans
 * are seeded at start and never deleted (one dropped from the file is marked retired, and its
 * accounts keep it).
 */
function lookup(db: Db, hash: string) {
  return db
    .select({
      id: apiKeys.id,
      accountId: apiKeys.accountId,
      environment: apiKeys.environment,
      scopes: apiKeys.scopes,
      rateLimit: apiKeys.rateLimit,
      ipAllowlist: apiKeys.ipAllowlist,
      monthlyQuota: apiKeys.monthlyQuota,
      expiresAt: apiKeys.expiresAt,
      graceEndsAt: apiKeys.graceEndsAt,
      revokedAt: apiKeys.revokedAt,
      leakedAt: apiKeys.leakedAt,
      // At most one rotation of a key is in flight (key_rotations_one_active_idx), so this
      // probes that partial unique index; a miss costs it, a cache hit nothing.
      emergency: sql<boolean>`exists (select 1 from ${keyRotations} where ${keyRotations.oldKeyId} = ${apiKeys.id} and ${keyRotations.state} = 'grace_period' and ${keyRotations.emergency})`.mapWith(Boolean),
      planId: accounts.planId,
      suspendedAt: accounts.suspendedAt,
      rps: plans.requestsPerSecond,
      included: plans.includedCalls,
      overageCentsPer1000: plans.overageCentsPer1000,
    })
    .from(apiKeys)
    .innerJoin(accounts, eq(accounts.id, apiKeys.accountId))
    .innerJoin(plans, eq(plans.id, accounts.planId))
    .where(eq(apiKeys.hash, hash))
    .limit(1);
}
type LookupRow = Awaited<ReturnType<typeof lookup>>[number];

/** The cache's record of a looked-up row. */
function cachedKey(row: LookupRow): CachedKey {
  return {
    id: row.id,
    rateKey: `rl:${row.id}`,
    quotaKey: { month: "", name: "" },
    accountId: row.accountId,
    account: {
      id: row.accountId,
      planId: row.planId,
      rps: row.rps,
      rateKey: `arl:${row.accountId}`,
      included: row.included,
      hardCap: row.overageCentsPer1000 === null,
      suspended: row.suspendedAt !== null,
      callsKey: { month: "", name: "" },
      notified: { month: "", level: 0 },
    },
    environment: row.environment,
    scopes: new Set(row.scopes),
    rateLimit: row.rateLimit,
    allow: compileAllowlist(row.ipAllowlist),
    monthlyQuota: row.monthlyQuota,
    expiresAt: row.expiresAt?.getTime() ?? null,
    graceEndsAt: row.graceEndsAt?.getTime() ?? null,
    revokedAt: row.revokedAt?.getTime() ?? null,
    leaked: row.leakedAt !== null,
    emergency: row.emergency,
    policy: { month: "", key: "", plan: "", all: "", keyLimit: "", planLimit: "", monthLimit: "" },
  };
}

interface Entry {
  key: CachedKey | null;
  /** Cache time after which the entry is refetched. */
  staleAt: number;
  /** Hit since the eviction scan last passed it (second-chance eviction). */
  hit: boolean;
}

export class KeyStoreUnavailable extends Error {
  override name = "KeyStoreUnavailable";
}

export interface KeyCacheOptions {
  maxEntries?: number;
  /** Upper bound on staleness if every eviction message and epoch poll were lost. */
  ttlMs?: number;
  /** How long an unknown hash is remembered as unknown. */
  negativeTtlMs?: number;
  epochPollMs?: number;
}

const EVICT_CHANNEL = "keys:evict";
const EPOCH_KEY = "keys:epoch";
const EPOCH_TTL_MS = 400 * 86_400_000;

/**
 * The verification cache: key records by hash in a bounded map with second-chance (CLOCK)
 * eviction — a hit sets a flag instead of moving the entry, so a hit costs one lookup — so
 * a cache hit costs no database query. Unknown hashes are cached too (negative entries), and
 * concurrent misses for one hash share one query, so a flood of made-up keys reaches the
 * database at most once per hash per negative TTL.
 *
 * Staleness is bounded three ways: a change evicts locally and publishes the hash to every
 * instance (fast, at-most-once); it also bumps a revocation epoch that every instance polls,
 * flushing everything when it moves (covers lost messages); and when the subscriber
 * connection drops the whole cache is flushed. The TTL is the last resort.
 */
export class KeyCache {
  private readonly entries = new Map<string, Entry>();
  private readonly inflight = new Map<string, Promise<CachedKey | null>>();
  /** Bumped by every eviction: a fill that started before it must not store its result. */
  private generation = 0;
  private epoch: number | undefined;
  private poller: ReturnType<typeof setInterval> | undefined;
  private unsubscribe: Unsubscribe | undefined;
  private readonly maxEntries: number;
  private readonly ttlMs: number;
  private readonly negativeTtlMs: number;
  private readonly epochPollMs: number;
  /** Database lookups made (tests and the benchmark read it). */
  misses = 0;

  constructor(
    private readonly db: Db,
    private readonly state: SharedState,
    private readonly clock: Clock,
    private readonly log: Logger,
    opts: KeyCacheOptions = {},
  ) {
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.ttlMs = opts.ttlMs ?? 60_000;
    this.negativeTtlMs = opts.negativeTtlMs ?? 10_000;
    this.epochPollMs = opts.epochPollMs ?? 2_000;
  }

  /** Subscribes to evictions and starts the epoch poll. */
  async start(): Promise<void> {
    this.unsubscribe = await this.state.subscribe(EVICT_CHANNEL, (hash) => this.evictLocal(hash));
    this.state.onMessagesMaybeLost(() => {
      this.log.warn("key cache flushed: eviction messages may have been lost");
      this.flush();
    });
    this.epoch = await this.state.get(EPOCH_KEY).catch(() => undefined);
    this.poller = setInterval(() => void this.pollEpoch(), this.epochPollMs);
    this.poller.unref?.();
  }

  async stop(): Promise<void> {
    if (this.poller) clearInterval(this.poller);
    await this.unsubscribe?.().catch(() => {});
  }

  async pollEpoch(): Promise<void> {
    try {
      const epoch = await this.state.get(EPOCH_KEY);
      if (this.epoch !== undefined && epoch !== this.epoch) this.flush();
      this.epoch = epoch;
    } catch {
      // Shared state is away: entries still expire by TTL.
    }
  }

  size(): number {
    return this.entries.size;
  }

  flush(): void {
    this.generation++;
    this.entries.clear();
    this.inflight.clear();
  }

  /** A lookup already under way read the row before the change: requests after this wait for a new one. */
  evictLocal(hash: string): void {
    this.generation++;
    this.entries.delete(hash);
    this.inflight.delete(hash);
  }

  /** After a change to a key: evict here at once, then tell the other instances. */
  async announce(hash: string): Promise<void> {
    this.evictLocal(hash);
    try {
      await Promise.all([this.state.publish(EVICT_CHANNEL, hash), this.state.incr(EPOCH_KEY, 1, EPOCH_TTL_MS)]);
    } catch (err) {
      this.log.warn("key change not announced to other instances; their cache TTL bounds it", { error: (err as Error).message });
    }
  }

  /**
   * The cached record for a hash: a CachedKey, null for a known-unknown hash, or undefined
   * when the cache has nothing fresh (call `load`). Synchronous: the hot path awaits nothing
   * on a hit.
   */
  peek(hash: string, now = this.clock.now()): CachedKey | null | undefined {
    const e = this.entries.get(hash);
    if (!e) return undefined;
    if (e.staleAt <= now) {
      this.entries.delete(hash);
      return undefined;
    }
    e.hit = true;
    return e.key;
  }

  load(hash: string): Promise<CachedKey | null> {
    let p = this.inflight.get(hash);
    if (!p) {
      const filling: Promise<CachedKey | null> = this.fill(hash).finally(() => {
        // An eviction may have put a newer lookup in its place.
        if (this.inflight.get(hash) === filling) this.inflight.delete(hash);
      });
      this.inflight.set(hash, (p = filling));
    }
    return p;
  }

  /**
   * Map order is insertion order: from the oldest, entries hit since the last pass get a
   * second chance (moved to the end, flag cleared); the first one not hit goes. Each pass
   * clears the flags it moves, so the scan ends within one lap.
   */
  private evictOne(): void {
    for (const [hash, e] of this.entries) {
      this.entries.delete(hash);
      if (!e.hit) return;
      e.hit = false;
      this.entries.set(hash, e);
    }
  }

  private async fill(hash: string): Promise<CachedKey | null> {
    const generation = this.generation;
    this.misses++;
    let rows: LookupRow[];
    try {
      rows = await lookup(this.db, hash);
    } catch (err) {
      throw new KeyStoreUnavailable((err as Error).message);
    }
    const row = rows[0];
    const key = row ? cachedKey(row) : null;
    if (generation === this.generation) {
      if (this.entries.size >= this.maxEntries) this.evictOne();
      this.entries.set(hash, { key, staleAt: this.clock.now() + (key ? this.ttlMs : this.negativeTtlMs), hit: false });
    }
    return key;
  }
}
