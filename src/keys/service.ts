import { and, desc, eq, gt, ilike, inArray, isNotNull, isNull, lte, max, ne, not, or, sql } from "drizzle-orm";
import type { Deps } from "../deps.ts";
import type { Db, Tx } from "../db/client.ts";
import { accounts } from "../accounts/accounts.sql.ts";
import { recordAudit, type Actor } from "../audit/service.ts";
import { newId } from "../ids.ts";
import { emit } from "../notify/service.ts";
import { keyUsage } from "../usage/usage.sql.ts";
import { DomainError, invalidInput, notFound } from "../errors.ts";
import { knownScopes, unknownScopeMessage } from "./scopes.ts";
import { displayKey, generateKey, hashKey, keyParts, type Environment } from "./format.ts";
import { apiKeys } from "./keys.sql.ts";
import { MAX_ACTIVE_KEYS, type KeyPatch, type KeyStatus, type KeyView, type NewKey, type RollInput } from "./model.ts";

export type KeyRow = typeof apiKeys.$inferSelect;
type KeyDeps = Pick<Deps, "db" | "clock" | "config" | "keyCache" | "products">;

/** Scopes that passed the schema's shape check: each must be Keyport's own or a registered product's. */
function requireKnownScopes(deps: Pick<Deps, "products">, scopes: string[] | undefined): void {
  if (!scopes) return;
  const known = knownScopes(deps.products).map((s) => s.name);
  const unknown = scopes.filter((s) => !known.includes(s));
  if (unknown.length > 0) throw invalidInput("The key is not valid.", unknown.map((s) => ({ field: "scopes", message: unknownScopeMessage(s, known) })));
}

/** The status a key has at `now`; the gateway applies the same rules from its cache entry. */
export function keyStatus(k: { revokedAt: Date | null; graceEndsAt: Date | null; expiresAt: Date | null }, now: number): KeyStatus {
  if (k.revokedAt && k.revokedAt.getTime() <= now) return "revoked";
  if (k.graceEndsAt) return k.graceEndsAt.getTime() > now ? "expiring" : "revoked";
  if (k.expiresAt && k.expiresAt.getTime() <= now) return "expired";
  return "active";
}

/**
 * The rows with their last use: the latest request their usage rows hold (the usage flush
 * writes it with the counts), or the key row's own mark where that is later (written by
 * versions before migration 0004). One grouped lookup on the usage table's primary key.
 */
async function withLastUsed(db: Pick<Db, "select">, rows: KeyRow[]): Promise<KeyRow[]> {
  if (rows.length === 0) return rows;
  const used = await db
    .select({ keyId: keyUsage.keyId, at: max(keyUsage.lastUsedAt) })
    .from(keyUsage)
    .where(inArray(keyUsage.keyId, rows.map((r) => r.id)))
    .groupBy(keyUsage.keyId);
  const latest = new Map(used.map((u) => [u.keyId, u.at]));
  return rows.map((r) => {
    const at = latest.get(r.id);
    return at && (!r.lastUsedAt || at > r.lastUsedAt) ? { ...r, lastUsedAt: at } : r;
  });
}

/** One key's view with its last use (withLastUsed). */
async function viewWithLastUsed(deps: KeyDeps, row: KeyRow, now: number): Promise<KeyView> {
  const [shown] = await withLastUsed(deps.db, [row]);
  return toView(shown!, deps.config.keyPrefix, now);
}

export function toView(row: KeyRow, prefix: string, now: number): KeyView {
  const iso = (d: Date | null) => (d ? d.toISOString() : null);
  return {
    id: row.id,
    name: row.name,
    environment: row.environment,
    display: displayKey(prefix, row.environment, row.start, row.end),
    scopes: row.scopes,
    rateLimit: row.rateLimit,
    ipAllowlist: row.ipAllowlist,
    monthlyQuota: row.monthlyQuota,
    status: keyStatus(row, now),
    expiresAt: iso(row.expiresAt),
    graceEndsAt: iso(row.graceEndsAt),
    replacedBy: row.replacedBy,
    lastUsedAt: iso(row.lastUsedAt),
    createdAt: row.createdAt.toISOString(),
    revokedAt: iso(row.revokedAt),
    sandbox: row.sandboxSessionId !== null,
    leakedAt: iso(row.leakedAt),
    leakedUrl: row.leakedUrl,
  };
}

