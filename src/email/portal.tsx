/** @jsxImportSource @kitajs/html */
import type { Server } from "bun";
import { Elysia } from "elysia";
import { settingsModel, type SettingsState } from "../accounts/settings.ts";
import type { Session } from "../accounts/sessions.ts";
import type { Deps } from "../deps.ts";
import { DomainError } from "../errors.ts";
import { clientIp, socketAddress } from "../gateway/chain.ts";
import { formFields, formList, formText } from "../portal/form.ts";
import { sameOrigin } from "../portal/http.ts";
import { authPlugin } from "../portal/plugin.ts";
import { htmlResponse, messagePage } from "../portal/respond.ts";
import { mailPaths, SettingsPage } from "../../views/accounts/settings.tsx";
import { paths } from "../../views/components.tsx";
import { ConfirmEmailPage, UnsubscribePage } from "../../views/email/preferences.tsx";
import { MAIL_CATEGORIES } from "./messages.ts";
import { confirmEmailChange, EMAIL_LINKS, emailChangeLink, requestEmailChange, setMailPreferences, setOptOut, unsubscribeLinkTarget } from "./preferences.ts";

/** A link that does not work, whatever the reason: one readable page, so links cannot be probed. */
const badLink = () =>
  messagePage(404, "This link does not work", "The link is not valid: it was changed, it expired, it was already used, or a newer one replaced it. Your settings page has the current state.");

/** Pages that hold a single-use link's token are kept by no cache. */
const NO_STORE = { "cache-control": "no-store" };

/** The link's parameters from the query (a script may repeat a name: the first counts). */
const linkOf = (query: Record<string, unknown>) => ({ a: formText.parse(query.a), c: formText.parse(query.c), t: formText.parse(query.t) });

/** The audit's who of a request no session vouches for: the client's address and agent. */
function visitor(deps: Deps, request: Request, server: Server<unknown> | null) {
  return { ip: clientIp(request.headers, socketAddress(server, request), deps.config.trustProxy) ?? null, userAgent: request.headers.get("user-agent") };
}

/**
 * Mail's pages: the unsubscribe link of a notice, the link that confirms a new address, and
 * the Settings page's Mail and Change email forms.
 *
 * The unsubscribe POST is RFC 8058 one-click: a mail client (or its provider's server) posts
 * it with no session and no CSRF token, so the link's HMAC is the only authority, and it is
 * honoured at once. Opening the link (GET) only shows the button: scanners open links.
 */
export const emailPortal = (deps: Deps) =>
  new Elysia({ name: "email-portal" })
    .use(authPlugin(deps))
    .get(EMAIL_LINKS.unsubscribe, async ({ query }) => {
      const link = linkOf(query);
      const target = await unsubscribeLinkTarget(deps, link);
      if (!target) return badLink();
      return htmlResponse(UnsubscribePage({ link, what: MAIL_CATEGORIES[target.category], state: target.off ? "already" : "confirm" }));
    })
    .post(EMAIL_LINKS.unsubscribe, async ({ query, request, server }) => {
      const target = await unsubscribeLinkTarget(deps, linkOf(query));
      if (!target) return badLink();
      await setOptOut(deps, target.accountId, target.category, true, { actor: "unsubscribe-link", ...visitor(deps, request, server) });
      return htmlResponse(UnsubscribePage({ link: linkOf(query), what: MAIL_CATEGORIES[target.category], state: "done" }));
    })
    .get(EMAIL_LINKS.confirmEmail, async ({ query }) => {
      const token = formText.parse(query.token);
      const change = await emailChangeLink(deps, token);
      if (!change) return badLink();
      return htmlResponse(ConfirmEmailPage({ token, ...change, state: "confirm" }), 200, NO_STORE);
    })
    .post(EMAIL_LINKS.confirmEmail, async ({ body, request, server }) => {
      // No session is needed (the link may be opened in another browser): the token is the
      // authority, and the same-origin check keeps another site from posting it.
      if (!sameOrigin(request)) return messagePage(403, "Request refused", "This form was not sent from a page of this site. Open the link from the mail again.");
      const token = formText.parse(formFields(body).token);
      try {
        const done = await confirmEmailChange(deps, token, visitor(deps, request, server));
        return htmlResponse(ConfirmEmailPage({ token: "", email: done.email, oldEmail: done.oldEmail, state: "done" }), 200, NO_STORE);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        if (err.code === "email_taken") return messagePage(409, "Address already in use", "Another account uses this address now, so this account keeps its own. Choose another address in Settings.");
        return badLink();
      }
    })
    .post(mailPaths.mail, async ({ session, actor, body }) => {
      await setMailPreferences(deps, session.accountId, formList.parse(formFields(body).on), actor);
      return settingsPage(deps, session, { mail: { notice: "Mail preferences saved." } });
    }, { page: true })
    .post(mailPaths.email, async ({ session, actor, body }) => {
      const f = formFields(body);
      const email = formText.parse(f.email);
      try {
        await requestEmailChange(deps, session.accountId, { email, password: formText.parse(f.password) }, actor);
        return settingsPage(deps, session, { email: { sent: true } });
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        if (err.code === "too_many_attempts") return settingsPage(deps, session, { email: { email, message: err.detail } }, 429, { "retry-after": String(err.retryAfterSeconds ?? 3600) });
        return settingsPage(deps, session, { email: { email, errors: err.errors ?? [{ field: "email", message: err.detail }] } }, 422);
      }
    }, { page: true });

/** The settings page again with a mail section's outcome; it names the GET address for htmx's history. */
async function settingsPage(deps: Deps, session: Session, state: SettingsState, status = 200, headers: Record<string, string> = {}): Promise<Response> {
  return htmlResponse(SettingsPage(await settingsModel(deps, session, state)), status, { "hx-push-url": paths.settings, ...headers });
}
