import { and, desc, eq, inArray, isNotNull, lte, sql } from "drizzle-orm";
import type { Deps } from "../deps.ts";
import type { Tx } from "../db/client.ts";
import { recordAudit, systemActor, type Actor } from "../audit/service.ts";
import { Sealer } from "../crypto/seal.ts";
import { newId } from "../ids.ts";
import { apiKeys } from "../keys/keys.sql.ts";
import { carryQuota, getKeyRow, keyStatus, refuseSandbox, replaceKey, type KeyRow } from "../keys/service.ts";
import { emit } from "../notify/service.ts";
import { DomainError, notFound } from "../errors.ts";
import { keyRotations, rotationPolicies } from "./rotation.sql.ts";
import { DEFAULT_POLICY, type EmergencyInput, type RotationPolicy, type RotationView, type ScheduleInput } from "./model.ts";
export { DEFAULT_POLICY, type RotationPolicy, type RotationView } from "./model.ts";

type RotationDeps = Pick<Deps, "db" | "clock" | "config" | "keyCache" | "log" | "products" | "state">;
export type RotationRow = typeof keyRotations.$inferSelect;

const HOUR = 3_600_000;
/** A rotation with no grace still leaves its owner a day to reveal the new secret. */
const MIN_REVEAL_WINDOW_MS = 24 * HOUR;
const EXPIRING_NOTICE_MS = 24 * HOUR;

function sealer(deps: Pick<Deps, "config">): Sealer {
  if (!deps.config.secretKey) throw new Error("SECRET_KEY is not set");
  return new Sealer(deps.config.secretKey, "rotation-secrets");
}

export function toRotationView(r: RotationRow): RotationView {
  const iso = (d: Date | null) => (d ? d.toISOString() : null);
  return {
    id: r.id,
    keyId: r.oldKeyId,
    newKeyId: r.newKeyId,
    state: r.state,
    reason: r.reason,
    actor: r.actor,
    emergency: r.emergency,
    gracePeriodHours: r.gracePeriodHours,
    scheduledAt: r.scheduledAt.toISOString(),
    startedAt: iso(r.startedAt),
    graceEndsAt: iso(r.graceEndsAt),
    completedAt: iso(r.completedAt),
    cancelledAt: iso(r.cancelledAt),
    failure: r.failure,
    secretAvailable: r.secretSealed !== null,
    revealedAt: iso(r.revealedAt),
  };
}

export async function getPolicy(deps: Pick<Deps, "db">, accountId: string): Promise<RotationPolicy> {
  const [row] = await deps.db.select().from(rotationPolicies).where(eq(rotationPolicies.accountId, accountId));
  return row ? { maxKeyAgeDays: row.maxKeyAgeDays, defaultGraceHours: row.defaultGraceHours, emergencyGraceHours: row.emergencyGraceHours } : { ...DEFAULT_POLICY };
}

export async function setPolicy(deps: Pick<Deps, "db" | "clock">, accountId: string, policy: RotationPolicy, who: Actor): Promise<RotationPolicy> {
  const now = new Date(deps.clock.now());
  await deps.db.transaction(async (tx) => {
    await tx
      .insert(rotationPolicies)
      .values({ accountId, ...policy, updatedAt: now })
      .onConflictDoUpdate({ target: rotationPolicies.accountId, set: { ...policy, updatedAt: now } });
    await recordAudit(tx, who, { accountId, action: "rotation.policy_changed", changes: { ...policy } }, now);
  });
  return policy;
}

function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } };
  return e.code === "23505" || e.cause?.code === "23505";
}

async function insertRotation(tx: Tx, row: typeof keyRotations.$inferInsert): Promise<RotationRow> {
  try {
    const [created] = await tx.insert(keyRotations).values(row).returning();
    return created!;
  } catch (err) {
    if (isUniqueViolation(err)) throw new DomainError("rotation_in_progress", "This key already has a rotation scheduled or in its grace period.");
    throw err;
  }
}

/** Only an active key that is not a sandbox key can be rotated (409 key_not_active otherwise). */
function assertRotatable(key: KeyRow, nowMs: number): void {
  if (keyStatus(key, nowMs) !== "active") throw new DomainError("key_not_active", "Only an active key can be rotated.");
  refuseSandbox(key, "rotated");
}

/**
 * Why a scheduled rotation cannot replace its key when it starts (the rotation fails with
 * this), or undefined when it can: the same rule as assertRotatable, a sandbox key included
 * (refuseSandbox).
 */
