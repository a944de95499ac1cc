import { and, eq, inArray, isNull, lt, or, sql } from "drizzle-orm";
import { accounts } from "../accounts/accounts.sql.ts";
import { recordAudit, systemActor, type Actor } from "../audit/service.ts";
import type { Deps } from "../deps.ts";
import { DomainError } from "../errors.ts";
import { newId } from "../ids.ts";
import { displayKey, hashKey, parseKey } from "../keys/format.ts";
import { apiKeys } from "../keys/keys.sql.ts";
import { keyStatus, revokeKey } from "../keys/service.ts";
import { emit } from "../notify/service.ts";
import { Sealer } from "../crypto/seal.ts";
import { keyRotations } from "../rotation/rotation.sql.ts";
import { emergencyRotation } from "../rotation/service.ts";
import { LEAK_POLICIES, instanceSettings, leakReports, type LeakOutcome, type LeakPolicy, type LeakSource } from "./leaks.sql.ts";

type LeakDeps = Pick<Deps, "db" | "clock" | "config" | "keyCache" | "log" | "products" | "state">;

/** A reported token: the secret as found, where, by which source; `type` is the reporter's name for it (GitHub's `type`). */
export interface LeakReportInput {
  token: string;
  url?: string | null;
  source: LeakSource;
  type?: string;
}

export interface RecordedReport {
  id: string;
  keyHash: string;
  /** A key of ours with a valid checksum that exists (GitHub's true_positive). */
  known: boolean;
  /** The report was already on file (the same source, token and place). */
  repeated: boolean;
}

const FLOOR_SETTING = "leak_policy_floor";
const STRENGTH: Record<LeakPolicy, number> = { notify: 0, rotate: 1, revoke: 2 };
/** Reports processed per run of the timer. */
const BATCH = 50;
/**
 * How long a run's claim on a report lasts: a run that died while acting on it (a crash, a
 * lost database) leaves it pending, and a later run takes it up once this has passed.
 */
const CLAIM_MS = 5 * 60_000;
/**
 * Reports filed per statement: a row takes up to one parameter a column and a statement at
 * most 65,535, while a scanner's 1 MiB body can hold 20,000 short reports.
 */
export const RECORD_CHUNK = 500;

/** The stronger of the account's policy and the operators' floor. */
export function effectivePolicy(account: LeakPolicy, floor: LeakPolicy): LeakPolicy {
  return STRENGTH[floor] > STRENGTH[account] ? floor : account;
}

export function isLeakPolicy(s: unknown): s is LeakPolicy {
  return typeof s === "string" && (LEAK_POLICIES as readonly string[]).includes(s);
}

/** The operators' floor for every account's policy (`notify`: none). */
export async function leakPolicyFloor(deps: Pick<Deps, "db">): Promise<LeakPolicy> {
  const [row] = await deps.db.select({ value: instanceSettings.value }).from(instanceSettings).where(eq(instanceSettings.key, FLOOR_SETTING));
  return isLeakPolicy(row?.value) ? row.value : "notify";
}

/** Sets the floor; audited in the operators' log (`instance`). */
export async function setLeakPolicyFloor(deps: Pick<Deps, "db" | "clock">, floor: LeakPolicy, who: Actor): Promise<LeakPolicy> {
  const now = new Date(deps.clock.now());
  await deps.db.transaction(async (tx) => {
    await tx.insert(instanceSettings).values({ key: FLOOR_SETTING, value: floor, updatedAt: now }).onConflictDoUpdate({ target: instanceSettings.key, set: { value: floor, updatedAt: now } });
    await recordAudit(tx, who, { accountId: "instance", action: "leaks.floor_set", changes: { floor } }, now);
  });
  return floor;
}

export async function getLeakPolicy(deps: Pick<Deps, "db">, accountId: string): Promise<{ policy: LeakPolicy; floor: LeakPolicy; effective: LeakPolicy }> {
  const [[row], floor] = await Promise.all([deps.db.select({ policy: accounts.leakPolicy }).from(accounts).where(eq(accounts.id, accountId)), leakPolicyFloor(deps)]);
  const policy = row?.policy ?? "rotate";
  return { policy, floor, effective: effectivePolicy(policy, floor) };
}

