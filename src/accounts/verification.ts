import { createHash, randomBytes } from "node:crypto";
import { and, eq, gt, isNull } from "drizzle-orm";
import type { Db, Tx } from "../db/client.ts";
import type { Deps } from "../deps.ts";
import { recordAudit, type Actor } from "../audit/service.ts";
import { enqueueMail } from "../email/outbox.ts";
import { emailTokens, type EmailTokenPurpose } from "../email/email.sql.ts";
import { DomainError } from "../errors.ts";
import { newId } from "../ids.ts";
import { accounts } from "./accounts.sql.ts";

// Single-use links sent by mail (a reset, a verification): 32 random bytes (256 bits) in the
// link, SHA-256 of them in `email_tokens`, so a copy of the table opens nothing. A newer link
// of the same purpose ends the older ones; using one ends it.

/** The link's secret as the link carries it: 32 bytes in base64url, 43 characters. */
const TOKEN_SHAPE = /^[A-Za-z0-9_-]{43}$/;

const tokenHash = (token: string) => createHash("sha256").update(token).digest("hex");

/**
 * A new single-use token for the account, inside the caller's transaction (which also
 * queues the mail carrying it); the older live ones of the same purpose end now. The raw
 * token goes into the mail's sealed part and nowhere else.
 */
export async function issueMailToken(
  tx: Tx,
  deps: Pick<Deps, "clock">,
  input: { accountId: string; purpose: EmailTokenPurpose; email: string; ttlMs: number },
): Promise<string> {
  const now = new Date(deps.clock.now());
  await tx
    .update(emailTokens)
    .set({ usedAt: now })
    .where(and(eq(emailTokens.accountId, input.accountId), eq(emailTokens.purpose, input.purpose), isNull(emailTokens.usedAt)));
  const token = randomBytes(32).toString("base64url");
  await tx.insert(emailTokens).values({
    id: newId("etok"),
    accountId: input.accountId,
    purpose: input.purpose,
    email: input.email,
    tokenHash: tokenHash(token),
    createdAt: now,
    expiresAt: new Date(now.getTime() + input.ttlMs),
  });
  return token;
}

export type MailTokenRow = typeof emailTokens.$inferSelect;

/**
 * The live token a link carries: of this purpose, not used or replaced, not expired, and
 * sent to the address the account still has (a link to an address the account no longer
 * uses opens nothing; a change of address's link, sent to the new one, is not looked up
 * here). With `lock`, the token's and the account's rows are locked for the rest of the
 * transaction, so two uses of one link cannot both succeed.
 */
export async function findMailToken(
  db: Db | Tx,
  deps: Pick<Deps, "clock">,
  purpose: Exclude<EmailTokenPurpose, "change_email">,
  token: unknown,
  lock = false,
): Promise<{ token: MailTokenRow; account: typeof accounts.$inferSelect } | null> {
  if (typeof token !== "string" || !TOKEN_SHAPE.test(token)) return null;
  const now = new Date(deps.clock.now());
  const query = db
    .select({ token: emailTokens, account: accounts })
    .from(emailTokens)
    .innerJoin(accounts, eq(accounts.id, emailTokens.accountId))
    .where(and(eq(emailTokens.tokenHash, tokenHash(token)), eq(emailTokens.purpose, purpose), isNull(emailTokens.usedAt), gt(emailTokens.expiresAt, now)));
  const [row] = lock ? await query.for("update") : await query;
  if (!row || row.account.email !== row.token.email) return null;
  return row;
}

/** How long a verification link works (the issue: 24 h). */
export const VERIFY_TTL_MS = 24 * 3_600_000;
/** New links an account may ask for: a handful an hour is enough for a mail that went astray. */
export const RESEND_LIMITS = { perAccountHour: 5 };
const HOUR = 3_600_000;

export const verifyUrl = (config: Pick<Deps["config"], "publicUrl">, token: string) => `${config.publicUrl}/verify-email?token=${encodeURIComponent(token)}`;

/**
 * Queues the verification mail for `account` inside the caller's transaction (sign-up's, or
 * a resend's): a new 24 h link, which ends the account's older ones.
 */
