import type { Config } from "../config.ts";
import { SESSION_COOKIE, SESSION_TTL_MS } from "../accounts/sessions.ts";

export function sessionToken(request: Request): string | undefined {
  const header = request.headers.get("cookie");
  if (!header) return undefined;
  return new Bun.CookieMap(header).get(SESSION_COOKIE) ?? undefined;
}

export function isHttps(request: Request, config: Pick<Config, "trustProxy">): boolean {
  if (new URL(request.url).protocol === "https:") return true;
  return config.trustProxy && request.headers.get("x-forwarded-proto")?.split(",")[0]?.trim() === "https";
}

function secureFlag(request: Request, config: Pick<Config, "trustProxy" | "cookieSecure">): boolean {
  if (config.cookieSecure === "true") return true;
  if (config.cookieSecure === "false") return false;
  return isHttps(request, config);
}

export function sessionCookie(token: string, request: Request, config: Pick<Config, "trustProxy" | "cookieSecure">): string {
  return new Bun.Cookie(SESSION_COOKIE, token, {
    path: "/",
    httpOnly: true,
    sameSite: "lax",
    secure: secureFlag(request, config),
    maxAge: Math.floor(SESSION_TTL_MS / 1000),
  }).serialize();
}

export function clearedSessionCookie(request: Request, config: Pick<Config, "trustProxy" | "cookieSecure">): string {
  return new Bun.Cookie(SESSION_COOKIE, "", { path: "/", httpOnly: true, sameSite: "lax", secure: secureFlag(request, config), maxAge: 0 }).serialize();
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
