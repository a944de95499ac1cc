import type { Config } from "../config.ts";
import { SESSION_COOKIE, SESSION_TTL_MS } from "./sessions.ts";

/**
 * Headers on every portal page: a CSP with no inline script or style (htmx is configured by
 * a meta tag and needs neither), no framing, no sniffing, no full referrers.
 */
export const PAGE_HEADERS: Record<string, string> = {
  "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
  "referrer-policy": "same-origin",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
};

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

/** An htmx request for a fragment (not a boosted navigation, which wants the whole page). */
export function wantsFragment(request: Request): boolean {
  return request.headers.get("hx-request") === "true" && request.headers.get("hx-boosted") !== "true";
}

/** After a successful POST: 303 for plain forms, HX-Redirect for htmx. */
export function redirectAfterPost(request: Request, to: string, headers: Record<string, string> = {}): Response {
  if (request.headers.get("hx-request") === "true") {
    return new Response(null, { status: 200, headers: { "hx-redirect": to, ...headers } });
  }
  return new Response(null, { status: 303, headers: { location: to, ...headers } });
}

/** `next` after login: only our own portal paths, never another host. */
export function safeNext(next: unknown): string {
  return typeof next === "string" && /^\/portal(\/[A-Za-z0-9_\-/?=&.%]*)?$/.test(next) && !next.startsWith("//") ? next : "/portal";
}

/**
 * A page or fragment. A page answered to a POST should name a GET address in `hx-push-url`
 * (htmx would otherwise record the POST-only URL in the history).
 */
export function htmlResponse(body: JSX.Element | string, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(String(body), { status, headers: { "content-type": "text/html; charset=utf-8", ...PAGE_HEADERS, ...headers } });
}