export async function setLeakPolicy(deps: Pick<Deps, "db" | "clock">, accountId: string, policy: LeakPolicy, who: Actor): Promise<LeakPolicy> {
  if (!isLeakPolicy(policy)) throw new DomainError("invalid_request", "The leak policy is not valid.", [{ field: "policy", message: `must be one of ${LEAK_POLICIES.join(", ")}` }]);
  const now = new Date(deps.clock.now());
  await deps.db.transaction(async (tx) => {
    await tx.update(accounts).set({ leakPolicy: policy, updatedAt: now }).where(eq(accounts.id, accountId));
    await recordAudit(tx, who, { accountId, action: "leaks.policy_set", changes: { policy } }, now);
  });
  return policy;
}

/** The masked form of a token that is one of our keys, else what the reporter called it. */
function displayOf(deps: Pick<Deps, "config">, token: string, type: string | undefined): string {
  const parsed = parseKey(token, deps.config.keyPrefix);
  if (parsed.ok) {
    const body = token.slice(deps.config.keyPrefix.length + 6);
    return displayKey(deps.config.keyPrefix, parsed.env, body.slice(0, 4), body.slice(-4));
  }
  return `not a key of this server${type ? ` (${type.slice(0, 60)})` : ""}`;
}

/**
 * The one-row-per-report identity of (token hash, source, URL), hashed: a URL may be 2,000
 * characters of any script, more than a btree index row holds, and the hash's fixed width
 * and the source's spaceless name keep the parts from running into each other.
 */
function reportKeyOf(keyHash: string, source: LeakSource, url: string | null): string {
  return hashKey(`${keyHash} ${source} ${url ?? ""}`);
}

/**
 * Files reports, fast (an intake answers within a second): one row per report, keeping only
 * the token's SHA-256 and masked form. The same source reporting the same token at the same
 * place again is the row already on file. Acting on them is `processLeaks`' work.
 */
export async function recordLeakReports(deps: Pick<Deps, "db" | "clock" | "config">, reports: LeakReportInput[], who: Actor): Promise<RecordedReport[]> {
  const out: RecordedReport[] = [];
  for (let at = 0; at < reports.length; at += RECORD_CHUNK) out.push(...(await recordChunk(deps, reports.slice(at, at + RECORD_CHUNK), who)));
  return out;
}

async function recordChunk(deps: Pick<Deps, "db" | "clock" | "config">, reports: LeakReportInput[], who: Actor): Promise<RecordedReport[]> {
  if (reports.length === 0) return [];
  const now = new Date(deps.clock.now());
  const rows = reports.map((r) => {
    const keyHash = hashKey(r.token);
    // Postgres text holds no NUL: one in a reported URL would fail the whole batch.
    const url = r.url ? String(r.url).replaceAll("\0", "").slice(0, 2000) || null : null;
    return { id: newId("leak"), keyHash, display: displayOf(deps, r.token, r.type), source: r.source, url, reporter: who.actor, reportKey: reportKeyOf(keyHash, r.source, url), createdAt: now };
  });
  const hashes = [...new Set(rows.map((r) => r.keyHash))];
  const [inserted, known] = await Promise.all([
    deps.db.insert(leakReports).values(rows).onConflictDoNothing({ target: leakReports.reportKey }).returning({ reportKey: leakReports.reportKey }),
    deps.db.select({ hash: apiKeys.hash }).from(apiKeys).where(inArray(apiKeys.hash, hashes)),
  ]);
  const fresh = new Set(inserted.map((r) => r.reportKey));
  const knownHashes = new Set(known.map((k) => k.hash));
  const byKey = new Map<string, string>();
  if (fresh.size < rows.length) {
    const old = await deps.db.select({ id: leakReports.id, reportKey: leakReports.reportKey }).from(leakReports).where(inArray(leakReports.reportKey, rows.map((r) => r.reportKey)));
    for (const o of old) byKey.set(o.reportKey, o.id);
  }
  return rows.map((r) => ({ id: fresh.has(r.reportKey) ? r.id : (byKey.get(r.reportKey) ?? r.id), keyHash: r.keyHash, known: knownHashes.has(r.keyHash), repeated: !fresh.has(r.reportKey) }));
}

export interface ProcessedLeak {
  id: string;
  outcome: LeakOutcome;
  action: string | null;
  keyId: string | null;
}

