import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { and, count, eq, inArray, isNotNull, isNull, lt, or } from "drizzle-orm";
import * as OTPAuth from "otpauth";
import QRCode from "qrcode";
import type { Db, Tx } from "../db/client.ts";
import type { Deps } from "../deps.ts";
import { Sealer } from "../crypto/seal.ts";
import { recordAudit, type Actor } from "../audit/service.ts";
import { enqueueMail } from "../email/outbox.ts";
import { DomainError, notFound, type FieldError } from "../errors.ts";
import { newId } from "../ids.ts";
import { revokeSandboxKeys } from "../keys/service.ts";
import { instanceSettings } from "../leaks/leaks.sql.ts";
import { accounts, recoveryCodes, sessions } from "./accounts.sql.ts";
import { checkPassword, reservePasswordAttempt } from "./login.ts";
import type { Account } from "./service.ts";
import { renewSessions, type Session } from "./sessions.ts";

/**
 * Two-factor sign-in: TOTP (RFC 6238, by `otpauth`) with ten single-use recovery codes.
 *
 * - The secret is sealed (AES-256-GCM under SECRET_KEY, bound to the account id), since each
 *   sign-in must read it back; an enrolment under way keeps its new secret sealed in the
 *   account's row until a code from it confirms it.
 * - A code is accepted once: the account's last accepted time step is raised by one
 *   conditional UPDATE, so the same code sent twice — even at once — passes once.
 * - Recovery codes: 80 random bits each, kept as SHA-256; a use is one UPDATE … WHERE used_at
 *   IS NULL RETURNING, so two uses of one code at once cannot both pass.
 * - Wrong codes spend the password budgets (reservePasswordAttempt: reserved before verifying).
 * - Between the password and the code there is no session: a sealed, single-purpose token
 *   (5 minutes, bound to the account and its password) carries the sign-in (sealPendingSignIn).
 */

/** RFC 6238's defaults, which every authenticator app supports. */
const TOTP_PARAMS = { algorithm: "SHA1", digits: 6, period: 30 } as const;
/** One step either side (RFC 6238 §5.2's "one time step delay" for a slow typist or clock). */
const TOTP_WINDOW = 1;
/** 160 bits, the HMAC-SHA1 key length RFC 4226 §4 recommends. */
const SECRET_BYTES = 20;
export const RECOVERY_CODE_COUNT = 10;
/** How long the step between the password and the code may take. */
export const PENDING_SIGNIN_MS = 5 * 60_000;
/** How long a sign-in held for an enrolment the operators require may take (installing an app included). */
export const PENDING_ENROLMENT_MS = 15 * 60_000;
/** The instance setting (instance_settings) that requires two-factor sign-in of every account. */
const REQUIRED_SETTING = "require_two_factor";
const ISSUER = "Keyport";

function sealer(deps: Pick<Deps, "config">, purpose: string): Sealer {
  if (!deps.config.secretKey) throw new Error("SECRET_KEY is not set");
  return new Sealer(deps.config.secretKey, purpose);
}
const secretSealer = (deps: Pick<Deps, "config">) => sealer(deps, "totp-secrets");
const tokenSealer = (deps: Pick<Deps, "config">) => sealer(deps, "pending-sign-in");
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
const pendingAad = (accountId: string) => `pending:${accountId}`;

type TwoFactorDeps = Pick<Deps, "db" | "clock" | "config" | "state" | "passwords">;

export interface TwoFactorStatus {
  enabled: boolean;
  enabledAt: string | null;
  /** Unused recovery codes left. */
  recoveryCodesLeft: number;
  /** The operators require two-factor sign-in of every account. */
  required: boolean;
}

/** Whether the operators require two-factor sign-in of every account. */
export async function twoFactorRequired(deps: Pick<Deps, "db">): Promise<boolean> {
  const [row] = await deps.db.select({ value: instanceSettings.value }).from(instanceSettings).where(eq(instanceSettings.key, REQUIRED_SETTING));
  return row?.value === "true";
}

