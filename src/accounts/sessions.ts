import { randomBytes, timingSafeEqual } from "node:crypto";
import { eq, lt } from "drizzle-orm";
import type { Db, Tx } from "../db/client.ts";
import type { Deps } from "../deps.ts";
import { accounts, sessions } from "./accounts.sql.ts";
import { randomBase62 } from "../ids.ts";

export const SESSION_COOKIE = "kp_session";
/**
 * The name over https: a browser keeps a `__Host-` cookie only when it is Secure, Path=/ and
 * has no Domain, so no subdomain or plain-http page can set or shadow it (RFC 6265bis §4.1.3.2).
 * SESSION_COOKIE is still read, so sessions opened before the prefix keep working.
 */
export const SECURE_SESSION_COOKIE = "__Host-kp_session";
/** Sliding lifetime: a session unused for 30 days ends. */
export const SESSION_TTL_MS = 30 * 86_400_000;
/** Extend on use, but write the timestamp at most once an hour (Lucia's guide). */
const EXTEND_EVERY_MS = 3_600_000;

export interface Session {
  id: string;
  accountId: string;
  email: string;
  isOperator: boolean;
  csrfToken: string;
  expiresAt: Date;
}

const sha256 = (s: string) => new Bun.CryptoHasher("sha256").update(s).digest("hex");

/**
 * A new session. The token `<id>.<secret>` goes to the cookie once; the database keeps only
 * SHA-256 of the 32-byte secret, so a copy of the table opens no session.
 */
export async function createSession(
  deps: Pick<Deps, "db" | "clock">,
  accountId: string,
  meta: SessionMeta,
): Promise<{ token: string; session: Session }> {
  const [account] = await deps.db.select({ id: accounts.id, email: accounts.email, isOperator: accounts.isOperator }).from(accounts).where(eq(accounts.id, accountId));
  return insertSession(deps.db, deps, account!, meta);
}

/** Where a session was opened from, kept for the account's own view of its sessions. */
export interface SessionMeta {
  ip?: string | null;
  userAgent?: string | null;
}

async function insertSession(
  db: Db | Tx,
  deps: Pick<Deps, "clock">,
  account: { id: string; email: string; isOperator: boolean },
  meta: SessionMeta,
): Promise<{ token: string; session: Session }> {
  const id = `sess_${randomBase62(16)}`;
  const secret = randomBytes(32).toString("base64url");
  const now = deps.clock.now();
  const expiresAt = new Date(now + SESSION_TTL_MS);
  const csrfToken = randomBytes(32).toString("base64url");
  await db.insert(sessions).values({
    id,
    accountId: account.id,
    secretHash: sha256(secret),
    csrfToken,
    createdAt: new Date(now),
    lastSeenAt: new Date(now),
    expiresAt,
    ip: meta.ip ?? null,
    userAgent: meta.userAgent?.slice(0, 300) ?? null,
  });
  return { token: `${id}.${secret}`, session: { id, accountId: account.id, email: account.email, isOperator: account.isOperator, csrfToken, expiresAt } };
}

/**
 * After a password change, inside its transaction: every session of the account ends, the
 * one that made the change too, and that browser gets a new one — a new id, secret and CSRF
 * token — so nothing read or fixed before the change (a cookie, a page's token) works after
 * it (OWASP Session Management Cheat Sheet: renew the session ID after a privilege change,
 * such as a password change).
 */
export async function renewSessions(
  tx: Tx,
  deps: Pick<Deps, "clock">,
  account: { id: string; email: string; isOperator: boolean },
  meta: SessionMeta,
): Promise<{ token: string; session: Session }> {
  await tx.delete(sessions).where(eq(sessions.accountId, account.id));
  return insertSession(tx, deps, account, meta);
}

/** The session a cookie token opens, or null; extends a live session's expiry (at most hourly). */
export async function validateSession(deps: Pick<Deps, "db" | "clock">, token: string | undefined): Promise<Session | null> {
  if (!token || token.length > 200) return null;
  const dot = token.indexOf(".");
  if (dot <= 0) return null;
  const id = token.slice(0, dot);
  const secret = token.slice(dot + 1);
  const [row] = await deps.db
    .select({ s: sessions, email: accounts.email, isOperator: accounts.isOperator })
    .from(sessions)
    .innerJoin(accounts, eq(accounts.id, sessions.accountId))
    .where(eq(sessions.id, id));
  if (!row) return null;
  const given = Buffer.from(sha256(secret), "hex");
  const stored = Buffer.from(row.s.secretHash, "hex");
  if (given.length !== stored.length || !timingSafeEqual(given, stored)) return null;
  const now = deps.clock.now();
  if (row.s.expiresAt.getTime() <= now) {
    await deps.db.delete(sessions).where(eq(sessions.id, id));
    return null;
  }
  let expiresAt = row.s.expiresAt;
  if (now - row.s.lastSeenAt.getTime() >= EXTEND_EVERY_MS) {
    expiresAt = new Date(now + SESSION_TTL_MS);
    await deps.db.update(sessions).set({ lastSeenAt: new Date(now), expiresAt }).where(eq(sessions.id, id));
  }
  return { id, accountId: row.s.accountId, email: row.email, isOperator: row.isOperator, csrfToken: row.s.csrfToken, expiresAt };
}

export async function deleteSession(deps: Pick<Deps, "db">, id: string): Promise<void> {
  await deps.db.delete(sessions).where(eq(sessions.id, id));
}

export async function deleteExpiredSessions(deps: Pick<Deps, "db" | "clock">): Promise<void> {
  await deps.db.delete(sessions).where(lt(sessions.expiresAt, new Date(deps.clock.now())));
}

/** Constant-time comparison of a submitted CSRF token with the session's. */
export function csrfMatches(session: Session, submitted: string | null | undefined): boolean {
  if (!submitted) return false;
  const a = Buffer.from(submitted);
  const b = Buffer.from(session.csrfToken);
  return a.length === b.length && timingSafeEqual(a, b);
}