function requireFuture(expiresAt: Date | null | undefined, now: number): void {
  if (expiresAt && expiresAt.getTime() <= now) {
    throw new DomainError("invalid_request", "The key is not valid.", [{ field: "expiresAt", message: "must be in the future" }]);
  }
}

/** Keys that still count against the limit: not revoked, not in a roll's grace, not expired. */
function activeCondition(now: Date) {
  return and(isNull(apiKeys.revokedAt), isNull(apiKeys.graceEndsAt), or(isNull(apiKeys.expiresAt), gt(apiKeys.expiresAt, now)));
}

/** Serialises key creation per account (FOR UPDATE on the account row), so the limit holds under races. */
async function lockAccount(tx: Tx, accountId: string): Promise<void> {
  const rows = await tx.select({ id: accounts.id }).from(accounts).where(eq(accounts.id, accountId)).for("update");
  if (rows.length === 0) throw notFound("account");
}

async function insertKey(
  tx: Tx,
  deps: KeyDeps,
  accountId: string,
  fields: Omit<typeof apiKeys.$inferInsert, "id" | "accountId" | "hash" | "start" | "end">,
  now: Date,
  replacing?: string,
): Promise<{ row: KeyRow; secret: string }> {
  const [{ n } = { n: 0 }] = await tx
    .select({ n: sql<number>`count(*)::int` })
    .from(apiKeys)
    // A key being replaced stops counting: rolling at the limit must work. Sandbox keys never count.
    .where(and(eq(apiKeys.accountId, accountId), activeCondition(now), isNull(apiKeys.sandboxSessionId), replacing ? ne(apiKeys.id, replacing) : undefined));
  if (n >= MAX_ACTIVE_KEYS) {
    throw new DomainError("key_limit_reached", `An account may hold at most ${MAX_ACTIVE_KEYS} active keys; revoke one first.`);
  }
  const secret = generateKey(deps.config.keyPrefix, fields.environment as Environment);
  const { start, end } = keyParts(secret, deps.config.keyPrefix);
  const [row] = await tx
    .insert(apiKeys)
    .values({ ...fields, id: newId("key"), accountId, hash: hashKey(secret), start, end, createdAt: now, updatedAt: now })
    .returning();
  return { row: row!, secret };
}

export const EMAIL_NOT_VERIFIED_DETAIL =
  "Confirm your email address to create live keys: follow the link in the mail sent when you signed up, or send a new one from the Keys page. Test keys and the sandbox work meanwhile.";

/**
 * Where mail can be delivered (config.requireEmailVerification), a live key needs a confirmed
 * address: live traffic then belongs to an address that reaches someone, where the notices of
 * a leak or a rotation go. Test keys and the sandbox need none. Called under the account's
 * lock, so a key made while the address is being confirmed sees one state or the other.
 */
async function requireVerifiedForLive(tx: Tx, deps: KeyDeps, accountId: string, environment: string): Promise<void> {
  if (environment !== "live" || !deps.config.requireEmailVerification) return;
  const [row] = await tx.select({ verifiedAt: accounts.emailVerifiedAt }).from(accounts).where(eq(accounts.id, accountId));
  if (row && row.verifiedAt === null) throw new DomainError("email_not_verified", EMAIL_NOT_VERIFIED_DETAIL);
}