export async function twoFactorStatus(deps: Pick<Deps, "db">, accountId: string): Promise<TwoFactorStatus> {
  const [[row], [left], required] = await Promise.all([
    deps.db.select({ enabledAt: accounts.totpEnabledAt }).from(accounts).where(eq(accounts.id, accountId)),
    deps.db.select({ n: count() }).from(recoveryCodes).where(and(eq(recoveryCodes.accountId, accountId), isNull(recoveryCodes.usedAt))),
    twoFactorRequired(deps),
  ]);
  if (!row) throw notFound("account");
  return { enabled: row.enabledAt !== null, enabledAt: row.enabledAt?.toISOString() ?? null, recoveryCodesLeft: row.enabledAt ? (left?.n ?? 0) : 0, required };
}

/** What an enrolment shows once: the secret for typing in, its otpauth URI as a QR code (SVG). */
export interface Enrolment {
  /** Base32, grouped by four for reading. */
  secret: string;
  /** An `<svg>` made by `qrcode` from the otpauth URI: path data only, no text of ours in it. */
  safeQrSvg: string;
}

function totpFor(secret: OTPAuth.Secret, label: string): OTPAuth.TOTP {
  return new OTPAuth.TOTP({ issuer: ISSUER, label, secret, ...TOTP_PARAMS });
}

async function enrolmentView(secretBase32: string, email: string): Promise<Enrolment> {
  const uri = totpFor(OTPAuth.Secret.fromBase32(secretBase32), email).toString();
  const safeQrSvg = await QRCode.toString(uri, { type: "svg", errorCorrectionLevel: "M", margin: 2, width: 200 });
  return { secret: secretBase32.replace(/(.{4})(?=.)/g, "$1 "), safeQrSvg };
}

async function accountRow(db: Db | Tx, accountId: string) {
  const [row] = await db.select().from(accounts).where(eq(accounts.id, accountId));
  if (!row) throw notFound("account");
  return row;
}

const alreadyOn = () => new DomainError("invalid_request", "Two-factor sign-in is already on.", [{ field: "code", message: "two-factor sign-in is already on for this account" }]);

/**
 * Starts (or starts again) an enrolment: a new secret, sealed into the account's row as the
 * pending one (replacing any earlier pending one), shown once by the answer.
 */
export async function startEnrolment(deps: Pick<Deps, "db" | "config">, accountId: string): Promise<Enrolment> {
  const row = await accountRow(deps.db, accountId);
  if (row.totpEnabledAt) throw alreadyOn();
  const secret = new OTPAuth.Secret({ size: SECRET_BYTES }).base32;
  await deps.db.update(accounts).set({ totpPendingSealed: secretSealer(deps).seal(secret, pendingAad(accountId)) }).where(eq(accounts.id, accountId));
  return enrolmentView(secret, row.email);
}

/** The enrolment under way, again, for the answer to its refused confirmation (the same form's page); null if none. */
export async function pendingEnrolment(deps: Pick<Deps, "db" | "config">, accountId: string): Promise<Enrolment | null> {
  const row = await accountRow(deps.db, accountId);
  if (row.totpEnabledAt || !row.totpPendingSealed) return null;
  return enrolmentView(secretSealer(deps).open(row.totpPendingSealed, pendingAad(accountId)), row.email);
}

/** The time step a code is valid for against `secret` now (± TOTP_WINDOW), or null. */
function acceptedStep(secretBase32: string, code: string, now: number): number | null {
  const totp = totpFor(OTPAuth.Secret.fromBase32(secretBase32), "");
  const delta = totp.validate({ token: code, timestamp: now, window: TOTP_WINDOW });
  return delta === null ? null : totp.counter({ timestamp: now }) + delta;
}

/** A code as typed: spaces and dashes dropped; lowercase (recovery codes). */
const normalise = (code: string) => code.replace(/[\s-]/g, "").toLowerCase();
const isTotpCode = (code: string) => /^\d{6}$/.test(code);

/**
 * Crockford's base32 alphabet: no i, l, o or u, so a code read off paper is typed right
 * (i and l are read as 1, o as 0). 16 characters × 5 bits = 80 bits per code.
 */
const CODE_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
const CODE_LENGTH = 16;

function newRecoveryCode(): string {
  // 256 is a multiple of 32: each byte's low five bits are uniform.
  const chars = [...randomBytes(CODE_LENGTH)].map((b) => CODE_ALPHABET[b & 31]).join("");
  return chars.replace(/(.{4})(?=.)/g, "$1-");
}

