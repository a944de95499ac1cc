import { Elysia } from "elysia";
import type { Server } from "bun";
import type { Actor } from "../audit/service.ts";
import type { Deps } from "../deps.ts";
import { DomainError } from "../errors.ts";
import type { CachedKey } from "../keys/cache.ts";
import { clientIp, runChain, socketAddress } from "../gateway/chain.ts";
import { csrfMatches, validateSession, type Session } from "../accounts/sessions.ts";
import { PROBLEM_CONTENT_TYPE, ProblemError, problemBody } from "../plugins/problem.ts";
import { MessagePage } from "../../views/message.tsx";
import { isHttps, sameOrigin, sessionToken, supersededSessionCookie } from "./http.ts";
import { NOT_FOUND, PAGE_HEADERS } from "./respond.ts";

/** Who is calling /api: the account whose data every query is filtered by, and the audit actor. */
export interface Caller {
  accountId: string;
  actor: Actor;
}

/** The audit actor of a request: the account, the client's address, its user agent. */
export function requestActor(deps: Pick<Deps, "config">, request: Request, server: Server<unknown> | null, accountId: string): Actor {
  return {
    actor: `account:${accountId}`,
    ip: clientIp(request.headers, socketAddress(server, request), deps.config.trustProxy) ?? null,
    userAgent: request.headers.get("user-agent"),
  };
}

/** The CSRF token a request carries: htmx sends the header, plain forms the hidden field. */
function submittedCsrf(request: Request, body: unknown): string | null {
  const header = request.headers.get("x-csrf-token");
  if (header) return header;
  const field = (body as { _csrf?: unknown } | null)?._csrf;
  return typeof field === "string" ? field : null;
}

/**
 * Why the management API refuses a key that is being replaced, or null. A rotation is the
 * remedy for a suspected leak, so whoever holds the old key must gain nothing from it: not
 * the new secret, nor a key of their own, nor a say over the webhook or the policies. In a
 * roll's or a scheduled rotation's grace the old key may still read (a script finishing its
 * run); the old key of an emergency rotation, and a key a leak report flagged, get nothing.
 * The data API is not affected: the old key answers there until its grace ends.
 */
function replacedKeyRefusal(key: Pick<CachedKey, "graceEndsAt" | "leaked" | "emergency">, method: string): string | null {
  if (key.leaked) return "This key was reported leaked: it can no longer use the management API. Sign in to the portal to rotate or revoke it.";
  if (key.graceEndsAt === null) return null;
  if (key.emergency) return "This key is being replaced in an emergency rotation: it can no longer use the management API. Use its replacement, or sign in to the portal.";
  if (method === "GET" || method === "HEAD") return null;
  return "This key is being replaced (its roll or rotation is in its grace period): it can no longer manage keys, rotations, the webhook or the policies. Use its replacement, or sign in to the portal.";
}

/** JSON bodies nested deeper than this are refused before any schema sees them. */
const MAX_BODY_DEPTH = 32;

/**
 * Whether a parsed body nests deeper than `max` (arrays and objects), walked without
 * recursion and stopping at the first level too deep. A body of 20,000 nested arrays cost
 * Elysia 9 s to describe in its validation error (JSON.stringify of deep nesting is slow).
 */