/** Creates a key; the secret is in this answer and nowhere else, ever. */
export async function createKey(deps: KeyDeps, accountId: string, data: NewKey, who: Actor): Promise<{ key: KeyView; secret: string }> {
  const nowMs = deps.clock.now();
  requireFuture(data.expiresAt, nowMs);
  requireKnownScopes(deps, data.scopes);
  const now = new Date(nowMs);
  const { row, secret } = await deps.db.transaction(async (tx) => {
    await lockAccount(tx, accountId);
    await requireVerifiedForLive(tx, deps, accountId, data.environment);
    const created = await insertKey(tx, deps, accountId, data, now);
    await recordAudit(
      tx,
      who,
      {
        accountId,
        action: "key.created",
        keyId: created.row.id,
        changes: { name: data.name, environment: data.environment, scopes: data.scopes, rateLimit: data.rateLimit },
      },
      now,
    );
    await emit(tx, { accountId, event: "key.created", keyId: created.row.id, data: { name: data.name, environment: data.environment } }, now);
    return created;
  });
  return { key: toView(row, deps.config.keyPrefix, nowMs), secret };
}

/** What a sandbox key is: the reference's try-it key (src/docs/sandbox.ts sets the numbers). */
export interface SandboxKeyFields {
  scopes: string[];
  rateLimit: number;
  monthlyQuota: number;
  expiresAt: Date;
}

/** The session's sandbox key that still answers (not revoked, not expired), if any. */
export async function activeSandboxKey(deps: KeyDeps, accountId: string, sessionId: string, tx: Pick<Db, "select"> = deps.db): Promise<KeyRow | undefined> {
  const now = new Date(deps.clock.now());
  const [row] = await tx
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.accountId, accountId), eq(apiKeys.sandboxSessionId, sessionId), isNull(apiKeys.revokedAt), gt(apiKeys.expiresAt, now)))
    .orderBy(desc(apiKeys.createdAt))
    .limit(1);
  return row;
}

/**
 * The session's sandbox key, made on first use: a `test` key named "sandbox" whose secret is
 * `secretFor(id)` (derived, never stored: src/docs/sandbox.ts). One per session at a time:
 * concurrent first uses wait on the account's row and the second finds the first's key.
 * Audited like any key; no notification or webhook (it is the reference's, not an integration's).
 */
export async function ensureSandboxKey(
  deps: KeyDeps,
  accountId: string,
  sessionId: string,
  fields: SandboxKeyFields,
  secretFor: (keyId: string) => string,
  who: Actor,
): Promise<{ row: KeyRow; created: boolean }> {
  const existing = await activeSandboxKey(deps, accountId, sessionId);
  if (existing) {
    // A product registered since the key was made: the sandbox key gets its scopes too.
    const missing = fields.scopes.filter((s) => !existing.scopes.includes(s));
    if (missing.length === 0) return { row: existing, created: false };
    const [row] = await deps.db
      .update(apiKeys)
      .set({ scopes: [...existing.scopes, ...missing].sort(), updatedAt: new Date(deps.clock.now()) })
      .where(and(eq(apiKeys.id, existing.id), eq(apiKeys.accountId, accountId)))
      .returning();
    await deps.keyCache.announce(row!.hash);
    return { row: row!, created: false };
  }
  const now = new Date(deps.clock.now());
  return deps.db.transaction(async (tx) => {
    await lockAccount(tx, accountId);
    const raced = await activeSandboxKey(deps, accountId, sessionId, tx);
    if (raced) return { row: raced, created: false };
    const id = newId("key");
    const secret = secretFor(id);
    const { start, end } = keyParts(secret, deps.config.keyPrefix);
    const [row] = await tx
      .insert(apiKeys)
      .values({ id, accountId, name: "sandbox", environment: "test", ...fields, hash: hashKey(secret), start, end, sandboxSessionId: sessionId, createdAt: now, updatedAt: now })
      .returning();
    await recordAudit(
      tx,
      who,
      { accountId, action: "key.created", keyId: id, changes: { name: "sandbox", environment: "test", scopes: fields.scopes, rateLimit: fields.rateLimit, sandbox: true } },
      now,
    );
    return { row: row!, created: true };
  });
}