/** A recovery code as typed, in the form its hash was taken of (or null when it cannot be one). */
function recoveryCodeKey(code: string): string | null {
  const c = normalise(code).replace(/[il]/g, "1").replace(/o/g, "0");
  return c.length === CODE_LENGTH && [...c].every((ch) => CODE_ALPHABET.includes(ch)) ? c : null;
}

/** Ten new codes for the account, replacing every earlier one (used or not), inside the caller's transaction. */
async function replaceRecoveryCodes(tx: Tx, accountId: string, now: Date): Promise<string[]> {
  const codes = Array.from({ length: RECOVERY_CODE_COUNT }, newRecoveryCode);
  await tx.delete(recoveryCodes).where(eq(recoveryCodes.accountId, accountId));
  await tx.insert(recoveryCodes).values(codes.map((c) => ({ id: newId("rc"), accountId, codeHash: sha256(recoveryCodeKey(c)!), createdAt: now })));
  return codes;
}

export const PASSWORD_THROTTLED = "too many wrong passwords or codes: wait 15 minutes and try again";

/**
 * The current password of a form, checked against the sign-in budgets (reserved first): a
 * field error for a wrong one, `too_many_attempts` past the budgets (nothing verified).
 */
async function passwordProblem(deps: Pick<Deps, "state" | "passwords">, row: { email: string; passwordHash: string }, password: string, who: Actor): Promise<FieldError | null> {
  const attempt = await reservePasswordAttempt(deps, row.email, who.ip);
  if (!attempt) throw new DomainError("too_many_attempts", "Nothing was changed.", [{ field: "password", message: PASSWORD_THROTTLED }], 15 * 60);
  if (await deps.passwords.verify(String(password ?? "").slice(0, 256), row.passwordHash)) {
    await attempt.succeeded();
    return null;
  }
  return { field: "password", message: "is not your current password" };
}

/**
 * Turns two-factor sign-in on with the pending secret, once a current code from it is given
 * (and, from Settings, the current password: `password`; a sign-in held for enrolment proved
 * it minutes ago and passes none). In one transaction: the secret moves from pending to
 * current — only if it is still the pending one and nothing enabled meanwhile — with the
 * code's step as the last accepted one (the confirming code cannot sign in), ten recovery
 * codes, the audit event and the security mail. Returns the codes, to be shown once.
 */
export async function confirmEnrolment(deps: TwoFactorDeps, accountId: string, input: { code: string; password?: string }, who: Actor): Promise<string[]> {
  return (await enableTwoFactor(deps, accountId, input, who, async () => undefined)).codes;
}

/**
 * Turning two-factor sign-in on from Settings: confirmEnrolment, and in the same transaction
 * every session of the account ends, this one too, and the caller's browser gets a new one (a
 * new id, secret and CSRF token: renewSessions), as after a password change — a session
 * opened or fixed before the second factor guarded the account does not outlive it (OWASP
 * Session Management: renew the session ID after a privilege change). Returns the codes, to
 * be shown once, and the new session.
 */
export async function turnOnTwoFactor(
  deps: TwoFactorDeps,
  accountId: string,
  input: { code: string; password: string },
  who: Actor,
): Promise<{ codes: string[]; renewed: { token: string; session: Session } }> {
  const { codes, also } = await enableTwoFactor(deps, accountId, input, who, (tx, row) => renewSessions(tx, deps, row, { ip: who.ip, userAgent: who.userAgent }));
  return { codes, renewed: also };
}

