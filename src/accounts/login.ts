import { eq } from "drizzle-orm";
import type { Deps } from "../deps.ts";
import { accounts } from "./accounts.sql.ts";
import { createAccount, findAccountByEmail, parseNewAccount, passwordProblem, type Account } from "./service.ts";
import { recordAudit, type Actor } from "../audit/service.ts";
import { DomainError, notFound, type FieldError } from "../errors.ts";
import { enqueueMail } from "../email/outbox.ts";
import { offTheRequest } from "./reset.ts";
import { renewSessions, type Session } from "./sessions.ts";
import { sendVerificationMail } from "./verification.ts";

/** The password rules live with the account rules (service.ts), so every caller applies the same ones. */
export { passwordProblem };

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

const sha = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex").slice(0, 32);

/**
 * Sign-ups per client address in an hour's window: enough for an office or a workshop behind
 * one address, too few to walk a list of addresses or make accounts in bulk (the probe of
 * issue 21 made 25 accounts and tested 30 addresses from one address unhindered). And the
 * "someone tried to sign up with your address" mails one address gets an hour, so nobody
 * floods its mailbox through the form. Both are capped counters (incrCapped: checked and
 * counted in one atomic step, so sign-ups sent at once cannot all pass).
 */
export const SIGNUP_LIMITS = { perIpHour: 20, ownerMailsPerHour: 3 };

export class SignupThrottled extends DomainError {
  constructor() {
    super("too_many_attempts", "Too many sign-ups from your network in the last hour. Wait an hour and try again.", undefined, 3600);
  }
}

/**
 * What a sign-up did: signed the new account in (`signedIn`), or — where a confirmed address
 * is required — nothing the client can see (`checkMail`): the same answer whether the address
 * was free (an account made, its link mailed) or taken (its owner told).
 */
export type SignUpOutcome = { signedIn: Account } | { checkMail: true };

type SignUpDeps = Pick<Deps, "db" | "clock" | "passwords" | "config" | "state" | "log" | "shutdown">;

const isTaken = (err: unknown) => err instanceof DomainError && err.code === "email_taken";

/**
 * A self-service account: its address starts unconfirmed, and the verification mail is
 * queued in the transaction that makes the account (no account without its link, no link
 * for an account that was not made). The form is checked first (`invalid_request`, no
 * storage touched), then the client address's budget (`too_many_attempts`, SIGNUP_LIMITS),
 * then the password is hashed — for a taken address too, so both cost the same.
 *
 * With `requireEmailVerification` the rest happens after the answer (`checkMail`), which
 * therefore cannot tell a taken address from a free one. Without it the new account is
 * signed in at once, which no answer to a taken address can imitate: that one is refused
 * (`email_taken`). Either way a taken address's owner is mailed that someone tried.
 */
export async function signUp(deps: SignUpDeps, input: { email: string; password: string }, who: Omit<Actor, "actor">): Promise<SignUpOutcome> {
  const parsed = parseNewAccount(input);
  const counted = await deps.state.incrCapped(`signup:ip:${who.ip ?? "unknown"}`, 1, SIGNUP_LIMITS.perIpHour, HOUR);
  if (!counted.ok) throw new SignupThrottled();
  const passwordHash = await deps.passwords.hash(parsed.password);
  // createAccount applies the account and password rules (the CLI's too).
  const create = () => createAccount(deps, parsed, { actor: "signup", ...who }, { passwordHash, confirmAddress: (tx, account) => sendVerificationMail(tx, deps, account) });
  if (deps.config.requireEmailVerification) {
    const work = create().then(
      () => {},
      (err: unknown) => {
        if (isTaken(err)) return tellOwner(deps, parsed.email);
        throw err;
      },
    );
    offTheRequest(deps, "sign-up", work);
    return { checkMail: true };
  }
  try {
    return { signedIn: await create() };
  } catch (err) {
    if (isTaken(err)) offTheRequest(deps, "sign-up notice", tellOwner(deps, parsed.email));
    throw err;
  }
}

/** Mails the owner of a taken address that someone tried to sign up with it, at most SIGNUP_LIMITS.ownerMailsPerHour an hour. */
async function tellOwner(deps: Pick<Deps, "db" | "clock" | "config" | "state">, email: string): Promise<void> {
  const counted = await deps.state.incrCapped(`signup:e:${sha(email)}`, 1, SIGNUP_LIMITS.ownerMailsPerHour, HOUR);
  if (!counted.ok) return;
  const account = await findAccountByEmail(deps, email);
  if (!account) return;
  await enqueueMail(deps.db, deps, { accountId: account.id, to: account.email, kind: "signup_attempted" });
}

/** OWASP ASVS 2.2.1: at most 100 failed attempts an hour per account; tighter per 15 minutes. */
export const LOGIN_LIMITS = {
  perEmail15m: 10,
  perEmailHour: 100,
  perIp15m: 50,
};

function throttleCounters(email: string, ip: string | null | undefined) {
  const e = sha(email.trim().toLowerCase());
  return [
    { key: `login:e15:${e}`, limit: LOGIN_LIMITS.perEmail15m, ttlMs: 15 * MINUTE },
    { key: `login:e60:${e}`, limit: LOGIN_LIMITS.perEmailHour, ttlMs: 60 * MINUTE },
    { key: `login:ip15:${ip ?? "unknown"}`, limit: LOGIN_LIMITS.perIp15m, ttlMs: 15 * MINUTE },
  ];
}

/** A password check reserved against the failure budgets; `succeeded` gives the reservation back, since only failures count. */
export interface PasswordAttempt {
  succeeded(): Promise<void>;
}