/**
 * When sessions end: their sandbox keys are revoked, on every instance at the next request.
 * One session's at logout; every other session's of an account when a password change ends them.
 */
export async function revokeSandboxKeys(deps: KeyDeps, sessions: { sessionId: string } | { accountId: string; exceptSessionId: string }, who: Actor): Promise<number> {
  const now = new Date(deps.clock.now());
  const which =
    "sessionId" in sessions
      ? eq(apiKeys.sandboxSessionId, sessions.sessionId)
      : and(eq(apiKeys.accountId, sessions.accountId), isNotNull(apiKeys.sandboxSessionId), ne(apiKeys.sandboxSessionId, sessions.exceptSessionId));
  const rows = await deps.db.transaction(async (tx) => {
    const revoked = await tx
      .update(apiKeys)
      .set({ revokedAt: now, updatedAt: now })
      .where(and(which, isNull(apiKeys.revokedAt)))
      .returning();
    for (const r of revoked) {
      await recordAudit(tx, who, { accountId: r.accountId, action: "key.revoked", keyId: r.id, changes: { status: { from: keyStatus({ ...r, revokedAt: null }, now.getTime()), to: "revoked" }, reason: "logout" } }, now);
    }
    return revoked;
  });
  for (const r of rows) await deps.keyCache.announce(r.hash);
  return rows.length;
}

export async function listKeys(deps: KeyDeps, accountId: string): Promise<KeyView[]> {
  const rows = await deps.db.select().from(apiKeys).where(eq(apiKeys.accountId, accountId)).orderBy(desc(apiKeys.createdAt), desc(apiKeys.id));
  const now = deps.clock.now();
  return (await withLastUsed(deps.db, rows)).map((r) => toView(r, deps.config.keyPrefix, now));
}

async function findOwned(tx: Pick<Deps["db"], "select">, accountId: string, id: string): Promise<KeyRow> {
  const [row] = await tx
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.id, id), eq(apiKeys.accountId, accountId)));
  // Another account's key is indistinguishable from a missing one.
  if (!row) throw notFound("key");
  return row;
}

export async function getKey(deps: KeyDeps, accountId: string, id: string): Promise<KeyView> {
  return viewWithLastUsed(deps, await findOwned(deps.db, accountId, id), deps.clock.now());
}

export async function getKeyRow(deps: KeyDeps, accountId: string, id: string): Promise<KeyRow> {
  return findOwned(deps.db, accountId, id);
}

function assertChangeable(row: KeyRow, now: number): void {
  const status = keyStatus(row, now);
  if (status === "revoked") throw new DomainError("key_not_active", "This key is revoked and can no longer change.");
  refuseSandbox(row, "changed");
}

/**
 * A sandbox key is the API reference's, for one session: its settings are the sandbox's own
 * (ensureSandboxKey keeps them), and a roll would turn it into an ordinary test key that
 * outlives the session. It can be revoked (the next try-it call makes a new one), not
 * changed or rolled.
 */
export function refuseSandbox(row: Pick<KeyRow, "sandboxSessionId">, what: "changed" | "rolled" | "rotated"): void {
  if (row.sandboxSessionId !== null) {
    throw new DomainError("key_not_active", `A sandbox key belongs to the API reference's try-it and cannot be ${what}; revoke it, or create a test key of your own.`);
  }
}

