import { and, desc, eq, gt, inArray, isNull, ne } from "drizzle-orm";
import { accounts } from "../accounts/accounts.sql.ts";
import { reservePasswordAttempt } from "../accounts/login.ts";
import { issueMailToken } from "../accounts/verification.ts";
import { emailSchema } from "../accounts/service.ts";
import { recordAudit, type Actor } from "../audit/service.ts";
import type { Tx } from "../db/client.ts";
import type { Deps } from "../deps.ts";
import { DomainError, notFound, type FieldError } from "../errors.ts";
import { emailTokens } from "./email.sql.ts";
import { MAIL_CATEGORY_NAMES, isMailCategory, unsubscribeTokenValid, type MailCategory } from "./messages.ts";
import { enqueueMail } from "./outbox.ts";

/** The addresses of this capability's pages (the unsubscribe link is built by src/email/messages.ts on the first). */
export const EMAIL_LINKS = {
  unsubscribe: "/email/unsubscribe",
  confirmEmail: "/confirm-email",
} as const;

const HOUR = 3_600_000;
/** A change of address is confirmed within 24 hours, like a sign-up's verification (issue 19). */
export const CHANGE_EMAIL_TTL_MS = 24 * HOUR;
/**
 * Requests to change the address, per account and hour: each asks for the password (a guess
 * each) and mails an address the requester chose, so both are bounded.
 */
export const CHANGE_EMAIL_PER_HOUR = 5;

const sha256 = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex");
/** 32 random bytes in base64url: what a link carries. */
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } };
  return e.code === "23505" || e.cause?.code === "23505";
}

/** What the Settings page shows of the account's mail: its address, its opt-outs, a change waiting for its link. */
export interface MailSettings {
  email: string;
  verified: boolean;
  /** The categories turned off (MAIL_CATEGORIES); security notices are not among them, ever. */
  optOut: MailCategory[];
  /** The address a change_email link was sent to and not yet followed, while it works. */
  pending: { email: string; expiresAt: string } | null;
}

export async function mailSettings(deps: Pick<Deps, "db" | "clock">, accountId: string): Promise<MailSettings> {
  const now = new Date(deps.clock.now());
  const [[account], [pending]] = await Promise.all([
    deps.db.select({ email: accounts.email, verifiedAt: accounts.emailVerifiedAt, optOut: accounts.emailOptOut }).from(accounts).where(eq(accounts.id, accountId)),
    deps.db
      .select({ email: emailTokens.email, expiresAt: emailTokens.expiresAt })
      .from(emailTokens)
      .where(and(eq(emailTokens.accountId, accountId), eq(emailTokens.purpose, "change_email"), isNull(emailTokens.usedAt), gt(emailTokens.expiresAt, now)))
      .orderBy(desc(emailTokens.createdAt))
      .limit(1),
  ]);
  if (!account) throw notFound("account");
  return {
    email: account.email,
    verified: account.verifiedAt !== null,
    optOut: MAIL_CATEGORY_NAMES.filter((c) => account.optOut.includes(c)),
    pending: pending ? { email: pending.email, expiresAt: pending.expiresAt.toISOString() } : null,
  };
}

/**
 * Turns categories on or off in one transaction (the row locked, so two changes at once both
 * count) and audits each that changed: `account.mail_opted_out` / `account.mail_opted_in`.
 * Returns the categories off afterwards, and how many changed.
 */
async function applyOptOut(deps: Pick<Deps, "db" | "clock">, accountId: string, wanted: Partial<Record<MailCategory, boolean>>, who: Actor): Promise<{ optOut: MailCategory[]; changed: number }> {
  const now = new Date(deps.clock.now());
  return deps.db.transaction(async (tx) => {
    const [row] = await tx.select({ optOut: accounts.emailOptOut }).from(accounts).where(eq(accounts.id, accountId)).for("update");
    if (!row) throw notFound("account");
    const off = new Set(row.optOut.filter((c): c is MailCategory => (MAIL_CATEGORY_NAMES as string[]).includes(c)));
    const changed: [MailCategory, boolean][] = [];
    for (const category of MAIL_CATEGORY_NAMES) {
      const want = wanted[category];
      if (want === undefined || want === off.has(category)) continue;
      if (want) off.add(category);
      else off.delete(category);
      changed.push([category, want]);
    }
    const optOut = MAIL_CATEGORY_NAMES.filter((c) => off.has(c));
    if (!changed.length) return { optOut, changed: 0 };
    await tx.update(accounts).set({ emailOptOut: optOut, updatedAt: now }).where(eq(accounts.id, accountId));
    for (const [category, turnedOff] of changed) {
      await recordAudit(tx, who, { accountId, action: turnedOff ? "account.mail_opted_out" : "account.mail_opted_in", changes: { category } }, now);
    }
    return { optOut, changed: changed.length };
  });
}