export async function sendVerificationMail(tx: Tx, deps: Pick<Deps, "clock" | "config">, account: { id: string; email: string }): Promise<void> {
  const token = await issueMailToken(tx, deps, { accountId: account.id, purpose: "verify_email", email: account.email, ttlMs: VERIFY_TTL_MS });
  await enqueueMail(tx, deps, { accountId: account.id, to: account.email, kind: "verify_email", secret: { url: verifyUrl(deps.config, token) } });
}

export class ResendThrottled extends DomainError {
  constructor(retryAfterSeconds: number) {
    super("too_many_attempts", "Several confirmation links were sent in the last hour. Look for them in your mail (and its spam folder), or ask again later.", undefined, retryAfterSeconds);
  }
}

/**
 * A new verification link for a signed-in account. Nothing is sent for an address already
 * confirmed ("verified"). Throttled per account; audited as `account.verification_sent`.
 */
export async function resendVerification(deps: Pick<Deps, "db" | "clock" | "config" | "state">, accountId: string, who: Actor): Promise<"sent" | "verified"> {
  const [current] = await deps.db.select({ verifiedAt: accounts.emailVerifiedAt }).from(accounts).where(eq(accounts.id, accountId));
  if (!current || current.verifiedAt !== null) return "verified";
  const decision = await deps.state.rateLimit(`verify-resend:${accountId}`, RESEND_LIMITS.perAccountHour, HOUR, deps.clock.now());
  if (!decision.allowed) throw new ResendThrottled(Math.ceil(decision.retryAfterMs / 1000));
  const now = new Date(deps.clock.now());
  return deps.db.transaction(async (tx) => {
    const [account] = await tx.select().from(accounts).where(eq(accounts.id, accountId)).for("update");
    if (!account || account.emailVerifiedAt !== null) return "verified" as const;
    await sendVerificationMail(tx, deps, account);
    await recordAudit(tx, who, { accountId, action: "account.verification_sent", changes: { email: account.email } }, now);
    return "sent" as const;
  });
}

/** The address a verification link would confirm, or null when the link does not work (the GET page's question). */
export async function verificationLink(deps: Pick<Deps, "db" | "clock">, token: unknown): Promise<{ email: string } | null> {
  const found = await findMailToken(deps.db, deps, "verify_email", token);
  return found && { email: found.account.email };
}

/**
 * Confirms the address a verification link was sent to: the account's `emailVerifiedAt` is
 * set and the link ends (single use). Null when the link does not work. Audited as
 * `account.email_verified`.
 */
export async function verifyEmail(deps: Pick<Deps, "db" | "clock">, token: unknown, who: Omit<Actor, "actor">): Promise<{ accountId: string; email: string } | null> {
  const now = new Date(deps.clock.now());
  return deps.db.transaction(async (tx) => {
    const found = await findMailToken(tx, deps, "verify_email", token, true);
    if (!found) return null;
    await tx.update(emailTokens).set({ usedAt: now }).where(eq(emailTokens.id, found.token.id));
    if (found.account.emailVerifiedAt === null) {
      await tx.update(accounts).set({ emailVerifiedAt: now, updatedAt: now }).where(eq(accounts.id, found.account.id));
      await recordAudit(tx, { actor: `account:${found.account.id}`, ...who }, { accountId: found.account.id, action: "account.email_verified", changes: { email: found.account.email } }, now);
    }
    return { accountId: found.account.id, email: found.account.email };
  });
}

/**
 * Whether the account may not create live keys yet: the server requires a confirmed address
 * (config.requireEmailVerification) and this account's is not. What the keys page shows.
 */
export async function liveKeysAwaitVerification(deps: Pick<Deps, "db" | "config">, accountId: string): Promise<boolean> {
  if (!deps.config.requireEmailVerification) return false;
  const [row] = await deps.db.select({ verifiedAt: accounts.emailVerifiedAt }).from(accounts).where(eq(accounts.id, accountId));
  return Boolean(row) && row!.verifiedAt === null;
}
