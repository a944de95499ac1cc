/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";
import { DomainError } from "../errors.ts";
import { idParams } from "../ids.ts";
import { clearedSessionCookie } from "../portal/http.ts";
import { authPlugin } from "../portal/plugin.ts";
import { htmlResponse, redirectAfterPost, wantsFragment } from "../portal/respond.ts";
import { SettingsPage } from "../../views/accounts/settings.tsx";
import { SessionsSection, sessionPaths, type SessionsSectionProps } from "../../views/accounts/sessions.tsx";
import { paths } from "../../views/components.tsx";
import { endOtherSessions, endSession, listSessions, type Session } from "./sessions.ts";
import { settingsModel } from "./settings.ts";

type SessionsOutcome = Pick<SessionsSectionProps, "notice" | "message">;

/** Another account's session and one that has ended get the same answer, so ids cannot be probed. */
const NOT_YOURS = "That session had already ended, or it is not one of this account's: nothing was signed out.";

/**
 * The Sessions section's forms on the settings page: sign out one session, or every one but
 * this browser's ("Sign out everywhere else"; this browser signs out with the usual Sign
 * out, /logout). htmx swaps the section alone; a plain form gets the settings page again.
 */
export const sessionsPortal = (deps: Deps) => {
  /** The section (htmx) or the whole settings page with the section's outcome (a plain form). */
  async function answer(request: Request, session: Session, outcome: SessionsOutcome, status = 200): Promise<Response> {
    const headers = { vary: "HX-Request" };
    if (wantsFragment(request)) {
      const list = await listSessions(deps, session.accountId, session.id);
      return htmlResponse(SessionsSection({ ...list, csrf: session.csrfToken, ...outcome }), status, headers);
    }
    return htmlResponse(SettingsPage(await settingsModel(deps, session, { sessions: outcome })), status, { ...headers, "hx-push-url": paths.settings });
  }

  return new Elysia({ name: "sessions-portal" })
    .use(authPlugin(deps))
    .post(
      "/portal/settings/sessions/:id/revoke",
      async ({ session, actor, params, request }) => {
        let ended: Awaited<ReturnType<typeof endSession>>;
        try {
          ended = await endSession(deps, session.accountId, params.id, actor);
        } catch (err) {
          if (err instanceof DomainError && err.code === "not_found") return answer(request, session, { message: NOT_YOURS }, 404);
          throw err;
        }
        // This browser's own row: signed out like /logout, its cookie goes.
        if (ended.id === session.id) return redirectAfterPost(request, paths.login, { "set-cookie": clearedSessionCookie(request, deps.config) });
        return answer(request, session, { notice: `Signed out: ${ended.device}${ended.ip ? ` from ${ended.ip}` : ""}. Its next request will need to sign in again.` });
      },
      { page: true, params: idParams("The session's id, from the Sessions list in Settings.") },
    )
    .post(
      sessionPaths.revokeOthers,
      async ({ session, actor, request }) => {
        const n = await endOtherSessions(deps, session.accountId, session.id, actor);
        const notice = n === 0 ? "No other session was signed in." : `Signed out ${n} other session${n === 1 ? "" : "s"}. This browser stays signed in.`;
        return answer(request, session, { notice });
      },
      { page: true },
    );
};
