import { eq } from "drizzle-orm";
import type { Deps } from "../deps.ts";
import { recordAudit, type Actor } from "../audit/service.ts";
import { enqueueMail } from "../email/outbox.ts";
import { emailTokens } from "../email/email.sql.ts";
import { DomainError, zodFieldErrors } from "../errors.ts";
import { revokeSandboxKeys } from "../keys/service.ts";
import { accounts, sessions } from "./accounts.sql.ts";
import { emailSchema, findAccountByEmail, passwordProblem } from "./service.ts";
import { findMailToken, issueMailToken } from "./verification.ts";

/** How long a reset link works (the issue: 30 minutes). */
export const RESET_TTL_MS = 30 * 60_000;

const HOUR = 3_600_000;
/**
 * Reset requests allowed per hour: per address, so nobody floods a mailbox; per client
 * address, so nobody walks a list of addresses (OWASP Forgot Password Cheat Sheet).
 */
export const RESET_LIMITS = { perEmailHour: 5, perIpHour: 20 };

const sha = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex").slice(0, 32);

export const resetUrl = (config: Pick<Deps["config"], "publicUrl">, token: string) => `${config.publicUrl}/reset-password?token=${encodeURIComponent(token)}`;

export class ResetThrottled extends DomainError {
  constructor(retryAfterSeconds: number) {
    super("too_many_attempts", "Too many password resets were asked for this address or from your network. Wait an hour and try again.", undefined, retryAfterSeconds);
  }
}

type ResetDeps = Pick<Deps, "db" | "clock" | "config" | "state" | "log" | "shutdown">;

/**
 * Work a request started and did not wait for, per database: a reset request's lookup, a
 * sign-up's account or its owner's notice (login.ts). The answer is given first, so whether
 * an address has an account changes neither the answer nor its timing.
 */
const pending = new WeakMap<object, Set<Promise<void>>>();

/** Resolves when the work of every request already answered (reset requests, sign-ups) is done. */
export async function accountWorkSettled(deps: Pick<Deps, "db">): Promise<void> {
  await Promise.all([...(pending.get(deps.db) ?? [])]);
}

/** The reset tests' name for accountWorkSettled. */
export const resetRequestsSettled = accountWorkSettled;

/** Runs `work` after the answer: tracked until done, its failure logged (it has no request left to fail). */
export function offTheRequest(deps: Pick<Deps, "db" | "log" | "shutdown">, what: string, work: Promise<void>): void {
  let set = pending.get(deps.db);
  if (!set) {
    pending.set(deps.db, (set = new Set()));
    // A request answered just before SIGTERM still queues its mail before the database closes.
    deps.shutdown.register("account requests settled", () => accountWorkSettled(deps));
  }
  const tracked = work.catch((err: unknown) => deps.log.error(`${what} failed`, { error: (err as Error).message }));
  set.add(tracked);
  void tracked.finally(() => set.delete(tracked));
}

/**
 * "Forgot password": checks the address's form and the throttles, then starts the lookup
 * and returns without waiting for it. Whether the address has an account changes neither
 * the answer nor its timing: the account is looked up, and its link made and queued, after
 * the caller has answered. Throws `invalid_request` for a malformed address and
 * `too_many_attempts` (ResetThrottled) past RESET_LIMITS, the same for every address.
 */
export async function requestPasswordReset(deps: ResetDeps, input: { email: string }, who: Omit<Actor, "actor">): Promise<void> {
  const parsed = emailSchema.safeParse(String(input.email ?? ""));
  if (!parsed.success) throw new DomainError("invalid_request", "The address is not valid.", zodFieldErrors(parsed.error).map((e) => ({ ...e, field: "email" })));
  const email = parsed.data;
  const now = deps.clock.now();
  const [byEmail, byIp] = await Promise.all([
    deps.state.rateLimit(`reset:e:${sha(email)}`, RESET_LIMITS.perEmailHour, HOUR, now),
    deps.state.rateLimit(`reset:ip:${who.ip ?? "unknown"}`, RESET_LIMITS.perIpHour, HOUR, now),
  ]);
  if (!byEmail.allowed || !byIp.allowed) throw new ResetThrottled(Math.ceil(Math.max(byEmail.retryAfterMs, byIp.retryAfterMs) / 1000));
  offTheRequest(deps, "password reset request", sendResetLink(deps, email, who));
}