/**
 * Turns one category of notices off (`off`) or on again: the one-click unsubscribe link and
 * the Settings form. Honoured at once, for mail already queued too (the outbox reads the
 * opt-outs when it sends). Unchanged, it writes nothing. Returns whether it changed.
 *
 * @example
 * await setOptOut(deps, accountId, "keys", true, { actor: "unsubscribe-link" });
 */
export async function setOptOut(deps: Pick<Deps, "db" | "clock">, accountId: string, category: MailCategory, off: boolean, who: Actor): Promise<boolean> {
  return (await applyOptOut(deps, accountId, { [category]: off }, who)).changed > 0;
}

/** The Settings form: the categories checked are on, every other one off. Returns the categories off. */
export async function setMailPreferences(deps: Pick<Deps, "db" | "clock">, accountId: string, on: readonly string[], who: Actor): Promise<MailCategory[]> {
  const wanted = Object.fromEntries(MAIL_CATEGORY_NAMES.map((c) => [c, !on.includes(c)])) as Record<MailCategory, boolean>;
  return (await applyOptOut(deps, accountId, wanted, who)).optOut;
}

type ChangeDeps = Pick<Deps, "db" | "clock" | "config" | "passwords" | "state">;

/**
 * Asks to change the account's address: with the password, to a valid address that is not
 * the account's and no other account's. Mails a link (24 h, single use, stored as SHA-256)
 * to the new address; until it is followed the account keeps the old one. A newer request
 * ends the older link. At most CHANGE_EMAIL_PER_HOUR requests an hour (too_many_attempts).
 * Audited as `account.email_change_requested`.
 */
export async function requestEmailChange(deps: ChangeDeps, accountId: string, input: { email: string; password: string }, who: Actor): Promise<{ email: string; expiresAt: string }> {
  // Counted before anything is checked (incremented, then compared: atomic on both backends),
  // so requests sent at once cannot all pass; what was counted stays counted.
  const attempts = await deps.state.incr(`email-change:${accountId}`, 1, HOUR);
  if (attempts > CHANGE_EMAIL_PER_HOUR) {
    throw new DomainError("too_many_attempts", "Too many requests to change the address. Wait an hour and try again.", undefined, 3600);
  }
  const [account] = await deps.db.select({ email: accounts.email, passwordHash: accounts.passwordHash }).from(accounts).where(eq(accounts.id, accountId));
  if (!account) throw notFound("account");
  // The password is also a guess against the account's sign-in budgets, shared with the login form.
  const attempt = await reservePasswordAttempt(deps, account.email, who.ip);
  if (!attempt) throw new DomainError("too_many_attempts", "Too many wrong passwords. Wait 15 minutes and try again.", undefined, 15 * 60);
  const parsed = emailSchema.safeParse(String(input.email ?? ""));
  const passwordOk = await deps.passwords.verify(String(input.password ?? "").slice(0, 256), account.passwordHash);
  if (passwordOk) await attempt.succeeded();
  const errors: FieldError[] = [];
  if (!parsed.success) errors.push({ field: "email", message: parsed.error.issues[0]?.message ?? "is not a valid email address" });
  else if (parsed.data === account.email) errors.push({ field: "email", message: "is already this account's address" });
  if (!passwordOk) errors.push({ field: "password", message: "is not your current password" });
  if (errors.length || !parsed.success) throw new DomainError("invalid_request", "The address was not changed.", errors);
  const email = parsed.data;
  const expiresAt = new Date(deps.clock.now() + CHANGE_EMAIL_TTL_MS);
  await deps.db.transaction(async (tx) => {
    const [taken] = await tx.select({ id: accounts.id }).from(accounts).where(eq(accounts.email, email));
    if (taken) throw new DomainError("email_taken", "Another account uses this address.", [{ field: "email", message: "is already registered" }]);
    const token = await issueMailToken(tx, deps, { accountId, purpose: "change_email", email, ttlMs: CHANGE_EMAIL_TTL_MS });
    const url = `${deps.config.publicUrl}${EMAIL_LINKS.confirmEmail}?token=${encodeURIComponent(token)}`;
    await enqueueMail(tx, deps, { accountId, to: email, kind: "change_email", data: { oldEmail: account.email }, secret: { url } });
    await recordAudit(tx, who, { accountId, action: "account.email_change_requested", changes: { to: email } }, new Date(deps.clock.now()));
  });
  return { email, expiresAt: expiresAt.toISOString() };
}

