import { eq } from "drizzle-orm";
import type { Deps } from "../deps.ts";
import { accounts } from "./accounts.sql.ts";
import { createAccount, findAccountByEmail, passwordProblem, type Account } from "./service.ts";
import { recordAudit, type Actor } from "../audit/service.ts";
import { DomainError, type FieldError } from "../errors.ts";
import { enqueueMail } from "../email/outbox.ts";
import { sendVerificationMail } from "./verification.ts";

/** The password rules live with the account rules (service.ts), so every caller applies the same ones. */
export { passwordProblem };

/**
 * A self-service account: its address starts unconfirmed, and the verification mail is
 * queued in the transaction that makes the account (no account without its link, no link
 * for an account that was not made).
 */
export async function signUp(deps: Pick<Deps, "db" | "clock" | "passwords" | "config">, input: { email: string; password: string }, who: Omit<Actor, "actor">): Promise<Account> {
  // createAccount applies the account and password rules (the CLI's too).
  return createAccount(deps, input, { actor: "signup", ...who }, { confirmAddress: (tx, account) => sendVerificationMail(tx, deps, account) });
}

const MINUTE = 60_000;
/** OWASP ASVS 2.2.1: at most 100 failed attempts an hour per account; tighter per 15 minutes. */
export const LOGIN_LIMITS = {
  perEmail15m: 10,
  perEmailHour: 100,
  perIp15m: 50,
};

const sha = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex").slice(0, 32);

function throttleKeys(email: string, ip: string | undefined) {
  const e = sha(email.trim().toLowerCase());
  return {
    email15: `login:e15:${e}`,
    emailHour: `login:e60:${e}`,
    ip15: `login:ip15:${ip ?? "unknown"}`,
  };
}

export class LoginThrottled extends DomainError {
  constructor() {
    super("too_many_attempts", "Too many failed sign-in attempts. Wait 15 minutes and try again.", undefined, 15 * 60);
  }
}

/**
 * Checks an email and password. Both kinds of failure give the same error and the same
 * cost; failures count per email and per client address in the shared state.
 */
export async function logIn(
  deps: Pick<Deps, "db" | "state" | "clock" | "passwords">,
  input: { email: string; password: string },
  who: Omit<Actor, "actor">,
): Promise<Account> {
  const email = String(input.email ?? "").trim().toLowerCase();
  const password = String(input.password ?? "");
  const keys = throttleKeys(email, who.ip ?? undefined);
  const [e15, e60, ip15] = await Promise.all([deps.state.get(keys.email15), deps.state.get(keys.emailHour), deps.state.get(keys.ip15)]);
  if (e15 >= LOGIN_LIMITS.perEmail15m || e60 >= LOGIN_LIMITS.perEmailHour || ip15 >= LOGIN_LIMITS.perIp15m) throw new LoginThrottled();

  const account = email && email.length <= 254 ? await findAccountByEmail(deps, email) : undefined;
  const ok = await deps.passwords.verify(password.slice(0, 256), account?.passwordHash ?? (await deps.passwords.dummyHash()));
  if (!account || !ok) {
    await Promise.all([
      deps.state.incr(keys.email15, 1, 15 * MINUTE),
      deps.state.incr(keys.emailHour, 1, 60 * MINUTE),
      deps.state.incr(keys.ip15, 1, 15 * MINUTE),
    ]);
    if (account) await recordAudit(deps.db, { actor: `account:${account.id}`, ...who }, { accountId: account.id, action: "account.login_failed" }, new Date(deps.clock.now()));
    throw new DomainError("invalid_credentials", "Email or password is incorrect.", [{ field: "password", message: "Email or password is incorrect." }]);
  }
  await deps.state.del(keys.email15);
  await recordAudit(deps.db, { actor: `account:${account.id}`, ...who }, { accountId: account.id, action: "account.login" }, new Date(deps.clock.now()));
  return account;
}

export async function changePassword(
  deps: Pick<Deps, "db" | "clock" | "passwords" | "config">,
  account: { id: string; email: string },
  input: { current: string; next: string },
  who: Actor,
): Promise<void> {
  const [row] = await deps.db.select().from(accounts).where(eq(accounts.id, account.id));
  const errors: FieldError[] = [];
  if (!row || !(await deps.passwords.verify(String(input.current ?? "").slice(0, 256), row.passwordHash))) {
    errors.push({ field: "current", message: "is not your current password" });
  }
  const problem = passwordProblem(String(input.next ?? ""), account.email);
  if (problem) errors.push({ field: "next", message: problem });
  if (errors.length) throw new DomainError("invalid_request", "The password was not changed.", errors);
  const now = new Date(deps.clock.now());
  const passwordHash = await deps.passwords.hash(String(input.next));
  await deps.db.transaction(async (tx) => {
    await tx.update(accounts).set({ passwordHash, updatedAt: now }).where(eq(accounts.id, account.id));
    await recordAudit(tx, who, { accountId: account.id, action: "account.password_changed" }, now);
    // A security notice: sent whatever the account's mail preferences.
    await enqueueMail(tx, deps, { accountId: account.id, to: row!.email, kind: "password_changed" });
  });
}