export async function updateKey(deps: KeyDeps, accountId: string, id: string, patch: KeyPatch, who: Actor): Promise<KeyView> {
  const nowMs = deps.clock.now();
  requireFuture(patch.expiresAt, nowMs);
  requireKnownScopes(deps, patch.scopes);
  const now = new Date(nowMs);
  const row = await deps.db.transaction(async (tx) => {
    const before = await findOwned(tx, accountId, id);
    assertChangeable(before, nowMs);
    const changes: Record<string, { from: unknown; to: unknown }> = {};
    for (const [field, value] of Object.entries(patch)) {
      if (value === undefined) continue;
      const old = before[field as keyof KeyRow];
      const norm = (v: unknown) => (v instanceof Date ? v.toISOString() : v);
      if (JSON.stringify(norm(old)) !== JSON.stringify(norm(value))) changes[field] = { from: norm(old), to: norm(value) };
    }
    const [after] = await tx
      .update(apiKeys)
      .set({ ...patch, updatedAt: now })
      .where(and(eq(apiKeys.id, id), eq(apiKeys.accountId, accountId)))
      .returning();
    await recordAudit(tx, who, { accountId, action: "key.updated", keyId: id, changes }, now);
    return after!;
  });
  await deps.keyCache.announce(row.hash);
  return viewWithLastUsed(deps, row, nowMs);
}

export async function revokeKey(deps: KeyDeps, accountId: string, id: string, who: Actor): Promise<KeyView> {
  const nowMs = deps.clock.now();
  const now = new Date(nowMs);
  const row = await deps.db.transaction(async (tx) => {
    const before = await findOwned(tx, accountId, id);
    if (before.revokedAt) return before;
    const [after] = await tx
      .update(apiKeys)
      .set({ revokedAt: now, updatedAt: now })
      .where(and(eq(apiKeys.id, id), eq(apiKeys.accountId, accountId)))
      .returning();
    await recordAudit(tx, who, { accountId, action: "key.revoked", keyId: id, changes: { status: { from: keyStatus(before, nowMs), to: "revoked" } } }, now);
    await emit(tx, { accountId, event: "key.revoked", keyId: id, data: { name: before.name } }, now);
    return after!;
  });
  await deps.keyCache.announce(row.hash);
  return viewWithLastUsed(deps, row, nowMs);
}

/**
 * Inside a transaction: a new key with the old one's settings, active at once, and the old
 * key `expiring` until `graceHours` from now (0 = revoked now). Rolls and rotations share it.
 */
/**
 * The replaced key's new name: "ci (rolled 2026-12-01)", so that the old and the new key
 * differ in every list while the new one keeps the name programs and people know it by.
 */
export function replacedName(name: string, how: "rolled" | "rotated", now: Date): string {
  const suffix = ` (${how} ${now.toISOString().slice(0, 10)})`;
  const base = name.replace(/ \((rolled|rotated) \d{4}-\d{2}-\d{2}\)$/, "");
  return base.slice(0, 100 - suffix.length) + suffix;
}

/**
 * Replaces an active key inside `tx`: a new key with the same name and settings, and the
 * old one renamed (replacedName), pointing at it, expiring after `graceHours` (0 = revoked now).
 */
export async function replaceKey(
  tx: Tx,
  deps: KeyDeps,
  old: KeyRow,
  graceHours: number,
  now: Date,
  how: "rolled" | "rotated",
): Promise<{ created: { row: KeyRow; secret: string }; previous: KeyRow }> {
  const status = keyStatus(old, now.getTime());
  if (status !== "active") throw new DomainError("key_not_active", `Only an active key can be replaced; this one is ${status}.`);
  const created = await insertKey(
    tx,
    deps,
    old.accountId,
    {
      name: old.name,
      environment: old.environment,
      scopes: old.scopes,
      rateLimit: old.rateLimit,
      ipAllowlist: old.ipAllowlist,
      monthlyQuota: old.monthlyQuota,
      expiresAt: old.expiresAt,
    },
    now,
    old.id,
  );
  const graceEnd = new Date(now.getTime() + Math.round(graceHours * 3_600_000));
  const replaced = { name: replacedName(old.name, how, now), replacedBy: created.row.id, updatedAt: now };
  const [previous] = await tx
    .update(apiKeys)
    .set(graceHours > 0 ? { ...replaced, graceEndsAt: graceEnd } : { ...replaced, revokedAt: now })
    .where(eq(apiKeys.id, old.id))
    .returning();
  return { created, previous: previous! };
}

