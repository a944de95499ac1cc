import { randomBytes, timingSafeEqual } from "node:crypto";
import Bowser from "bowser";
import { and, count, desc, eq, gt, lt, ne } from "drizzle-orm";
import { recordAudit, type Actor } from "../audit/service.ts";
import type { Db, Tx } from "../db/client.ts";
import type { Deps } from "../deps.ts";
import { notFound } from "../errors.ts";
import { revokeSandboxKeys } from "../keys/service.ts";
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
/**
 * Extend on use, but not on every request (Lucia's guide writes at most hourly). Five minutes
 * here: the same write also keeps "last seen" in Settings' sessions list, which an hour made
 * too coarse to tell a session in use from one left open; an active browser then costs at
 * most 12 one-row UPDATEs by primary key an hour, and a request in between none.
 */
export const EXTEND_EVERY_MS = 300_000;

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

/** A session as the account's own list shows it: never its secret's hash nor its CSRF token. */
export interface SessionView {
  id: string;
  /** "Firefox 140 on Linux", "curl 8.5.0": read from the user agent. */
  device: string;
  userAgent: string | null;
  /** The client's address when the session was opened, as stored. */
  ip: string | null;
  createdAt: string;
  lastSeenAt: string;
  /** The session the list was asked for with: this browser. */
  current: boolean;
}

/** How many sessions the list shows: the most recently seen; "sign out everywhere else" ends them all. */
export const SESSIONS_SHOWN = 100;

/** A product token of RFC 9110 §10.1.5 (`curl/8.5.0`): `token ["/" product-version]`. */
const PRODUCT = /^([!#$%&'*+.^_`|~0-9A-Za-z-]{1,40})(?:\/([!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}))?/;

/** The first number of a dotted version: "140.0" → "140". */
const major = (version: string | undefined) => version?.split(".")[0] || "";

/**
 * A readable summary of a user agent: "Firefox 140 on Linux", "Chrome 131 on Android 14",
 * "Microsoft Edge 131 on Windows 10". Browsers and systems are recognised by bowser; a client
 * it does not know (curl, a script's HTTP library) is named by the user agent's first product
 * token, which RFC 9110 §10.1.5 puts first by convention: "curl 8.5.0".
 */
export function describeDevice(userAgent: string | null | undefined): string {
  const ua = userAgent?.trim();
  if (!ua) return "Unknown device";
  const parsed = Bowser.parse(ua);
  const os = parsed.os.name
    ? [parsed.os.name, parsed.os.name === "Windows" ? parsed.os.versionName : parsed.os.name === "Android" || parsed.os.name === "iOS" ? major(parsed.os.version) : ""].filter(Boolean).join(" ")
    : "";
  let client = parsed.browser.name ? [parsed.browser.name, major(parsed.browser.version)].filter(Boolean).join(" ") : "";
  if (!client) {
    const product = PRODUCT.exec(ua);
    // "Mozilla/5.0" alone names no client: every browser sends it.
    client = product && product[1] !== "Mozilla" ? [product[1], product[2]].filter(Boolean).join(" ") : "Unknown browser";
  }
  return os ? `${client} on ${os}` : client;
}

/**
 * The account's live sessions (at most SESSIONS_SHOWN), and how many there are: this
 * browser's (`currentId`) first, where people look for it, then the most recently seen first.
 */
export async function listSessions(deps: Pick<Deps, "db" | "clock">, accountId: string, currentId: string): Promise<{ sessions: SessionView[]; total: number }> {
  const live = and(eq(sessions.accountId, accountId), gt(sessions.expiresAt, new Date(deps.clock.now())));
  const [rows, [counted]] = await Promise.all([
    deps.db
      .select({ id: sessions.id, ip: sessions.ip, userAgent: sessions.userAgent, createdAt: sessions.createdAt, lastSeenAt: sessions.lastSeenAt })
      .from(sessions)
      .where(live)
      .orderBy(desc(sessions.lastSeenAt), desc(sessions.createdAt), desc(sessions.id))
      .limit(SESSIONS_SHOWN),
    deps.db.select({ n: count() }).from(sessions).where(live),
  ]);
  const current = rows.findIndex((r) => r.id === currentId);
  if (current > 0) rows.unshift(...rows.splice(current, 1));
  return {
    sessions: rows.map((r) => ({
      id: r.id,
      device: describeDevice(r.userAgent),
      userAgent: r.userAgent,
      ip: r.ip,
      createdAt: r.createdAt.toISOString(),
      lastSeenAt: r.lastSeenAt.toISOString(),
      current: r.id === currentId,
    })),
    total: counted?.n ?? rows.length,
  };
}

/**
 * Signs out one of the account's sessions (another account's id, or one that has ended, is
 * not_found and ends nothing), audited as `account.session_revoked`, and revokes the try-it
 * key it held. validateSession reads the row on every request, so the session's next request,
 * on any instance, finds none.
 */
export async function endSession(deps: Deps, accountId: string, id: string, who: Actor): Promise<SessionView> {
  const now = new Date(deps.clock.now());
  const ended = await deps.db.transaction(async (tx) => {
    const [row] = await tx
      .delete(sessions)
      .where(and(eq(sessions.id, id), eq(sessions.accountId, accountId), gt(sessions.expiresAt, now)))
      .returning({ id: sessions.id, ip: sessions.ip, userAgent: sessions.userAgent, createdAt: sessions.createdAt, lastSeenAt: sessions.lastSeenAt });
    if (!row) throw notFound("session");
    const device = describeDevice(row.userAgent);
    await recordAudit(tx, who, { accountId, action: "account.session_revoked", changes: { session: row.id, device, ip: row.ip } }, now);
    return { ...row, device };
  });
  await revokeSandboxKeys(deps, { sessionId: id }, who);
  return { ...ended, createdAt: ended.createdAt.toISOString(), lastSeenAt: ended.lastSeenAt.toISOString(), current: false };
}

/**
 * "Sign out everywhere else": every session of the account but `keepId` (this browser's)
 * ends, with the try-it keys they held; audited as `account.other_sessions_revoked` with the
 * count, when there was one to end. Returns how many ended.
 */
export async function endOtherSessions(deps: Deps, accountId: string, keepId: string, who: Actor): Promise<number> {
  const now = new Date(deps.clock.now());
  const ended = await deps.db.transaction(async (tx) => {
    const rows = await tx
      .delete(sessions)
      .where(and(eq(sessions.accountId, accountId), ne(sessions.id, keepId)))
      .returning({ id: sessions.id, expiresAt: sessions.expiresAt });
    // An expired row was only waiting for the sweep: it is not counted as signed out.
    const live = rows.filter((r) => r.expiresAt > now).length;
    if (live > 0) await recordAudit(tx, who, { accountId, action: "account.other_sessions_revoked", changes: { count: live } }, now);
    return live;
  });
  await revokeSandboxKeys(deps, { accountId, exceptSessionId: keepId }, who);
  return ended;
}