function whyNotRotatable(key: KeyRow | undefined, nowMs: number): string | undefined {
  if (!key) return "the key is gone";
  const status = keyStatus(key, nowMs);
  if (status !== "active") return `the key is ${status}`;
  if (key.sandboxSessionId !== null) return "the key is a sandbox key";
  return undefined;
}

/** Schedules a rotation of an active key for a time (now or later). */
export async function scheduleRotation(deps: RotationDeps, accountId: string, keyId: string, data: ScheduleInput, who: Actor): Promise<RotationView> {
  const nowMs = deps.clock.now();
  if (data.at.getTime() < nowMs - 60_000) {
    throw new DomainError("invalid_request", "The rotation is not valid.", [{ field: "at", message: "must not be in the past" }]);
  }
  const key = await getKeyRow(deps, accountId, keyId);
  assertRotatable(key, nowMs);
  const policy = await getPolicy(deps, accountId);
  const now = new Date(nowMs);
  const row = await deps.db.transaction(async (tx) => {
    const created = await insertRotation(tx, {
      id: newId("rot"),
      accountId,
      oldKeyId: keyId,
      state: "scheduled",
      reason: data.reason,
      actor: who.actor,
      gracePeriodHours: data.gracePeriodHours ?? policy.defaultGraceHours,
      scheduledAt: data.at,
      createdAt: now,
    });
    await recordAudit(tx, who, { accountId, action: "rotation.scheduled", keyId, changes: { rotationId: created.id, at: data.at.toISOString(), reason: data.reason } }, now);
    await emit(tx, { accountId, event: "key.rotation_scheduled", keyId, data: { rotationId: created.id, at: data.at.toISOString(), reason: data.reason } }, now);
    return created;
  });
  return toRotationView(row);
}

/** Why a rotation can no longer be cancelled, in words. */
const ALREADY: Record<RotationView["state"], string> = {
  scheduled: "is scheduled",
  grace_period: "has already started (the old key is in its grace period)",
  completed: "is already complete",
  cancelled: "was already cancelled",
  failed: "has failed",
};

/** Cancels a rotation that has not started: one conditional UPDATE, so it races safely with the sweep. */
export async function cancelRotation(deps: RotationDeps, accountId: string, rotationId: string, who: Actor): Promise<RotationView> {
  const now = new Date(deps.clock.now());
  return deps.db.transaction(async (tx) => {
    const [row] = await tx
      .update(keyRotations)
      .set({ state: "cancelled", cancelledAt: now })
      .where(and(eq(keyRotations.id, rotationId), eq(keyRotations.accountId, accountId), eq(keyRotations.state, "scheduled")))
      .returning();
    if (!row) {
      const [existing] = await tx.select().from(keyRotations).where(and(eq(keyRotations.id, rotationId), eq(keyRotations.accountId, accountId)));
      if (!existing) throw notFound("rotation");
      throw new DomainError("rotation_not_cancellable", `This rotation ${ALREADY[existing.state]} and can no longer be cancelled.`);
    }
    await recordAudit(tx, who, { accountId, action: "rotation.cancelled", keyId: row.oldKeyId, changes: { rotationId } }, now);
    return toRotationView(row);
  });
}

/**
 * Starts a scheduled rotation (the sweep, or an emergency): the claim is a conditional UPDATE
 * from `scheduled`, so of two runners exactly one proceeds. Then, in the same transaction,
 * the replacement key is made with the old one's settings, its secret sealed into the
 * rotation, and the old key turns `expiring` until the grace end (or is revoked at once).
 * Once committed, the new key carries the old one's monthly quota spent so far (carryQuota).
 * Returns the secret for a caller who is present (emergency), or null when not claimed.
 */