async function enableTwoFactor<T>(
  deps: TwoFactorDeps,
  accountId: string,
  input: { code: string; password?: string },
  who: Actor,
  also: (tx: Tx, row: typeof accounts.$inferSelect) => Promise<T>,
): Promise<{ codes: string[]; also: T }> {
  const row = await accountRow(deps.db, accountId);
  if (row.totpEnabledAt) throw alreadyOn();
  if (!row.totpPendingSealed) throw new DomainError("invalid_request", "No enrolment is under way.", [{ field: "code", message: "start again: no enrolment is under way" }]);
  const errors: FieldError[] = [];
  if (input.password !== undefined) {
    const wrong = await passwordProblem(deps, row, input.password, who);
    if (wrong) errors.push(wrong);
  }
  const secret = secretSealer(deps).open(row.totpPendingSealed, pendingAad(accountId));
  const code = normalise(String(input.code ?? ""));
  const step = isTotpCode(code) ? acceptedStep(secret, code, deps.clock.now()) : null;
  if (step === null) errors.push({ field: "code", message: code ? "is not the current code of this secret: check the app's clock and try the next code" : "enter the 6-digit code the app shows" });
  if (errors.length) throw new DomainError("invalid_request", "Two-factor sign-in was not turned on.", errors);
  const now = new Date(deps.clock.now());
  return deps.db.transaction(async (tx) => {
    const enabled = await tx
      .update(accounts)
      .set({ totpSecretSealed: secretSealer(deps).seal(secret, accountId), totpEnabledAt: now, totpLastStep: step, totpPendingSealed: null, updatedAt: now })
      .where(and(eq(accounts.id, accountId), isNull(accounts.totpEnabledAt), eq(accounts.totpPendingSealed, row.totpPendingSealed!)))
      .returning({ id: accounts.id });
    if (!enabled.length) throw new DomainError("invalid_request", "Two-factor sign-in was not turned on.", [{ field: "code", message: "the enrolment changed meanwhile (another tab?): start again" }]);
    const codes = await replaceRecoveryCodes(tx, accountId, now);
    await recordAudit(tx, who, { accountId, action: "account.2fa_enabled" }, now);
    await enqueueMail(tx, deps, { accountId, to: row.email, kind: "two_factor_enabled" });
    return { codes, also: await also(tx, row) };
  });
}

/**
 * The enrolment the operators require, at sign-in: confirmEnrolment with the code alone (the
 * pending token proves the password), and then the sign-in is complete (`account.login`).
 */
export async function completeEnrolmentSignIn(deps: TwoFactorDeps, accountId: string, code: string, who: Omit<Actor, "actor">): Promise<string[]> {
  const actor = { actor: `account:${accountId}`, ...who };
  const codes = await confirmEnrolment(deps, accountId, { code }, actor);
  await recordAudit(deps.db, actor, { accountId, action: "account.login", changes: { secondFactor: "totp", enrolled: true } }, new Date(deps.clock.now()));
  return codes;
}

/** New recovery codes (the current password first); every earlier code stops working. Returns them, to be shown once. */
export async function regenerateRecoveryCodes(deps: TwoFactorDeps, accountId: string, input: { password: string }, who: Actor): Promise<string[]> {
  const row = await accountRow(deps.db, accountId);
  if (!row.totpEnabledAt) throw new DomainError("invalid_request", "Two-factor sign-in is off.", [{ field: "password", message: "two-factor sign-in is off: there are no recovery codes" }]);
  const wrong = await passwordProblem(deps, row, input.password, who);
  if (wrong) throw new DomainError("invalid_request", "No new codes were made.", [wrong]);
  const now = new Date(deps.clock.now());
  return deps.db.transaction(async (tx) => {
    const codes = await replaceRecoveryCodes(tx, accountId, now);
    await recordAudit(tx, who, { accountId, action: "account.recovery_codes_regenerated" }, now);
    return codes;
  });
}

/** The secret, the step and the codes of an account's two-factor sign-in, gone (inside the caller's transaction). */
async function clearTwoFactor(tx: Tx, accountId: string, now: Date): Promise<boolean> {
  const cleared = await tx
    .update(accounts)
    .set({ totpSecretSealed: null, totpEnabledAt: null, totpLastStep: null, totpPendingSealed: null, updatedAt: now })
    .where(and(eq(accounts.id, accountId), or(isNotNull(accounts.totpEnabledAt), isNotNull(accounts.totpPendingSealed))))
    .returning({ id: accounts.id });
  await tx.delete(recoveryCodes).where(eq(recoveryCodes.accountId, accountId));
  return cleared.length > 0;
}

/**
 * Turns two-factor sign-in off: the current password and a current code (or a recovery code)
 * first, both checked against the sign-in budgets. Refused while the operators require it.
 */
