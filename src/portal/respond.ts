/** How portal pages answer: HTML with the page headers, redirects after a POST, the message page. */
import { DomainError } from "../errors.ts";
import type { Session } from "../accounts/sessions.ts";
import type { PageSession } from "../../views/layout.tsx";
import { MessagePage } from "../../views/message.tsx";

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

/**
 * A page or fragment. A page answered to a POST should name a GET address in `hx-push-url`
 * (htmx would otherwise record the POST-only URL in the history).
 */
export function htmlResponse(body: JSX.Element | string, status = 200, headers: Record<string, string> = {}): Response {
  return new Response(String(body), { status, headers: { "content-type": "text/html; charset=utf-8", ...PAGE_HEADERS, ...headers } });
}

/** The message page: a title and a sentence, for refusals and errors a browser navigates to. */
export function messagePage(status: number, title: string, message: string, session?: Session): Response {
  return htmlResponse(MessagePage({ title, message, session: session && layoutSession(session) }), status);
}

/** What the layout needs of a session to show the signed-in navigation (no counts: no queries). */
export function layoutSession(s: Session): PageSession {
  return { email: s.email, csrfToken: s.csrfToken, isOperator: s.isOperator };
}

export const NOT_FOUND = { title: "Not found", message: "There is no such page, or it belongs to another account." };

/** The page a browser gets for an error the app's error hook answers (src/plugins/errors.ts). */
export function errorPage(status: number): Response {
  if (status === 404) return notFoundPage();
  if (status >= 500) return messagePage(status, "Something went wrong", "Something went wrong on our side. Try again in a moment.");
  return messagePage(status, status === 400 ? "Bad request" : "Error", "The request could not be handled.");
}

/** Another account's object, or none: the same page, so ids cannot be probed. */
export const notFoundPage = (session?: Session) => messagePage(404, NOT_FOUND.title, NOT_FOUND.message, session);

/**
 * Runs a lookup of the account's own object: another account's object, or none, answers
 * the 404 page (ids cannot be probed); other failures go on.
 */
export async function ownedOr404<T>(session: Session, fn: () => Promise<T>): Promise<T | Response> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof DomainError && err.code === "not_found") return notFoundPage(session);
    throw err;
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

/** A CSV download. */
export function csvResponse(csv: string, filename: string): Response {
  return new Response(csv, {
    headers: { "content-type": "text/csv; charset=utf-8", "content-disposition": `attachment; filename="${filename}"`, "x-content-type-options": "nosniff" },
  });
}