/**
 * The shared-state counter of a key's monthly quota in the month of `nowMs`, and how long it
 * lives (the month and a day). The gateway spends the same counter (src/gateway/chain.ts,
 * planLimited, which builds its name once a month per key).
 */
export function quotaCounter(keyId: string, nowMs: number): { name: string; ttlMs: number } {
  const d = new Date(nowMs);
  const end = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
  return { name: `quota:${keyId}:${d.toISOString().slice(0, 7)}`, ttlMs: end - nowMs + 86_400_000 };
}

/**
 * Usage follows a key's lineage: what the replaced key spent of its monthly quota this month
 * is copied to its replacement's counter, so a roll or a rotation never hands out a fresh
 * quota. Made once the replacement is committed, before its secret is handed out. A shared
 * state that cannot answer leaves the new counter as it is (logged): the replacement stands.
 * In service mode the count read includes units other instances hold leased and unspent
 * (src/state/lease.ts): the new key starts at most that much lower, never higher.
 */
export async function carryQuota(deps: Pick<Deps, "state" | "log">, fromKeyId: string, toKeyId: string, nowMs: number): Promise<void> {
  const from = quotaCounter(fromKeyId, nowMs);
  const to = quotaCounter(toKeyId, nowMs);
  try {
    const used = await deps.state.get(from.name);
    if (used > 0) await deps.state.incr(to.name, used, to.ttlMs);
  } catch (err) {
    deps.log.warn("monthly quota not carried over to the replacement key", { fromKeyId, toKeyId, error: (err as Error).message });
  }
}

/**
 * Rolls a key: a new key with the same settings is active at once; the old one answers until
 * the grace period ends (0 h = revoked now), then counts as revoked. The new key carries the
 * old one's monthly quota spent so far (carryQuota).
 */
export async function rollKey(
  deps: KeyDeps & Pick<Deps, "state" | "log">,
  accountId: string,
  id: string,
  { gracePeriodHours }: RollInput,
  who: Actor,
): Promise<{ key: KeyView; secret: string; previous: KeyView }> {
  const nowMs = deps.clock.now();
  const now = new Date(nowMs);
  const result = await deps.db.transaction(async (tx) => {
    await lockAccount(tx, accountId);
    const old = await findOwned(tx, accountId, id);
    refuseSandbox(old, "rolled");
    await requireVerifiedForLive(tx, deps, accountId, old.environment);
    const replaced = await replaceKey(tx, deps, old, gracePeriodHours, now, "rolled");
    await recordAudit(
      tx,
      who,
      { accountId, action: "key.rolled", keyId: old.id, changes: { replacedBy: replaced.created.row.id, gracePeriodHours, graceEndsAt: replaced.previous.graceEndsAt?.toISOString() ?? null } },
      now,
    );
    await recordAudit(tx, who, { accountId, action: "key.created", keyId: replaced.created.row.id, changes: { name: old.name, rolledFrom: old.id } }, now);
    await emit(tx, { accountId, event: "key.created", keyId: replaced.created.row.id, data: { name: old.name, replaces: old.id } }, now);
    return replaced;
  });
  await carryQuota(deps, result.previous.id, result.created.row.id, nowMs);
  await deps.keyCache.announce(result.previous.hash);
  return {
    key: toView(result.created.row, deps.config.keyPrefix, nowMs),
    secret: result.created.secret,
    previous: await viewWithLastUsed(deps, result.previous, nowMs),
  };
}

/** For operators (the CLI): revoke by id whatever the account. */
export async function revokeKeyById(deps: KeyDeps, id: string, who: Actor): Promise<KeyView> {
  const [row] = await deps.db.select({ accountId: apiKeys.accountId }).from(apiKeys).where(eq(apiKeys.id, id));
  if (!row) throw notFound("key");
  return revokeKey(deps, row.accountId, id, who);
}

/** What the keys page lists: a name search, status and environment filters, a page of 50. */
export interface KeySearch {
  q?: string;
  status?: KeyStatus;
  environment?: Environment;
  /** Without a status filter revoked keys are left out unless asked for. */
  includeRevoked?: boolean;
  page?: number;
}