function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length) {
    const [v, depth] = stack.pop()!;
    if (v === null || typeof v !== "object") continue;
    if (depth >= max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

/**
 * The one CSRF check: a state-changing request with a session must be same-origin and carry
 * the session's token (htmx and the API send it as X-CSRF-Token, plain forms as a field).
 */
function csrfRefused(request: Request, session: Session, submitted: string | null): boolean {
  if (request.method === "GET" || request.method === "HEAD") return false;
  return !sameOrigin(request) || !csrfMatches(session, submitted);
}

type Set = { headers: Record<string, string | number>; status?: number | string };

/** Strict-Transport-Security on answers over https (RFC 6797): a year, subdomains too. */
export const HSTS = "max-age=31536000; includeSubDomains";

/** Where a page that needs a session sends a visitor without one. */
function toLogin(request: Request, set: Set): number {
  const url = new URL(request.url);
  const to = `/login?next=${encodeURIComponent(url.pathname + url.search)}`;
  if (request.headers.get("hx-request") === "true") {
    set.headers["hx-redirect"] = to;
    return 401;
  }
  set.headers.location = to;
  return 303;
}

/** The message page as a macro's answer body, with the page headers set. */
function pageBody(set: Set, title: string, message: string): string {
  Object.assign(set.headers, PAGE_HEADERS, { "content-type": "text/html; charset=utf-8" });
  return String(MessagePage({ title, message }));
}

/**
 * Who may use a route, as macros that resolve a typed context once per request:
 *
 * - `page: true` — a portal page: a valid session cookie (else a redirect to the login page),
 *   and on a state-changing request a same-origin request carrying the session's CSRF
 *   token (403). Resolves `{ session, actor }`; the answer carries `Cache-Control: no-store`.
 * - `operator: true` — the same, for operators only: anyone else gets the 404 page, as if
 *   the page did not exist.
 * - `caller: true` — the management API: a key holding `keys:manage` (checked like a gateway
 *   request: status, expiry, IP allowlist, rate limit; no quota, no metering; a test key is
 *   refused), or a session cookie, which on a state-changing request also needs X-CSRF-Token
 *   and a same-origin request. A key being replaced (in a roll's or rotation's grace) may
 *   only read, and the old key of an emergency rotation or a key reported leaked not even
 *   that (403 key_replaced). It runs before the route's schemas are checked, so an
 *   unauthenticated request learns nothing from a 400. Resolves `{ caller }`.
 *
 * @example
 * new Elysia().use(authPlugin(deps)).get("/portal/x", ({ session }) => …, { page: true })
 */
export const authPlugin = (deps: Deps) => {
  const callers = new WeakMap<Request, Caller>();

  async function authenticateCaller(request: Request, server: Server<unknown> | null, set: Set): Promise<Caller> {
    const socketIp = socketAddress(server, request);
    const h = request.headers;
    const cookieToken = h.has("authorization") || h.has("x-api-key") ? undefined : sessionToken(request);
    if (cookieToken) {
      const session = await validateSession(deps, cookieToken);
      if (!session) throw new DomainError("invalid_session", "The session has ended; log in again.");
      if (csrfRefused(request, session, h.get("x-csrf-token"))) {
        throw new DomainError("csrf_failed", "A request authenticated by a session cookie needs the session's X-CSRF-Token header.");
      }
      return { accountId: session.accountId, actor: requestActor(deps, request, server, session.accountId) };
    }
    const result = await runChain(deps, request, set.headers as Record<string, string>, socketIp, "keys:manage", 0, { quota: false });
    if ("problem" in result) {
      set.headers["content-type"] = PROBLEM_CONTENT_TYPE;
      throw new ProblemError(result.problem);
    }
    // Test keys exercise the data API; changing an account's keys is a live operation.
    if (result.key.environment === "test") {
      throw new ProblemError(problemBody("test_key_not_allowed", "A test key cannot use the management API; use a live key with keys:manage."));
    }
    const replaced = replacedKeyRefusal(result.key, request.method);
    if (replaced) throw new ProblemError(problemBody("key_replaced", replaced));
    return { accountId: result.key.accountId, actor: { ...requestActor(deps, request, server, result.key.accountId), actor: `key:${result.key.id}` } };
  }

  async function signedIn(request: Request, body: unknown, set: Set): Promise<{ session: Session } | { refuse: number; body?: string }> {
    const session = await validateSession(deps, sessionToken(request));
    if (!session) return { refuse: toLogin(request, set) };
    // A signed-in page is the account's own: no cache (the browser's, a proxy's) may keep it.
    set.headers["cache-control"] = "no-store";
    const superseded = supersededSessionCookie(request, deps.config);
    if (superseded) set.headers["set-cookie"] = superseded;
    if (csrfRefused(request, session, submittedCsrf(request, body))) return { refuse: 403, body: pageBody(set, "Request refused", "This form was not sent from a page of this site, or it expired. Reload the page and try again.") };
    return { session };
  }

  // HSTS: once a browser has reached us over https, it never tries plain http for a year.
  // Global, so it covers every route registered after the first capability that uses this
  // plugin: the API, the portal, the docs (the data API, before it, is no browser's).
  // Destructured: a hook that takes the whole context makes Elysia parse every request.
  return new Elysia({ name: "auth" })
    .onTransform({ as: "global" }, ({ request, set }) => {
      if (isHttps(request, deps.config)) set.headers["strict-transport-security"] = HSTS;
    })
    .macro({
      page: {
        async resolve({ request, body, server, set, status }) {
          const r = await signedIn(request, body, set);
          if ("refuse" in r) return status(r.refuse, r.body);
          return { session: r.session, actor: requestActor(deps, request, server, r.session.accountId) };
        },
      },
      operator: {
        async resolve({ request, body, server, set, status }) {
          const r = await signedIn(request, body, set);
          if ("refuse" in r) return status(r.refuse, r.body);
          // Not an operator: the page does not exist for you.
          if (!r.session.isOperator) return status(404, pageBody(set, NOT_FOUND.title, NOT_FOUND.message));
          return { session: r.session, actor: requestActor(deps, request, server, r.session.accountId) };
        },
      },
      caller: {
        async transform({ request, server, set, body }) {
          callers.set(request, await authenticateCaller(request, server, set));
          if (nestsDeeperThan(body, MAX_BODY_DEPTH)) throw new DomainError("invalid_request", `The body nests deeper than ${MAX_BODY_DEPTH} levels.`);
        },
        resolve({ request }) {
          return { caller: callers.get(request)! };
        },
      },
    });
};