/**
 * Reserves one password check against the budgets of the account's email and of the client
 * address (LOGIN_LIMITS), before the password is verified: each counter is incremented and
 * the value it returns compared, atomically on both backends, so checks arriving together
 * hold distinct places and no more than a limit of them is ever verified — reading the
 * counters, verifying (argon2id, ~100 ms) and only then counting let 120 guesses sent at once
 * all through (issue 21). Null when a budget is spent: nothing may be verified, and the
 * reservation is given back, so a refused check costs no budget (and a burst past the limit
 * leaves the counters as the admitted checks left them).
 *
 * Sign-in and the Settings password forms share these budgets: a guess counts wherever it is made.
 *
 * @example
 * const attempt = await reservePasswordAttempt(deps, email, who.ip);
 * if (!attempt) throw new LoginThrottled();
 * if (await deps.passwords.verify(password, hash)) await attempt.succeeded();
 */
export async function reservePasswordAttempt(deps: Pick<Deps, "state">, email: string, ip: string | null | undefined): Promise<PasswordAttempt | null> {
  const counters = throttleCounters(email, ip);
  const values = await Promise.all(counters.map((c) => deps.state.incr(c.key, 1, c.ttlMs)));
  const giveBack = async () => {
    await Promise.all(counters.map((c) => deps.state.giveBack(c.key, 1)));
  };
  if (values.some((v, i) => v > counters[i]!.limit)) {
    await giveBack();
    return null;
  }
  return { succeeded: giveBack };
}

export class LoginThrottled extends DomainError {
  constructor() {
    super("too_many_attempts", "Too many failed sign-in attempts. Wait 15 minutes and try again.", undefined, 15 * 60);
  }
}

/**
 * Checks an email and password. Both kinds of failure give the same error and the same
 * cost; failures count per email and per client address in the shared state, reserved
 * before the password is verified (reservePasswordAttempt). A wrong password is audited
 * (`account.login_failed`); a right one is not yet a sign-in (a second step may follow:
 * signIn in twofactor.ts).
 */
export async function checkPassword(
  deps: Pick<Deps, "db" | "state" | "clock" | "passwords">,
  input: { email: string; password: string },
  who: Omit<Actor, "actor">,
): Promise<Account> {
  const email = String(input.email ?? "").trim().toLowerCase();
  const password = String(input.password ?? "");
  const attempt = await reservePasswordAttempt(deps, email, who.ip);
  if (!attempt) throw new LoginThrottled();

  const account = email && email.length <= 254 ? await findAccountByEmail(deps, email) : undefined;
  const ok = await deps.passwords.verify(password.slice(0, 256), account?.passwordHash ?? (await deps.passwords.dummyHash()));
  if (!account || !ok) {
    if (account) await recordAudit(deps.db, { actor: `account:${account.id}`, ...who }, { accountId: account.id, action: "account.login_failed" }, new Date(deps.clock.now()));
    throw new DomainError("invalid_credentials", "Email or password is incorrect.", [{ field: "password", message: "Email or password is incorrect." }]);
  }
  await attempt.succeeded();
  return account;
}

/** An email and password sign-in with no second step (checkPassword, then `account.login` audited); the portal signs in through signIn (twofactor.ts). */
export async function logIn(
  deps: Pick<Deps, "db" | "state" | "clock" | "passwords">,
  input: { email: string; password: string },
  who: Omit<Actor, "actor">,
): Promise<Account> {
  const account = await checkPassword(deps, input, who);
  await recordAudit(deps.db, { actor: `account:${account.id}`, ...who }, { accountId: account.id, action: "account.login" }, new Date(deps.clock.now()));
  return account;
}

export const PASSWORD_CHECKS_THROTTLED = "too many wrong passwords: wait 15 minutes and try again";

/**
 * Changes the password from Settings: the current one is checked against the same budgets
 * as sign-in (reserved first; past them `too_many_attempts` on the field "current", nothing
 * verified), the new one by the password rules. On success, in one transaction: the new
 * hash, every session of the account ended and a new one opened for the caller (a new id,
 * secret and CSRF token: renewSessions), the audit event and the `password_changed` mail.
 * Returns the new session and its cookie token.
 */
export async function changePassword(
  deps: Pick<Deps, "db" | "clock" | "passwords" | "config" | "state">,
  accountId: string,
  input: { current: string; next: string },
  who: Actor,
): Promise<{ token: string; session: Session }> {
  const [row] = await deps.db.select().from(accounts).where(eq(accounts.id, accountId));
  if (!row) throw notFound("account");
  const attempt = await reservePasswordAttempt(deps, row.email, who.ip);
  if (!attempt) throw new DomainError("too_many_attempts", "The password was not changed.", [{ field: "current", message: PASSWORD_CHECKS_THROTTLED }], 15 * 60);
  const errors: FieldError[] = [];
  if (await deps.passwords.verify(String(input.current ?? "").slice(0, 256), row.passwordHash)) await attempt.succeeded();
  else errors.push({ field: "current", message: "is not your current password" });
  const problem = passwordProblem(String(input.next ?? ""), row.email);
  if (problem) errors.push({ field: "next", message: problem });
  if (errors.length) throw new DomainError("invalid_request", "The password was not changed.", errors);
  const now = new Date(deps.clock.now());
  const passwordHash = await deps.passwords.hash(String(input.next));
  return deps.db.transaction(async (tx) => {
    await tx.update(accounts).set({ passwordHash, updatedAt: now }).where(eq(accounts.id, accountId));
    const renewed = await renewSessions(tx, deps, row, { ip: who.ip, userAgent: who.userAgent });
    await recordAudit(tx, who, { accountId, action: "account.password_changed" }, now);
    // A security notice: sent whatever the account's mail preferences.
    await enqueueMail(tx, deps, { accountId, to: row.email, kind: "password_changed" });
    return renewed;
  });
}
