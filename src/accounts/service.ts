import { and, asc, count, eq, isNull } from "drizzle-orm";
import { z } from "zod";
import type { Tx } from "../db/client.ts";
import type { Deps } from "../deps.ts";
import { recordAudit, type Actor } from "../audit/service.ts";
import { newId } from "../ids.ts";
import { DomainError, notFound, zodFieldErrors } from "../errors.ts";
import { apiKeys } from "../keys/keys.sql.ts";
import { accounts } from "./accounts.sql.ts";

export const emailSchema = z
  .string()
  .trim()
  .toLowerCase()
  .max(254, "is longer than 254 characters")
  .pipe(z.email({ message: "is not a valid email address" }));

let commonPasswords: Set<string> | undefined;
/**
 * The zxcvbn list of common passwords (49k entries), loaded on the first check: it costs
 * about 0.2 s, which the CLI's key commands and the server's start should not pay.
 */
function isCommonPassword(password: string): boolean {
  commonPasswords ??= new Set((require("@zxcvbn-ts/language-common") as typeof import("@zxcvbn-ts/language-common")).dictionary["passwords-common"]!.map((p) => String(p).toLowerCase()));
  return commonPasswords.has(password.toLowerCase());
}

/**
 * The password rules, for every way an account is made or its password changed (portal
 * sign-up, CLI, settings): length, not a known common password (NIST SP 800-63B 3.1.1.2),
 * and not the account's email (`newAccountSchema`, `passwordProblem`).
 */
export const passwordSchema = z
  .string()
  .min(12, "must be at least 12 characters")
  .max(256, "must be at most 256 characters")
  .refine((p) => !isCommonPassword(p), "is on a list of commonly used passwords; choose another");

const SAME_AS_EMAIL = "must not be your email address";
const isEmail = (password: string, email: string) => password.trim().toLowerCase() === email.trim().toLowerCase();

export const newAccountSchema = z.object({ email: emailSchema, password: passwordSchema }).superRefine((v, ctx) => {
  if (isEmail(v.password, v.email)) ctx.addIssue({ code: "custom", path: ["password"], message: SAME_AS_EMAIL });
});

/** What is wrong with `password` for the account with `email`, by the rules above, or null. */
export function passwordProblem(password: string, email: string): string | null {
  const r = passwordSchema.safeParse(password);
  if (!r.success) return r.error.issues[0]?.message ?? "is not allowed";
  return isEmail(password, email) ? SAME_AS_EMAIL : null;
}

export type Account = typeof accounts.$inferSelect;

/** A new account's email and password checked as createAccount checks them, with no database. */
export function parseNewAccount(input: { email: string; password: string }): z.output<typeof newAccountSchema> {
  const parsed = newAccountSchema.safeParse(input);
  if (!parsed.success) throw new DomainError("invalid_request", "The account details are not valid.", zodFieldErrors(parsed.error));
  return parsed.data;
}

/** A unique index refused the row: postgres.js and PGlite both carry SQLSTATE 23505, on the error or its cause. */
function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; cause?: { code?: string } };
  return e?.code === "23505" || e?.cause?.code === "23505";
}

const emailTaken = () => new DomainError("email_taken", "An account with this email already exists.", [{ field: "email", message: "is already registered" }]);

/**
 * Creates an account. The first account of an empty database becomes an operator, as does
 * one created with `operator: true`. An account made by the CLI or an operator starts with
 * its address confirmed (they vouch for it); one given `confirmAddress` (sign-up) starts
 * unconfirmed, and `confirmAddress` runs in the same transaction to send it the link.
 * `passwordHash`, when the caller hashed the password already (sign-up hashes it before it
 * knows whether the address is free). A taken address is `email_taken`, also when another
 * sign-up for it commits first.
 */
export async function createAccount(
  deps: Pick<Deps, "db" | "clock" | "passwords">,
  input: { email: string; password: string; operator?: boolean },
  who: Actor,
  opts: { confirmAddress?: (tx: Tx, account: Account) => Promise<void>; passwordHash?: string } = {},
): Promise<Account> {
  const { email, password } = parseNewAccount(input);
  const passwordHash = opts.passwordHash ?? (await deps.passwords.hash(password));
  const now = new Date(deps.clock.now());
  try {
    return await deps.db.transaction(async (tx) => {
      const existing = await tx.select({ id: accounts.id }).from(accounts).where(eq(accounts.email, email));
      if (existing.length) throw emailTaken();
      const [{ n } = { n: 0 }] = await tx.select({ n: count() }).from(accounts);
      const [account] = await tx
        .insert(accounts)
        .values({ id: newId("acct"), email, passwordHash, isOperator: Boolean(input.operator) || n === 0, emailVerifiedAt: opts.confirmAddress ? null : now, createdAt: now, updatedAt: now })
        .returning();
      await recordAudit(tx, who, { accountId: account!.id, action: "account.created", changes: { email, operator: account!.isOperator } }, now);
      await opts.confirmAddress?.(tx, account!);
      return account!;
    });
  } catch (err) {
    // Another transaction inserted the address between this one's check and its insert.
    if (isUniqueViolation(err)) throw emailTaken();
    throw err;
  }
}