/** The account's reset link, made and queued in one transaction; nothing for an address without an account. */
async function sendResetLink(deps: ResetDeps, email: string, who: Omit<Actor, "actor">): Promise<void> {
  const account = await findAccountByEmail(deps, email);
  if (!account) return;
  const now = new Date(deps.clock.now());
  await deps.db.transaction(async (tx) => {
    const token = await issueMailToken(tx, deps, { accountId: account.id, purpose: "password_reset", email: account.email, ttlMs: RESET_TTL_MS });
    await enqueueMail(tx, deps, { accountId: account.id, to: account.email, kind: "password_reset", secret: { url: resetUrl(deps.config, token) } });
    // Whoever asked is not signed in: the account's owner sees from where it was asked.
    await recordAudit(tx, { actor: "anonymous", ...who }, { accountId: account.id, action: "account.password_reset_requested" }, now);
  });
}

/** The address a reset link is for, or null when the link does not work (the GET page's question). */
export async function resetLink(deps: Pick<Deps, "db" | "clock">, token: unknown): Promise<{ email: string } | null> {
  const found = await findMailToken(deps.db, deps, "password_reset", token);
  return found && { email: found.account.email };
}

/**
 * Sets a new password through a reset link: the password rules of sign-up apply
 * (`invalid_request` on the field "password"); the link ends, and so does every session of
 * the account (with their sandbox keys). Nobody is signed in by it. It also confirms the
 * address, since the link was sent there. Audited as `account.password_reset`;
 * the `password_changed` mail is queued with it. "bad_link" when the link does not work
 * (unknown, used, replaced by a newer one, expired).
 */
export async function resetPassword(
  deps: Pick<Deps, "db" | "clock" | "config" | "passwords" | "keyCache" | "products">,
  input: { token: unknown; password: string },
  who: Omit<Actor, "actor">,
): Promise<"done" | "bad_link"> {
  const before = await findMailToken(deps.db, deps, "password_reset", input.token);
  if (!before) return "bad_link";
  const password = String(input.password ?? "");
  const problem = passwordProblem(password, before.account.email);
  if (problem) throw new DomainError("invalid_request", "The password was not changed.", [{ field: "password", message: problem }]);
  // Hashed outside the transaction: argon2id takes a while, and the rows stay locked meanwhile otherwise.
  const passwordHash = await deps.passwords.hash(password);
  const now = new Date(deps.clock.now());
  const accountId = await deps.db.transaction(async (tx) => {
    const found = await findMailToken(tx, deps, "password_reset", input.token, true);
    if (!found) return null;
    const account = found.account;
    const actor: Actor = { actor: `account:${account.id}`, ...who };
    await tx.update(emailTokens).set({ usedAt: now }).where(eq(emailTokens.id, found.token.id));
    await tx
      .update(accounts)
      .set({ passwordHash, emailVerifiedAt: account.emailVerifiedAt ?? now, updatedAt: now })
      .where(eq(accounts.id, account.id));
    await tx.delete(sessions).where(eq(sessions.accountId, account.id));
    await recordAudit(tx, actor, { accountId: account.id, action: "account.password_reset" }, now);
    await enqueueMail(tx, deps, { accountId: account.id, to: account.email, kind: "password_changed" });
    return account.id;
  });
  if (!accountId) return "bad_link";
  // Every session ended, so every sandbox key goes with them (no session has the empty id).
  await revokeSandboxKeys(deps, { accountId, exceptSessionId: "" }, { actor: `account:${accountId}`, ...who });
  return "done";
}