/**
 * Acts on pending reports, each once: a run claims its reports by stamping them (FOR UPDATE
 * SKIP LOCKED, so two runs — an intake's, the timer's, another instance's — never take the
 * same one; a claim older than CLAIM_MS is taken up again). An unknown token is recorded
 * only; a key already revoked is recorded;
 * a key already marked leaked is a duplicate (the first report acted). Otherwise the key is
 * marked leaked (when, where, by whom), `key.leaked` is sent (in-app, webhook, mail), and the
 * account's policy — never weaker than the operators' floor — acts: revoke at once, rotate
 * (an emergency rotation with the account's emergency grace), or notify only. A test key is
 * only notified. `ids` limits the run to those reports (a portal or CLI report, answered
 * with its outcome).
 */
export async function processLeaks(deps: LeakDeps, ids?: string[]): Promise<ProcessedLeak[]> {
  if (ids?.length === 0) return [];
  const now = deps.clock.now();
  const claimed = await deps.db.transaction(async (tx) => {
    // The row locks end with this transaction, before the reports are acted on: the stamp in
    // processed_at (a pending report's claim) is what keeps another run off them until then.
    const due = await tx
      .select({ id: leakReports.id })
      .from(leakReports)
      .where(
        and(
          eq(leakReports.outcome, "pending"),
          or(isNull(leakReports.processedAt), lt(leakReports.processedAt, new Date(now - CLAIM_MS))),
          ids ? inArray(leakReports.id, ids) : undefined,
        ),
      )
      .orderBy(leakReports.createdAt)
      .limit(ids ? ids.length : BATCH)
      .for("update", { skipLocked: true });
    if (due.length === 0) return [];
    const rows = await tx
      .update(leakReports)
      .set({ processedAt: new Date(now) })
      .where(inArray(leakReports.id, due.map((d) => d.id)))
      .returning();
    return rows.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
  });
  const floor = claimed.length ? await leakPolicyFloor(deps) : "notify";
  const out: ProcessedLeak[] = [];
  for (const r of claimed) {
    try {
      out.push(await processOne(deps, r, floor));
    } catch (err) {
      deps.log.error("leak report not processed; it stays pending", { id: r.id, error: (err as Error).message });
    }
  }
  return out;
}

type ReportRow = typeof leakReports.$inferSelect;

async function settle(deps: Pick<Deps, "db" | "clock">, r: ReportRow, outcome: LeakOutcome, action: string | null, key?: { id: string; accountId: string }): Promise<ProcessedLeak> {
  // Only a report still pending is settled: another run that claimed it first wins.
  await deps.db
    .update(leakReports)
    .set({ outcome, action, keyId: key?.id ?? null, accountId: key?.accountId ?? null, processedAt: new Date(deps.clock.now()) })
    .where(and(eq(leakReports.id, r.id), eq(leakReports.outcome, "pending")));
  return { id: r.id, outcome, action, keyId: key?.id ?? null };
}

async function processOne(deps: LeakDeps, r: ReportRow, floor: LeakPolicy): Promise<ProcessedLeak> {
  const now = deps.clock.now();
  const [key] = await deps.db.select().from(apiKeys).where(eq(apiKeys.hash, r.keyHash));
  if (!key) return settle(deps, r, "unknown", null);
  const owner = { id: key.id, accountId: key.accountId };
  const status = keyStatus(key, now);
  if (status === "revoked" || status === "expired") return settle(deps, r, "already_revoked", null, owner);
  const at = new Date(now);
  // Marked once: of two reports of one key, one marks it and acts; the other is a duplicate.
  const marked = await deps.db.transaction(async (tx) => {
    const [row] = await tx
      .update(apiKeys)
      .set({ leakedAt: at, leakedUrl: r.url, leakedBy: r.reporter, updatedAt: at })
      .where(and(eq(apiKeys.id, key.id), isNull(apiKeys.leakedAt)))
      .returning({ id: apiKeys.id });
    if (!row) return false;
    const [account] = await tx.select({ policy: accounts.leakPolicy }).from(accounts).where(eq(accounts.id, key.accountId));
    const policy = key.environment === "test" ? "notify" : effectivePolicy(account?.policy ?? "rotate", floor);
    await recordAudit(tx, { actor: r.reporter }, { accountId: key.accountId, action: "key.leaked", keyId: key.id, changes: { url: r.url, source: r.source, policy } }, at);
    await emit(tx, { accountId: key.accountId, event: "key.leaked", keyId: key.id, data: { url: r.url, location: r.url, source: r.source, display: r.display, policy } }, at);
    return policy;
  });
  if (marked === false) return settle(deps, r, "duplicate", null, owner);
  await deps.keyCache.announce(key.hash);
  const who: Actor = { actor: r.reporter === "cli" ? "cli" : systemActor.actor };
  if (marked === "revoke") {
    await revokeKey(deps, key.accountId, key.id, who);
    return settle(deps, r, "acted", "revoked", owner);
  }
  if (marked === "rotate") {
    if (status === "active" && (await rotateForLeak(deps, key.accountId, key.id, r, who))) return settle(deps, r, "acted", "rotated", owner);
    // A key in a roll's grace already has its replacement, and a rotation that could not
    // start leaves a leaked key live: either is revoked now instead.
    await revokeKey(deps, key.accountId, key.id, who);
    return settle(deps, r, "acted", "revoked", owner);
  }
  return settle(deps, r, "notified", "notified", owner);
}