export async function disableTwoFactor(deps: TwoFactorDeps, accountId: string, input: { password: string; code: string }, who: Actor): Promise<void> {
  const row = await accountRow(deps.db, accountId);
  if (!row.totpEnabledAt) throw new DomainError("invalid_request", "Two-factor sign-in is already off.", [{ field: "code", message: "two-factor sign-in is already off" }]);
  if (await twoFactorRequired(deps)) throw new DomainError("invalid_request", "Two-factor sign-in stays on.", [{ field: "code", message: "the operators of this service require two-factor sign-in for every account" }]);
  const errors: FieldError[] = [];
  const wrong = await passwordProblem(deps, row, input.password, who);
  if (wrong) errors.push(wrong);
  else {
    // The code is a guess like any other: reserved against the same budgets.
    const attempt = await reservePasswordAttempt(deps, row.email, who.ip);
    if (!attempt) throw new DomainError("too_many_attempts", "Nothing was changed.", [{ field: "code", message: PASSWORD_THROTTLED }], 15 * 60);
    if (await useSecondFactor(deps, row, input.code, who)) await attempt.succeeded();
    else errors.push({ field: "code", message: "is not a current code or an unused recovery code" });
  }
  if (errors.length) throw new DomainError("invalid_request", "Two-factor sign-in was not turned off.", errors);
  const now = new Date(deps.clock.now());
  await deps.db.transaction(async (tx) => {
    await clearTwoFactor(tx, accountId, now);
    await recordAudit(tx, who, { accountId, action: "account.2fa_disabled" }, now);
    await enqueueMail(tx, deps, { accountId, to: row.email, kind: "two_factor_disabled" });
  });
}

/**
 * An operator's reset for a user who lost both the device and the codes: two-factor sign-in
 * off, and every session of the account ended (whoever holds one must sign in again, and
 * enrol anew where the operators require it). Audited in the account's log, by the operator.
 */
export async function resetTwoFactor(deps: Deps, accountId: string, who: Actor): Promise<void> {
  const row = await accountRow(deps.db, accountId);
  const now = new Date(deps.clock.now());
  await deps.db.transaction(async (tx) => {
    const was = await clearTwoFactor(tx, accountId, now);
    await tx.delete(sessions).where(eq(sessions.accountId, accountId));
    await recordAudit(tx, who, { accountId, action: "account.2fa_reset", changes: { wasEnabled: was } }, now);
    if (was) await enqueueMail(tx, deps, { accountId, to: row.email, kind: "two_factor_disabled", data: { byOperator: true } });
  });
  await revokeSandboxKeys(deps, { accountId, exceptSessionId: "" }, who);
}

/**
 * Requires two-factor sign-in of every account, or stops requiring it; audited in the
 * operators' log (`instance`). Turning it on ends the sessions of every account not enrolled
 * yet, so each must sign in again and then enrol (with no session meanwhile, neither the
 * portal nor the management API is theirs); API keys keep working. The operator turning it on
 * must have enrolled first: otherwise they would sign themselves out.
 */
export async function setTwoFactorRequired(deps: Deps, required: boolean, operatorAccountId: string, who: Actor): Promise<{ sessionsEnded: number }> {
  if (required) {
    const row = await accountRow(deps.db, operatorAccountId);
    if (!row.totpEnabledAt) throw new DomainError("invalid_request", "Two-factor sign-in is not required yet.", [{ field: "required", message: "turn on two-factor sign-in for your own account first (Settings), or you would be signed out" }]);
  }
  const now = new Date(deps.clock.now());
  const ended = await deps.db.transaction(async (tx) => {
    const value = String(required);
    await tx.insert(instanceSettings).values({ key: REQUIRED_SETTING, value, updatedAt: now }).onConflictDoUpdate({ target: instanceSettings.key, set: { value, updatedAt: now } });
    let rows: { accountId: string }[] = [];
    if (required) {
      const notEnrolled = tx.select({ id: accounts.id }).from(accounts).where(isNull(accounts.totpEnabledAt));
      rows = await tx.delete(sessions).where(inArray(sessions.accountId, notEnrolled)).returning({ accountId: sessions.accountId });
    }
    await recordAudit(tx, who, { accountId: "instance", action: "instance.2fa_required_set", changes: { required, sessionsEnded: rows.length } }, now);
    return rows;
  });
  // The try-it keys end with their sessions (as at sign-out).
  for (const accountId of new Set(ended.map((r) => r.accountId))) await revokeSandboxKeys(deps, { accountId, exceptSessionId: "" }, who);
  return { sessionsEnded: ended.length };
}

