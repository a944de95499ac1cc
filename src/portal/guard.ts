import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";
import { csrfMatches, validateSession, type Session } from "../accounts/sessions.ts";
import { sameOrigin, sessionToken } from "./http.ts";
import { htmlResponse } from "./respond.ts";
import { MessagePage } from "../../views/message.tsx";

export function sessionOf(ctx: object): Session {
  const session = (ctx as { session?: Session }).session;
  if (!session) throw new Error("portal route without the `portal` macro");
  return session;
}

/** The CSRF token a request carries: htmx sends the header, plain forms the hidden field. */
export function submittedCsrf(request: Request, body: unknown): string | null {
  const header = request.headers.get("x-csrf-token");
  if (header) return header;
  const field = (body as { _csrf?: unknown } | null)?._csrf;
  return typeof field === "string" ? field : null;
}

/**
 * The `portal` macro: a valid session cookie, or a redirect to the login page; on every
 * state-changing request also a same-origin request and the session's CSRF token (403).
 */
export const portalGuard = (deps: Deps) =>
  new Elysia({ name: "portal-guard" }).macro({
    portal: (enabled: boolean) => ({
      async beforeHandle(ctx) {
        if (!enabled) return;
        const session = await validateSession(deps, sessionToken(ctx.request));
        if (!session) {
          const url = new URL(ctx.request.url);
          const to = `/login?next=${encodeURIComponent(url.pathname + url.search)}`;
          if (ctx.request.headers.get("hx-request") === "true") return new Response(null, { status: 401, headers: { "hx-redirect": to } });
          return new Response(null, { status: 303, headers: { location: to } });
        }
        if (ctx.request.method !== "GET" && ctx.request.method !== "HEAD") {
          if (!sameOrigin(ctx.request) || !csrfMatches(session, submittedCsrf(ctx.request, ctx.body))) {
            return htmlResponse(
              MessagePage({ title: "Request refused", message: "This form was not sent from a page of this site, or it expired. Reload the page and try again." }),
              403,
            );
          }
        }
        (ctx as { session?: Session }).session = session;
      },
    }),
  });