/** A change_email token's row while it works (unused, unexpired), or undefined. */
async function liveChangeToken(db: Deps["db"] | Tx, token: string, now: Date, lock = false) {
  if (!TOKEN_SHAPE.test(token)) return undefined;
  const q = db
    .select()
    .from(emailTokens)
    .where(and(eq(emailTokens.tokenHash, sha256(token)), eq(emailTokens.purpose, "change_email"), isNull(emailTokens.usedAt), gt(emailTokens.expiresAt, now)));
  const [row] = await (lock ? q.for("update") : q);
  return row;
}

/** What a change link would do, without using it (the confirm page): the new address and the old, or null when the link does not work. */
export async function emailChangeLink(deps: Pick<Deps, "db" | "clock">, token: string): Promise<{ email: string; oldEmail: string } | null> {
  const row = await liveChangeToken(deps.db, token, new Date(deps.clock.now()));
  if (!row) return null;
  const [account] = await deps.db.select({ email: accounts.email }).from(accounts).where(eq(accounts.id, row.accountId));
  return account ? { email: row.email, oldEmail: account.email } : null;
}

/**
 * Follows a change link: the account's address becomes the new one, verified (the link
 * proved it), and the old address is told (`email_changed`). The link works once; reset and
 * verification links sent to the old address end with it. A link that does not work is
 * not_found; an address another account took meanwhile is email_taken (the link stays
 * unused, the account keeps its address). Audited as `account.email_changed`.
 */
export async function confirmEmailChange(deps: Pick<Deps, "db" | "clock" | "config">, token: string, who: Omit<Actor, "actor">): Promise<{ accountId: string; oldEmail: string; email: string }> {
  const now = new Date(deps.clock.now());
  const taken = () => new DomainError("email_taken", "Another account now uses this address, so this account keeps its own.", [{ field: "email", message: "is already registered" }]);
  try {
    return await deps.db.transaction(async (tx) => {
      const row = await liveChangeToken(tx, token, now, true);
      if (!row) throw notFound("link");
      const [account] = await tx.select({ email: accounts.email }).from(accounts).where(eq(accounts.id, row.accountId)).for("update");
      if (!account) throw notFound("link");
      const [other] = await tx
        .select({ id: accounts.id })
        .from(accounts)
        .where(and(eq(accounts.email, row.email), ne(accounts.id, row.accountId)));
      if (other) throw taken();
      await tx.update(accounts).set({ email: row.email, emailVerifiedAt: now, updatedAt: now }).where(eq(accounts.id, row.accountId));
      await tx.update(emailTokens).set({ usedAt: now }).where(eq(emailTokens.id, row.id));
      await tx
        .update(emailTokens)
        .set({ usedAt: now })
        .where(and(eq(emailTokens.accountId, row.accountId), inArray(emailTokens.purpose, ["password_reset", "verify_email"]), isNull(emailTokens.usedAt)));
      await enqueueMail(tx, deps, { accountId: row.accountId, to: account.email, kind: "email_changed", data: { newEmail: row.email } });
      await recordAudit(tx, { actor: `account:${row.accountId}`, ...who }, { accountId: row.accountId, action: "account.email_changed", changes: { from: account.email, to: row.email } }, now);
      return { accountId: row.accountId, oldEmail: account.email, email: row.email };
    });
  } catch (err) {
    // Another account took the address between the check and the update.
    if (isUniqueViolation(err)) throw taken();
    throw err;
  }
}

/**
 * The account and category an unsubscribe link names, when its HMAC is right and the account
 * exists, with whether the category is already off; null for any other link.
 */
export async function unsubscribeLinkTarget(
  deps: Pick<Deps, "db" | "config">,
  link: { a: string; c: string; t: string },
): Promise<{ accountId: string; category: MailCategory; off: boolean } | null> {
  if (!isMailCategory(link.c) || !link.a || link.a.length > 100 || !unsubscribeTokenValid(deps.config.secretKey, link.a, link.c, link.t)) return null;
  const [account] = await deps.db.select({ optOut: accounts.emailOptOut }).from(accounts).where(eq(accounts.id, link.a));
  return account ? { accountId: link.a, category: link.c, off: account.optOut.includes(link.c) } : null;
}