async function startRotation(deps: RotationDeps, rotationId: string, who: Actor): Promise<{ row: RotationRow; secret: string; oldHash: string } | null> {
  const nowMs = deps.clock.now();
  const now = new Date(nowMs);
  try {
    const started = await deps.db.transaction(async (tx) => {
      const [claimed] = await tx
        .update(keyRotations)
        .set({ state: "grace_period", startedAt: now })
        .where(and(eq(keyRotations.id, rotationId), eq(keyRotations.state, "scheduled")))
        .returning();
      if (!claimed) return null;
      const [old] = await tx.select().from(apiKeys).where(eq(apiKeys.id, claimed.oldKeyId)).for("update");
      const failure = whyNotRotatable(old, nowMs);
      if (!old || failure !== undefined) {
        const [failed] = await tx
          .update(keyRotations)
          .set({ state: "failed", failure: failure ?? "the key is gone" })
          .where(eq(keyRotations.id, rotationId))
          .returning();
        await recordAudit(tx, who, { accountId: claimed.accountId, action: "rotation.failed", keyId: claimed.oldKeyId, changes: { rotationId, failure: failed!.failure } }, now);
        return { row: failed!, secret: "", oldHash: "" };
      }
      const { created, previous } = await replaceKey(tx, deps, old, claimed.gracePeriodHours, now, "rotated");
      const graceEndsAt = new Date(nowMs + Math.round(claimed.gracePeriodHours * HOUR));
      const revealUntil = new Date(Math.max(graceEndsAt.getTime(), nowMs + MIN_REVEAL_WINDOW_MS));
      const [row] = await tx
        .update(keyRotations)
        .set({ newKeyId: created.row.id, graceEndsAt, revealUntil, secretSealed: sealer(deps).seal(created.secret, rotationId) })
        .where(eq(keyRotations.id, rotationId))
        .returning();
      await recordAudit(
        tx,
        who,
        { accountId: claimed.accountId, action: "rotation.started", keyId: old.id, changes: { rotationId, newKeyId: created.row.id, graceEndsAt: graceEndsAt.toISOString() } },
        now,
      );
      await recordAudit(tx, who, { accountId: claimed.accountId, action: "key.created", keyId: created.row.id, changes: { name: old.name, rotatedFrom: old.id } }, now);
      await emit(
        tx,
        { accountId: claimed.accountId, event: "key.rotation_started", keyId: old.id, data: { rotationId, newKeyId: created.row.id, graceEndsAt: graceEndsAt.toISOString(), reason: claimed.reason } },
        now,
      );
      return { row: row!, secret: created.secret, oldHash: previous.hash };
    });
    if (started !== null && started.row.state !== "failed" && started.row.newKeyId !== null) await carryQuota(deps, started.row.oldKeyId, started.row.newKeyId, nowMs);
    return started;
  } catch (err) {
    if (!(err instanceof DomainError)) throw err;
    // A business refusal (e.g. the account's key limit): the rotation fails visibly, once.
    const [failed] = await deps.db
      .update(keyRotations)
      .set({ state: "failed", failure: err.detail })
      .where(and(eq(keyRotations.id, rotationId), eq(keyRotations.state, "scheduled")))
      .returning();
    return failed ? { row: failed, secret: "", oldHash: "" } : null;
  }
}

/**
 * Rotates now, with the policy's emergency grace (0 = the old key is revoked at once). A
 * rotation still scheduled for the key is cancelled in favour of this one. The caller is
 * present, so the answer is the new secret's one showing (nothing waits sealed).
 */
export async function emergencyRotation(deps: RotationDeps, accountId: string, keyId: string, { reason }: EmergencyInput, who: Actor): Promise<{ rotation: RotationView; secret: string }> {
  const key = await getKeyRow(deps, accountId, keyId);
  const nowMs = deps.clock.now();
  assertRotatable(key, nowMs);
  const policy = await getPolicy(deps, accountId);
  const now = new Date(nowMs);
  const id = newId("rot");
  await deps.db.transaction(async (tx) => {
    await tx
      .update(keyRotations)
      .set({ state: "cancelled", cancelledAt: now })
      .where(and(eq(keyRotations.oldKeyId, keyId), eq(keyRotations.state, "scheduled")));
    await insertRotation(tx, {
      id,
      accountId,
      oldKeyId: keyId,
      state: "scheduled",
      reason,
      actor: who.actor,
      emergency: true,
      gracePeriodHours: policy.emergencyGraceHours,
      scheduledAt: now,
      createdAt: now,
    });
    await recordAudit(tx, who, { accountId, action: "rotation.emergency", keyId, changes: { rotationId: id, reason, gracePeriodHours: policy.emergencyGraceHours } }, now);
  });
  const started = await startRotation(deps, id, who);
  if (!started || started.row.state === "failed") {
    throw new DomainError("rotation_failed", started?.row.failure ?? "The rotation could not start.");
  }
  await deps.keyCache.announce(started.oldHash);
  // This answer is the secret's one showing: the sealed copy is spent at once.
  const [shown] = await deps.db
    .update(keyRotations)
    .set({ secretSealed: null, revealedAt: new Date(deps.clock.now()) })
    .where(eq(keyRotations.id, id))
    .returning();
  return { rotation: toRotationView(shown!), secret: started.secret };
}