/**
 * An emergency rotation for a leak, its new secret kept for the owner to reveal. Nobody who
 * could take the secret is present (emergencyRotation's answer is its one showing and spends
 * the sealed copy): it is sealed into the rotation again, as a scheduled rotation's is, so the
 * owner reveals it once in the portal or the API within the reveal window. False when the
 * rotation was refused (the account's key limit, a rotation already in its grace period).
 */
async function rotateForLeak(deps: LeakDeps, accountId: string, keyId: string, r: ReportRow, who: Actor): Promise<boolean> {
  let started: Awaited<ReturnType<typeof emergencyRotation>>;
  try {
    started = await emergencyRotation(deps, accountId, keyId, { reason: `leaked${r.url ? `: ${r.url.slice(0, 200)}` : ""}` }, who);
  } catch (err) {
    if (!(err instanceof DomainError)) throw err;
    deps.log.warn("leak: the emergency rotation was refused; the key is revoked instead", { report: r.id, keyId, code: err.code });
    return false;
  }
  if (!deps.config.secretKey) throw new Error("SECRET_KEY is not set");
  // The purpose label and associated data are src/rotation/service.ts's own sealing of a rotation's secret.
  const sealed = new Sealer(deps.config.secretKey, "rotation-secrets").seal(started.secret, started.rotation.id);
  await deps.db.update(keyRotations).set({ secretSealed: sealed, revealedAt: null }).where(eq(keyRotations.id, started.rotation.id));
  return true;
}

/** Files reports and acts on them now (a portal or CLI report, answered with what was done). */
export async function reportLeaks(deps: LeakDeps, reports: LeakReportInput[], who: Actor): Promise<(RecordedReport & { outcome: LeakOutcome; action: string | null })[]> {
  const recorded = await recordLeakReports(deps, reports, who);
  const done = await processLeaks(
    deps,
    recorded.filter((r) => !r.repeated).map((r) => r.id),
  );
  const byId = new Map(done.map((d) => [d.id, d]));
  const rows = await deps.db.select({ id: leakReports.id, outcome: leakReports.outcome, action: leakReports.action }).from(leakReports).where(inArray(leakReports.id, recorded.map((r) => r.id)));
  const stored = new Map(rows.map((r) => [r.id, r]));
  return recorded.map((r) => {
    const d = byId.get(r.id) ?? stored.get(r.id);
    return { ...r, outcome: d?.outcome ?? "pending", action: d?.action ?? null };
  });
}

/** What each token is to this server (`keyport scan --check`): active, expiring, revoked, expired, or unknown. */
export async function checkTokens(deps: Pick<Deps, "db" | "clock">, tokens: string[]): Promise<Map<string, "active" | "expiring" | "revoked" | "expired" | "unknown">> {
  const hashes = [...new Set(tokens.map(hashKey))];
  const rows = hashes.length ? await deps.db.select().from(apiKeys).where(inArray(apiKeys.hash, hashes)) : [];
  const byHash = new Map(rows.map((k) => [k.hash, keyStatus(k, deps.clock.now())]));
  return new Map(tokens.map((t) => [t, byHash.get(hashKey(t)) ?? "unknown"]));
}

/** The reports of one account's keys, newest first (its Keys page), or every report (operators). */
export async function listLeakReports(deps: Pick<Deps, "db">, filter: { accountId?: string; limit?: number } = {}) {
  return deps.db
    .select()
    .from(leakReports)
    .where(filter.accountId ? eq(leakReports.accountId, filter.accountId) : undefined)
    .orderBy(sql`${leakReports.createdAt} desc`)
    .limit(filter.limit ?? 100);
}