/**
 * Checks a second factor of an account with two-factor sign-in: a current TOTP code (not of
 * a step already used) or an unused recovery code, which this spends. No throttle here (the
 * callers reserve first). The factor used, or null.
 */
async function useSecondFactor(deps: Pick<Deps, "db" | "clock" | "config">, row: Account, typed: string, who: Actor): Promise<"totp" | "recovery_code" | null> {
  if (!row.totpEnabledAt || !row.totpSecretSealed) return null;
  const code = normalise(String(typed ?? "").slice(0, 64));
  const now = deps.clock.now();
  if (isTotpCode(code)) {
    const step = acceptedStep(secretSealer(deps).open(row.totpSecretSealed, row.id), code, now);
    if (step === null) return null;
    // The step is raised only past the last one accepted: a replayed code (or a second use
    // sent at the same moment) finds the row already at its step and is refused.
    const raised = await deps.db
      .update(accounts)
      .set({ totpLastStep: step })
      .where(and(eq(accounts.id, row.id), isNotNull(accounts.totpEnabledAt), or(isNull(accounts.totpLastStep), lt(accounts.totpLastStep, step))))
      .returning({ id: accounts.id });
    return raised.length ? "totp" : null;
  }
  const key = recoveryCodeKey(code);
  if (!key) return null;
  const at = new Date(now);
  return deps.db.transaction(async (tx) => {
    const spent = await tx
      .update(recoveryCodes)
      .set({ usedAt: at })
      .where(and(eq(recoveryCodes.accountId, row.id), eq(recoveryCodes.codeHash, sha256(key)), isNull(recoveryCodes.usedAt)))
      .returning({ id: recoveryCodes.id });
    if (!spent.length) return null;
    const [left] = await tx.select({ n: count() }).from(recoveryCodes).where(and(eq(recoveryCodes.accountId, row.id), isNull(recoveryCodes.usedAt)));
    await recordAudit(tx, who, { accountId: row.id, action: "account.recovery_code_used", changes: { left: left?.n ?? 0 } }, at);
    // A security notice: a recovery code stands in for the device, so its owner hears of each use.
    await enqueueMail(tx, deps, { accountId: row.id, to: row.email, kind: "recovery_code_used", data: { left: left?.n ?? 0 } });
    return "recovery_code" as const;
  });
}

/** What a sign-in needs after the password: nothing, a code, or an enrolment the operators require. */
export type SignInStep = "code" | "enrol" | null;

export type SignInOutcome = { account: Account; step: SignInStep };

/**
 * The password step of signing in (checkPassword: throttled, audited when wrong), then what
 * else the account needs. Only with nothing more is the sign-in complete and audited
 * (`account.login`); otherwise the caller carries it in a pending token (sealPendingSignIn).
 */
export async function signIn(deps: Pick<Deps, "db" | "state" | "clock" | "passwords">, input: { email: string; password: string }, who: Omit<Actor, "actor">): Promise<SignInOutcome> {
  const account = await checkPassword(deps, input, who);
  const step: SignInStep = account.totpEnabledAt ? "code" : (await twoFactorRequired(deps)) ? "enrol" : null;
  if (!step) await recordAudit(deps.db, { actor: `account:${account.id}`, ...who }, { accountId: account.id, action: "account.login" }, new Date(deps.clock.now()));
  return { account, step };
}

export class TwoFactorThrottled extends DomainError {
  constructor() {
    super("too_many_attempts", "Too many failed sign-in attempts. Wait 15 minutes and try again.", [{ field: "code", message: "too many wrong codes: wait 15 minutes and try again" }], 15 * 60);
  }
}