/**
 * Reveals the new secret of a started rotation once: the sealed copy is read and deleted in
 * one transaction (row locked), so a second reveal finds nothing (410).
 */
export async function revealRotationSecret(deps: RotationDeps, accountId: string, rotationId: string, who: Actor): Promise<{ rotation: RotationView; secret: string }> {
  const now = new Date(deps.clock.now());
  return deps.db.transaction(async (tx) => {
    const [row] = await tx
      .select()
      .from(keyRotations)
      .where(and(eq(keyRotations.id, rotationId), eq(keyRotations.accountId, accountId)))
      .for("update");
    if (!row) throw notFound("rotation");
    if (!row.secretSealed) {
      throw new DomainError("secret_gone", row.revealedAt ? "This secret was already revealed; it is shown only once." : "There is no secret to reveal for this rotation.");
    }
    const secret = sealer(deps).open(row.secretSealed, row.id);
    const [after] = await tx.update(keyRotations).set({ secretSealed: null, revealedAt: now }).where(eq(keyRotations.id, rotationId)).returning();
    await recordAudit(tx, who, { accountId, action: "rotation.secret_revealed", keyId: row.newKeyId, changes: { rotationId } }, now);
    return { rotation: toRotationView(after!), secret };
  });
}

export async function listRotations(deps: Pick<Deps, "db">, accountId: string, filter: { keyId?: string; inFlight?: boolean } = {}): Promise<RotationView[]> {
  const rows = await deps.db
    .select()
    .from(keyRotations)
    .where(
      and(
        eq(keyRotations.accountId, accountId),
        filter.keyId ? sql`(${keyRotations.oldKeyId} = ${filter.keyId} or ${keyRotations.newKeyId} = ${filter.keyId})` : undefined,
        filter.inFlight ? inArray(keyRotations.state, ["scheduled", "grace_period"]) : undefined,
      ),
    )
    .orderBy(desc(keyRotations.createdAt), desc(keyRotations.id))
    .limit(200);
  return rows.map(toRotationView);
}

/** Rotations whose new secret waits to be revealed (the portal's banner). */
export async function pendingReveals(deps: Pick<Deps, "db">, accountId: string): Promise<RotationView[]> {
  const rows = await deps.db
    .select()
    .from(keyRotations)
    .where(and(eq(keyRotations.accountId, accountId), isNotNull(keyRotations.secretSealed)))
    .orderBy(desc(keyRotations.startedAt));
  return rows.map(toRotationView);
}

export interface SweepResult {
  ran: boolean;
  started: number;
  completed: number;
  scheduled: number;
  expiringNotices: number;
  secretsExpired: number;
}

// pg_try_advisory_xact_lock key of the sweep: one runner at a time across instances.
const SWEEP_LOCK = 7_345_010;

/**
 * One pass of the rotation sweep. Takes a Postgres advisory lock so one instance sweeps at
 * a time; every transition is still a conditional UPDATE, so a crash or a second runner
 * cannot apply one twice.
 */
