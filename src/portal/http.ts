import type { Config } from "../config.ts";
import { SECURE_SESSION_COOKIE, SESSION_COOKIE, SESSION_TTL_MS } from "../accounts/sessions.ts";

/** The session cookie a request carries, by name: the `__Host-` one wins over the one set before it existed. */
function sessionCookieIn(request: Request): { name: string; token: string } | undefined {
  const header = request.headers.get("cookie");
  if (!header) return undefined;
  const cookies = new Bun.CookieMap(header);
  for (const name of [SECURE_SESSION_COOKIE, SESSION_COOKIE]) {
    const token = cookies.get(name);
    if (token) return { name, token };
  }
  return undefined;
}

export function sessionToken(request: Request): string | undefined {
  return sessionCookieIn(request)?.token;
}

/**
 * Whether the client reached us over https: the request's own scheme, or behind a trusted
 * proxy its X-Forwarded-Proto. The URL is not parsed: Bun's request.url is a bare path when
 * the Host header is not a valid host, and `new URL` would throw on it.
 */
export function isHttps(request: Request, config: Pick<Config, "trustProxy">): boolean {
  if (request.url.startsWith("https:")) return true;
  return config.trustProxy && request.headers.get("x-forwarded-proto")?.split(",")[0]?.trim() === "https";
}

function secureFlag(request: Request, config: Pick<Config, "trustProxy" | "cookieSecure">): boolean {
  if (config.cookieSecure === "true") return true;
  if (config.cookieSecure === "false") return false;
  return isHttps(request, config);
}

/** A Secure session cookie carries the `__Host-` prefix (its rules: Secure, Path=/, no Domain — all met here). */
export function sessionCookie(token: string, request: Request, config: Pick<Config, "trustProxy" | "cookieSecure">): string {
  const secure = secureFlag(request, config);
  return new Bun.Cookie(secure ? SECURE_SESSION_COOKIE : SESSION_COOKIE, token, {
    path: "/",
    httpOnly: true,
    sameSite: "lax",
    secure,
    maxAge: Math.floor(SESSION_TTL_MS / 1000),
  }).serialize();
}

function expiredCookie(name: string, secure: boolean): string {
  return new Bun.Cookie(name, "", { path: "/", httpOnly: true, sameSite: "lax", secure: secure || name === SECURE_SESSION_COOKIE, maxAge: 0 }).serialize();
}

/** Ends the session cookie the request signed in with (or, carrying none, the one a sign-in here would set). */
export function clearedSessionCookie(request: Request, config: Pick<Config, "trustProxy" | "cookieSecure">): string {
  const secure = secureFlag(request, config);
  return expiredCookie(sessionCookieIn(request)?.name ?? (secure ? SECURE_SESSION_COOKIE : SESSION_COOKIE), secure);
}

/**
 * The old-named cookie's expiry, for a browser that holds both names (it signed in again over
 * https): the `__Host-` one is the session in use, and the old one must not outlive it — a
 * sign-out ends only the session in use, and the old cookie would sign the browser back in.
 */
export function supersededSessionCookie(request: Request, config: Pick<Config, "trustProxy" | "cookieSecure">): string | undefined {
  const header = request.headers.get("cookie");
  if (!header?.includes(SECURE_SESSION_COOKIE)) return undefined;
  const cookies = new Bun.CookieMap(header);
  return cookies.get(SECURE_SESSION_COOKIE) && cookies.get(SESSION_COOKIE) ? expiredCookie(SESSION_COOKIE, secureFlag(request, config)) : undefined;
}

/**
 * A state-changing request must come from our own pages (Hono's csrf check): the browser's
 * Sec-Fetch-Site, or else Origin, must say same origin. Clients that send neither (curl,
 * old browsers) pass here and still need the CSRF token where a session is involved.
 */
export function sameOrigin(request: Request): boolean {
  const site = request.headers.get("sec-fetch-site");
  if (site) return site === "same-origin" || site === "none";
  const origin = request.headers.get("origin");
  if (!origin || origin === "null") return origin !== "null";
  const host = request.headers.get("host") ?? new URL(request.url).host;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

/** `next` after login: only our own portal paths, never another host. */
export function safeNext(next: unknown): string {
  return typeof next === "string" && /^\/portal(\/[A-Za-z0-9_\-/?=&.%]*)?$/.test(next) && !next.startsWith("//") ? next : "/portal";
}