/**
 * The second step of signing in: a code or a recovery code, reserved against the password
 * budgets first (the same counters: a guess counts whichever step it is made at; past them
 * `too_many_attempts`, nothing verified). A wrong one is `invalid_credentials` on the field
 * "code" and audited (`account.login_2fa_failed`); a right one completes the sign-in
 * (`account.login`, with the factor used).
 */
export async function completeSignIn(deps: Pick<Deps, "db" | "state" | "clock" | "config">, accountId: string, code: string, who: Omit<Actor, "actor">): Promise<{ account: Account; factor: "totp" | "recovery_code" }> {
  const row = await accountRow(deps.db, accountId);
  const actor = { actor: `account:${row.id}`, ...who };
  if (!normalise(String(code ?? ""))) throw new DomainError("invalid_request", "Enter a code.", [{ field: "code", message: "enter the 6-digit code from your app, or a recovery code" }]);
  const attempt = await reservePasswordAttempt(deps, row.email, who.ip);
  if (!attempt) throw new TwoFactorThrottled();
  const factor = await useSecondFactor(deps, row, code, actor);
  const now = new Date(deps.clock.now());
  if (!factor) {
    await recordAudit(deps.db, actor, { accountId: row.id, action: "account.login_2fa_failed" }, now);
    throw new DomainError("invalid_credentials", "The code is not right.", [{ field: "code", message: "is not a current code or an unused recovery code (each code works once)" }]);
  }
  await attempt.succeeded();
  await recordAudit(deps.db, actor, { accountId: row.id, action: "account.login", changes: { secondFactor: factor } }, now);
  return { account: row, factor };
}

/** What a pending sign-in token is for: the code step, or the enrolment the operators require. */
export type PendingPurpose = "code" | "enrol";

interface PendingClaims {
  /** The account. */
  a: string;
  p: PendingPurpose;
  /** Expiry, epoch ms. */
  e: number;
  /** A fingerprint of the password hash: a password changed meanwhile voids the token. */
  h: string;
  /** Where to go once signed in (already a safe portal path). */
  n: string;
}

const passwordFingerprint = (passwordHash: string) => sha256(passwordHash).slice(0, 32);

/**
 * A sign-in between its password and its second step: sealed (AES-GCM under SECRET_KEY, with
 * its own purpose key), so it cannot be read or forged, and single-purpose (the purpose is the
 * associated data as well as a claim). It opens no session: only the second step's routes read it.
 */
export function sealPendingSignIn(deps: Pick<Deps, "config" | "clock">, account: Pick<Account, "id" | "passwordHash">, purpose: PendingPurpose, next: string): { token: string; maxAgeSeconds: number } {
  const ttl = purpose === "code" ? PENDING_SIGNIN_MS : PENDING_ENROLMENT_MS;
  const claims: PendingClaims = { a: account.id, p: purpose, e: deps.clock.now() + ttl, h: passwordFingerprint(account.passwordHash), n: next };
  return { token: tokenSealer(deps).seal(JSON.stringify(claims), `sign-in:${purpose}`), maxAgeSeconds: ttl / 1000 };
}

/**
 * The account a pending sign-in token holds for `purpose`, and where it goes next; null when
 * the token is not one (altered, another purpose, another key), has expired, the password
 * changed since, or the account's state no longer calls for that step.
 */
export async function openPendingSignIn(deps: Pick<Deps, "db" | "config" | "clock">, token: string | undefined, purpose: PendingPurpose): Promise<{ account: Account; next: string } | null> {
  if (!token || token.length > 1000) return null;
  let claims: PendingClaims;
  try {
    claims = JSON.parse(tokenSealer(deps).open(token, `sign-in:${purpose}`)) as PendingClaims;
  } catch {
    return null;
  }
  if (claims.p !== purpose || typeof claims.e !== "number" || claims.e <= deps.clock.now()) return null;
  const [row] = await deps.db.select().from(accounts).where(eq(accounts.id, String(claims.a)));
  if (!row) return null;
  const given = Buffer.from(String(claims.h));
  const stored = Buffer.from(passwordFingerprint(row.passwordHash));
  if (given.length !== stored.length || !timingSafeEqual(given, stored)) return null;
  if (purpose === "code" ? !row.totpEnabledAt : Boolean(row.totpEnabledAt)) return null;
  return { account: row, next: String(claims.n) };
}