export async function runSweep(deps: RotationDeps): Promise<SweepResult> {
  const result: SweepResult = { ran: false, started: 0, completed: 0, scheduled: 0, expiringNotices: 0, secretsExpired: 0 };
  const nowMs = deps.clock.now();
  const now = new Date(nowMs);
  const announce: string[] = [];
  await deps.db.transaction(async (tx) => {
    const lock = await tx.execute<{ ok: boolean }>(sql`select pg_try_advisory_xact_lock(${SWEEP_LOCK}) as ok`);
    const ok = (Array.isArray(lock) ? lock : (lock as { rows: { ok: boolean }[] }).rows)[0]?.ok;
    if (!ok) return;
    result.ran = true;

    // Keys over their account's maximum age get a rotation now (policy default 90 days).
    const inserted = await tx.execute(sql`
      insert into key_rotations (id, account_id, old_key_id, state, reason, actor, emergency, grace_period_hours, scheduled_at, created_at)
      select 'rot_' || substr(md5(random()::text || k.id), 1, 16), k.account_id, k.id, 'scheduled',
             'policy: key older than ' || coalesce(p.max_key_age_days, 90) || ' days', 'system', false,
             coalesce(p.default_grace_hours, 72), ${now.toISOString()}::timestamptz, ${now.toISOString()}::timestamptz
      from api_keys k left join rotation_policies p on p.account_id = k.account_id
      where k.revoked_at is null and k.grace_ends_at is null
        and k.sandbox_session_id is null
        and (k.expires_at is null or k.expires_at > ${now.toISOString()}::timestamptz)
        and coalesce(p.max_key_age_days, 90) > 0
        and k.created_at <= ${now.toISOString()}::timestamptz - make_interval(days => coalesce(p.max_key_age_days, 90))
        and not exists (select 1 from key_rotations r where r.old_key_id = k.id and r.state in ('scheduled', 'grace_period'))
      on conflict do nothing
      returning id, account_id, old_key_id, reason`);
    const fresh = Array.isArray(inserted) ? inserted : (inserted as { rows: unknown[] }).rows;
    for (const r of fresh as { id: string; account_id: string; old_key_id: string; reason: string }[]) {
      await recordAudit(tx, systemActor, { accountId: r.account_id, action: "rotation.scheduled", keyId: r.old_key_id, changes: { rotationId: r.id, reason: r.reason } }, now);
      await emit(tx, { accountId: r.account_id, event: "key.rotation_scheduled", keyId: r.old_key_id, data: { rotationId: r.id, at: now.toISOString(), reason: r.reason } }, now);
    }
    result.scheduled = fresh.length;

    // 24 h before a grace ends: one notice per rotation (the claim is the conditional UPDATE).
    const expiring = await tx
      .update(keyRotations)
      .set({ expiringNotifiedAt: now })
      .where(and(eq(keyRotations.state, "grace_period"), sql`${keyRotations.expiringNotifiedAt} is null`, lte(keyRotations.graceEndsAt, new Date(nowMs + EXPIRING_NOTICE_MS)), sql`${keyRotations.graceEndsAt} > ${now.toISOString()}::timestamptz`))
      .returning();
    for (const r of expiring) {
      await emit(tx, { accountId: r.accountId, event: "key.expiring", keyId: r.oldKeyId, data: { rotationId: r.id, graceEndsAt: r.graceEndsAt?.toISOString() } }, now);
    }
    result.expiringNotices = expiring.length;

    // Grace over: the rotation completes, the old key is revoked, the sealed secret goes.
    const done = await tx
      .update(keyRotations)
      .set({ state: "completed", completedAt: now })
      .where(and(eq(keyRotations.state, "grace_period"), lte(keyRotations.graceEndsAt, now)))
      .returning();
    for (const r of done) {
      const [old] = await tx
        .update(apiKeys)
        .set({ revokedAt: r.graceEndsAt ?? now, updatedAt: now })
        .where(and(eq(apiKeys.id, r.oldKeyId), sql`${apiKeys.revokedAt} is null`))
        .returning({ hash: apiKeys.hash });
      if (old) announce.push(old.hash);
      await recordAudit(tx, systemActor, { accountId: r.accountId, action: "rotation.completed", keyId: r.oldKeyId, changes: { rotationId: r.id, newKeyId: r.newKeyId } }, now);
      await emit(tx, { accountId: r.accountId, event: "key.rotation_completed", keyId: r.oldKeyId, data: { rotationId: r.id, newKeyId: r.newKeyId } }, now);
      await emit(tx, { accountId: r.accountId, event: "key.revoked", keyId: r.oldKeyId, data: { rotationId: r.id, reason: "rotation completed" } }, now);
    }
    result.completed = done.length;

    const expired = await tx
      .update(keyRotations)
      .set({ secretSealed: null })
      .where(and(isNotNull(keyRotations.secretSealed), lte(keyRotations.revealUntil, now)))
      .returning({ id: keyRotations.id });
    result.secretsExpired = expired.length;
  });
  if (!result.ran) return result;

  // Due rotations start one transaction each, claimed by a conditional UPDATE.
  const due = await deps.db
    .select({ id: keyRotations.id })
    .from(keyRotations)
    .where(and(eq(keyRotations.state, "scheduled"), lte(keyRotations.scheduledAt, now)))
    .orderBy(keyRotations.scheduledAt)
    .limit(500);
  for (const { id } of due) {
    const started = await startRotation(deps, id, systemActor);
    if (started && started.row.state === "grace_period") {
      result.started++;
      announce.push(started.oldHash);
    }
  }
  for (const hash of announce) await deps.keyCache.announce(hash);
  if (result.started || result.completed || result.scheduled) deps.log.info("rotation sweep", { ...result });
  return result;
}