export async function findAccountByEmail(deps: Pick<Deps, "db">, email: string): Promise<Account | undefined> {
  const [row] = await deps.db.select().from(accounts).where(eq(accounts.email, email.trim().toLowerCase()));
  return row;
}

/** Whether the account is an operator (may allow private webhook targets, sees /admin). */
export async function isOperator(deps: Pick<Deps, "db">, accountId: string): Promise<boolean> {
  const [row] = await deps.db.select({ op: accounts.isOperator }).from(accounts).where(eq(accounts.id, accountId));
  return Boolean(row?.op);
}

/** Every account, oldest first: what an operator sees of them (never a password hash). */
export async function listAccounts(deps: Pick<Deps, "db">): Promise<{ id: string; email: string; operator: boolean; createdAt: string }[]> {
  const rows = await deps.db
    .select({ id: accounts.id, email: accounts.email, operator: accounts.isOperator, createdAt: accounts.createdAt })
    .from(accounts)
    .orderBy(asc(accounts.createdAt), asc(accounts.id));
  return rows.map((r) => ({ ...r, createdAt: r.createdAt.toISOString() }));
}

/** Why an operator suspends an account: shown to the account's users in the portal. */
export const suspensionReasonSchema = z
  .string()
  .trim()
  .min(1, "is required: the account's users are shown it")
  .max(500, "must be at most 500 characters");

/**
 * After a change the gateway reads with every key (the plan, a suspension): each key of the
 * account is evicted here and announced to every instance (pub/sub and the revocation
 * epoch), so the next request on any instance reads the account again.
 */
export async function announceAccountKeys(deps: Pick<Deps, "db" | "keyCache">, accountId: string): Promise<void> {
  const rows = await deps.db
    .select({ hash: apiKeys.hash })
    .from(apiKeys)
    .where(and(eq(apiKeys.accountId, accountId), isNull(apiKeys.revokedAt)));
  await Promise.all(rows.map((r) => deps.keyCache.announce(r.hash)));
}

/**
 * Suspends an account: from the next request on every instance each of its keys answers
 * 403 `account_suspended` (the gateway and the management API); its users can still sign in
 * to the portal, which shows them `reason`. Suspending a suspended account changes only
 * its reason. Audited as `account.suspended` with `{reason}`.
 */
export async function suspendAccount(deps: Pick<Deps, "db" | "clock" | "keyCache">, accountId: string, reason: string, who: Actor): Promise<Account> {
  const parsed = suspensionReasonSchema.safeParse(reason);
  if (!parsed.success) throw new DomainError("invalid_request", "The suspension is not valid.", zodFieldErrors(parsed.error).map((e) => ({ ...e, field: "reason" })));
  const now = new Date(deps.clock.now());
  const account = await deps.db.transaction(async (tx) => {
    const [current] = await tx.select({ suspendedAt: accounts.suspendedAt }).from(accounts).where(eq(accounts.id, accountId)).for("update");
    if (!current) throw notFound("account");
    const [row] = await tx
      .update(accounts)
      .set({ suspendedAt: current.suspendedAt ?? now, suspendedReason: parsed.data, updatedAt: now })
      .where(eq(accounts.id, accountId))
      .returning();
    await recordAudit(tx, who, { accountId, action: "account.suspended", changes: { reason: parsed.data } }, now);
    return row!;
  });
  await announceAccountKeys(deps, accountId);
  return account;
}

/**
 * Lifts a suspension: the account's keys answer again from the next request on every
 * instance. Audited as `account.unsuspended`; an account that is not suspended is left as is.
 */
export async function unsuspendAccount(deps: Pick<Deps, "db" | "clock" | "keyCache">, accountId: string, who: Actor): Promise<Account> {
  const now = new Date(deps.clock.now());
  const { account, changed } = await deps.db.transaction(async (tx) => {
    const [current] = await tx.select().from(accounts).where(eq(accounts.id, accountId)).for("update");
    if (!current) throw notFound("account");
    if (current.suspendedAt === null) return { account: current, changed: false };
    const [row] = await tx.update(accounts).set({ suspendedAt: null, suspendedReason: null, updatedAt: now }).where(eq(accounts.id, accountId)).returning();
    await recordAudit(tx, who, { accountId, action: "account.unsuspended", changes: {} }, now);
    return { account: row!, changed: true };
  });
  if (changed) await announceAccountKeys(deps, accountId);
  return account;
}