export const KEYS_PAGE = 50;

/** The account's keys matching `search`, newest first, a page at a time, with the totals (matching, and all of the account's). */
export async function searchKeys(deps: KeyDeps, accountId: string, search: KeySearch): Promise<{ keys: KeyView[]; total: number; all: number; page: number; pages: number }> {
  const nowMs = deps.clock.now();
  const now = new Date(nowMs);
  // As keyStatus decides it; each side is false, never NULL, for a key without the date, so
  // `not(revoked)` keeps active keys.
  const revoked = or(isNotNull(apiKeys.revokedAt), and(isNotNull(apiKeys.graceEndsAt), lte(apiKeys.graceEndsAt, now)));
  const statusCondition = {
    revoked,
    expiring: and(isNull(apiKeys.revokedAt), gt(apiKeys.graceEndsAt, now)),
    expired: and(isNull(apiKeys.revokedAt), isNull(apiKeys.graceEndsAt), lte(apiKeys.expiresAt, now)),
    active: and(isNull(apiKeys.revokedAt), isNull(apiKeys.graceEndsAt), or(isNull(apiKeys.expiresAt), gt(apiKeys.expiresAt, now))),
  } as const;
  const where = and(
    eq(apiKeys.accountId, accountId),
    search.q ? ilike(apiKeys.name, `%${search.q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`) : undefined,
    search.environment ? eq(apiKeys.environment, search.environment) : undefined,
    search.status ? statusCondition[search.status] : search.includeRevoked ? undefined : not(revoked!),
  );
  const [{ n, all } = { n: 0, all: 0 }] = await deps.db
    .select({ n: sql<number>`(count(*) filter (where ${where}))::int`, all: sql<number>`count(*)::int` })
    .from(apiKeys)
    .where(eq(apiKeys.accountId, accountId));
  const pages = Math.max(1, Math.ceil(n / KEYS_PAGE));
  const page = Math.min(Math.max(1, search.page ?? 1), pages);
  const rows = await deps.db
    .select()
    .from(apiKeys)
    .where(where)
    .orderBy(desc(apiKeys.createdAt), desc(apiKeys.id))
    .limit(KEYS_PAGE)
    .offset((page - 1) * KEYS_PAGE);
  return { keys: (await withLastUsed(deps.db, rows)).map((r) => toView(r, deps.config.keyPrefix, nowMs)), total: n, all, page, pages };
}

/**
 * For operators (the CLI): which key and account an id, or the SHA-256 of a key itself
 * (`hashKey`), names, whatever the account; undefined when none does.
 */
export async function findKeyOwner(deps: Pick<Deps, "db">, by: { id: string } | { hash: string }): Promise<{ id: string; accountId: string } | undefined> {
  const [row] = await deps.db
    .select({ id: apiKeys.id, accountId: apiKeys.accountId })
    .from(apiKeys)
    .where("id" in by ? eq(apiKeys.id, by.id) : eq(apiKeys.hash, by.hash));
  return row;
}

/** The keys a key's page links to: the one that replaced it and the one it replaced (by a roll or rotation). */
export async function keyLineage(deps: KeyDeps, accountId: string, key: Pick<KeyView, "id" | "replacedBy">): Promise<{ replacedBy: KeyView | null; replaces: KeyView | null }> {
  const rows = await deps.db
    .select()
    .from(apiKeys)
    .where(and(eq(apiKeys.accountId, accountId), or(key.replacedBy ? eq(apiKeys.id, key.replacedBy) : undefined, eq(apiKeys.replacedBy, key.id))));
  const now = deps.clock.now();
  const view = (r: KeyRow | undefined) => (r ? toView(r, deps.config.keyPrefix, now) : null);
  return { replacedBy: view(rows.find((r) => r.id === key.replacedBy)), replaces: view(rows.find((r) => r.replacedBy === key.id)) };
}
