/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import { z } from "zod";
import { revokeSandboxKeys } from "../keys/service.ts";
import type { Deps } from "../deps.ts";
import { DomainError } from "../errors.ts";
import { clientIp } from "../gateway/chain.ts";
import { formFields, formText } from "../portal/form.ts";
import { clearedSessionCookie, safeNext, sameOrigin, sessionCookie, sessionToken } from "../portal/http.ts";
import { authPlugin } from "../portal/plugin.ts";
import { htmlResponse, redirectAfterPost, wantsFragment } from "../portal/respond.ts";
import { LoginForm, LoginPage, SignupForm, SignupPage, type AuthFormState } from "../../views/accounts/auth.tsx";
import { SettingsPage } from "../../views/accounts/settings.tsx";
import { paths } from "../../views/components.tsx";
import { changePassword, logIn, signUp } from "./login.ts";
import { createSession, deleteOtherSessions, deleteSession, validateSession } from "./sessions.ts";
import { settingsModel } from "./settings.ts";

const credentialsForm = z.object({ email: formText, password: formText, next: formText });
const passwordForm = z.object({ current: formText, next: formText });

const NOT_FROM_HERE = "This form was not sent from this site. Reload the page and try again.";

/** Already signed in: the dashboard instead of the login or signup page. */
const toDashboard = () => new Response(null, { status: 303, headers: { location: paths.dashboard } });

/**
 * Sign-up, log-in, log-out and the password form. Login and signup carry no session, so no
 * CSRF token: the same-origin check guards them against login CSRF.
 */
export const accountsPortal = (deps: Deps) => {
  const meta = (request: Request, server: { requestIP(r: Request): { address: string } | null } | null) => ({
    ip: clientIp(request.headers, server?.requestIP(request)?.address, deps.config.trustProxy) ?? null,
    userAgent: request.headers.get("user-agent"),
  });
  const signedIn = async (request: Request) => Boolean(await validateSession(deps, sessionToken(request)));

  return new Elysia({ name: "accounts-portal" })
    .use(authPlugin(deps))
    .get("/login", async ({ request, query }) => ((await signedIn(request)) ? toDashboard() : htmlResponse(LoginPage({ next: safeNext(query.next) }))))
    .post("/login", async ({ request, body, server }) => {
      const form = credentialsForm.parse(formFields(body));
      const next = safeNext(form.next);
      const render = (status: number, state: AuthFormState) => htmlResponse(wantsFragment(request) ? LoginForm({ email: form.email, next, ...state }) : LoginPage({ email: form.email, next, ...state }), status);
      if (!sameOrigin(request)) return render(403, { message: NOT_FROM_HERE });
      try {
        const account = await logIn(deps, { email: form.email, password: form.password }, meta(request, server));
        const { token } = await createSession(deps, account.id, meta(request, server));
        return redirectAfterPost(request, next, { "set-cookie": sessionCookie(token, request, deps.config) });
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        return render(err.code === "too_many_attempts" ? 429 : 422, { message: err.detail });
      }
    })
    .get("/signup", async ({ request }) => ((await signedIn(request)) ? toDashboard() : htmlResponse(SignupPage({}))))
    .post("/signup", async ({ request, body, server }) => {
      const form = credentialsForm.parse(formFields(body));
      const render = (status: number, state: AuthFormState) => htmlResponse(wantsFragment(request) ? SignupForm({ email: form.email, ...state }) : SignupPage({ email: form.email, ...state }), status);
      if (!sameOrigin(request)) return render(403, { message: NOT_FROM_HERE });
      try {
        const account = await signUp(deps, { email: form.email, password: form.password }, meta(request, server));
        const { token } = await createSession(deps, account.id, meta(request, server));
        return redirectAfterPost(request, paths.dashboard, { "set-cookie": sessionCookie(token, request, deps.config) });
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        return render(422, { errors: err.errors, message: err.errors?.length ? undefined : err.detail });
      }
    })
    .post("/logout", async ({ session, actor, request }) => {
      // The reference's try-it key ends with the session.
      await revokeSandboxKeys(deps, { sessionId: session.id }, actor);
      await deleteSession(deps, session.id);
      return redirectAfterPost(request, paths.login, { "set-cookie": clearedSessionCookie(request, deps.config) });
    }, { page: true })
    .get("/portal/settings", async ({ session }) => htmlResponse(SettingsPage(await settingsModel(deps, session))), { page: true })
    .post("/portal/settings", async ({ session, actor, body }) => {
      const form = passwordForm.parse(formFields(body));
      try {
        await changePassword(deps, { id: session.accountId, email: session.email }, form, actor);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        return htmlResponse(SettingsPage(await settingsModel(deps, session, { password: { errors: err.errors } })), 422, { "hx-push-url": paths.settings });
      }
      await deleteOtherSessions(deps, session.accountId, session.id);
      await revokeSandboxKeys(deps, { accountId: session.accountId, exceptSessionId: session.id }, actor);
      return htmlResponse(SettingsPage(await settingsModel(deps, session, { password: { saved: true } })), 200, { "hx-push-url": paths.settings });
    }, { page: true });
};
