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
import { htmlResponse, messagePage, redirectAfterPost, wantsFragment } from "../portal/respond.ts";
import {
  EmailVerifiedPage,
  ForgotPasswordForm,
  ForgotPasswordPage,
  LoginForm,
  LoginPage,
  ResetLinkPage,
  ResetPasswordPage,
  ResetRequested,
  ResetRequestedPage,
  SignupForm,
  SignupPage,
  SignupRequested,
  SignupRequestedPage,
  VerifyEmailPage,
  VerifyLinkPage,
  authPaths,
  type AuthFormState,
} from "../../views/accounts/auth.tsx";
import { SettingsPage } from "../../views/accounts/settings.tsx";
import { paths } from "../../views/components.tsx";
import { changePassword, logIn, signUp } from "./login.ts";
import { requestPasswordReset, resetLink, resetPassword } from "./reset.ts";
import { resendVerification, verificationLink, verifyEmail } from "./verification.ts";
import { createSession, deleteSession, validateSession } from "./sessions.ts";
import { settingsModel } from "./settings.ts";

const credentialsForm = z.object({ email: formText, password: formText, next: formText });
const passwordForm = z.object({ current: formText, next: formText });
const emailForm = z.object({ email: formText });
const resetForm = z.object({ token: formText, password: formText });
const tokenForm = z.object({ token: formText });

/**
 * Pages that carry a link's token (in the address, or a hidden field): no Referer leaves
 * them, not even to our own static files, nothing keeps a copy (RFC 9111 no-store), and
 * htmx records no new history entry for them (the address bar keeps the link's own URL).
 */
const LINK_PAGE_HEADERS = { "referrer-policy": "no-referrer", "cache-control": "no-store", "hx-push-url": "false" };

const RESET_DONE = "Your password was changed and every session signed out. Log in with the new password.";

const NOT_FROM_HERE = "This form was not sent from this site. Reload the page and try again.";

/** A throttle's refusal says when to try again (RFC 6585 §4). */
const retryAfter = (err: DomainError): Record<string, string> => (err.retryAfterSeconds ? { "retry-after": String(err.retryAfterSeconds) } : {});

/** Already signed in: the dashboard instead of the login or signup page. */
const toDashboard = () => new Response(null, { status: 303, headers: { location: paths.dashboard } });

/**
 * Sign-up, log-in, log-out, the password form, and the mail links: "forgot password" with
 * its reset link, and the address verification with its resend. The forms without a session
 * (login, signup, forgot, reset, verify) carry no CSRF token: the same-origin check guards
 * them against cross-site posts.
 */
export const accountsPortal = (deps: Deps) => {
  const meta = (request: Request, server: { requestIP(r: Request): { address: string } | null } | null) => ({
    ip: clientIp(request.headers, server?.requestIP(request)?.address, deps.config.trustProxy) ?? null,
    userAgent: request.headers.get("user-agent"),
  });
  const signedIn = async (request: Request) => Boolean(await validateSession(deps, sessionToken(request)));

  return new Elysia({ name: "accounts-portal" })
    .use(authPlugin(deps))
    .get("/login", async ({ request, query }) =>
      (await signedIn(request)) ? toDashboard() : htmlResponse(LoginPage({ next: safeNext(query.next), notice: query.reset === "done" ? RESET_DONE : undefined })),
    )
    .post("/login", async ({ request, body, server }) => {
      const form = credentialsForm.parse(formFields(body));
      const next = safeNext(form.next);
      const render = (status: number, state: AuthFormState, headers: Record<string, string> = {}) =>
        htmlResponse(wantsFragment(request) ? LoginForm({ email: form.email, next, ...state }) : LoginPage({ email: form.email, next, ...state }), status, headers);
      if (!sameOrigin(request)) return render(403, { message: NOT_FROM_HERE });
      try {
        const account = await logIn(deps, { email: form.email, password: form.password }, meta(request, server));
        const { token } = await createSession(deps, account.id, meta(request, server));
        return redirectAfterPost(request, next, { "set-cookie": sessionCookie(token, request, deps.config) });
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        if (err.code === "too_many_attempts") return render(429, { message: err.detail }, retryAfter(err));
        return render(422, { message: err.detail });
      }
    })
    .get("/signup", async ({ request }) => ((await signedIn(request)) ? toDashboard() : htmlResponse(SignupPage({}))))
    .post("/signup", async ({ request, body, server }) => {
      const form = credentialsForm.parse(formFields(body));
      const render = (status: number, state: AuthFormState, headers: Record<string, string> = {}) =>
        htmlResponse(wantsFragment(request) ? SignupForm({ email: form.email, ...state }) : SignupPage({ email: form.email, ...state }), status, headers);
      if (!sameOrigin(request)) return render(403, { message: NOT_FROM_HERE });
      try {
        const outcome = await signUp(deps, { email: form.email, password: form.password }, meta(request, server));
        // A confirmed address is required: the same answer for a free address and a taken one, and no session.
        if (!("signedIn" in outcome)) return htmlResponse(wantsFragment(request) ? SignupRequested() : SignupRequestedPage(), 200, { "hx-push-url": paths.signup });
        const { token } = await createSession(deps, outcome.signedIn.id, meta(request, server));
        return redirectAfterPost(request, paths.dashboard, { "set-cookie": sessionCookie(token, request, deps.config) });
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        if (err.code === "too_many_attempts") return render(429, { message: err.detail }, retryAfter(err));
        return render(422, { errors: err.errors, message: err.errors?.length ? undefined : err.detail });
      }
    })
    .get(authPaths.forgotPassword, () => htmlResponse(ForgotPasswordPage({})))
    .post(authPaths.forgotPassword, async ({ request, body, server }) => {
      const form = emailForm.parse(formFields(body));
      const render = (status: number, state: AuthFormState) => htmlResponse(wantsFragment(request) ? ForgotPasswordForm({ email: form.email, ...state }) : ForgotPasswordPage({ email: form.email, ...state }), status);
      if (!sameOrigin(request)) return render(403, { message: NOT_FROM_HERE });
      try {
        // Resolves before the account is looked up: the answer below is the same, at the same time, for every address.
        await requestPasswordReset(deps, { email: form.email }, meta(request, server));
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        if (err.code === "too_many_attempts") return render(429, { message: err.detail });
        return render(422, { errors: err.errors, message: err.errors?.length ? undefined : err.detail });
      }
      return htmlResponse(wantsFragment(request) ? ResetRequested() : ResetRequestedPage(), 200, { "hx-push-url": authPaths.forgotPassword });
    })
    .get(authPaths.resetPassword, async ({ query }) => {
      const link = await resetLink(deps, query.token);
      if (!link) return htmlResponse(ResetLinkPage(), 400, LINK_PAGE_HEADERS);
      return htmlResponse(ResetPasswordPage({ token: String(query.token), email: link.email }), 200, LINK_PAGE_HEADERS);
    })
    .post(authPaths.resetPassword, async ({ request, body, server }) => {
      const form = resetForm.parse(formFields(body));
      const formAgain = async (status: number, state: { errors?: AuthFormState["errors"]; message?: string }) => {
        const link = await resetLink(deps, form.token);
        if (!link) return htmlResponse(ResetLinkPage(), 400, LINK_PAGE_HEADERS);
        return htmlResponse(ResetPasswordPage({ token: form.token, email: link.email, ...state }), status, LINK_PAGE_HEADERS);
      };
      if (!sameOrigin(request)) return formAgain(403, { message: NOT_FROM_HERE });
      try {
        const outcome = await resetPassword(deps, { token: form.token, password: form.password }, meta(request, server));
        if (outcome === "bad_link") return htmlResponse(ResetLinkPage(), 400, LINK_PAGE_HEADERS);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        return formAgain(422, { errors: err.errors, message: err.errors?.length ? undefined : err.detail });
      }
      // Every session of the account ended, this browser's too if it had one: its cookie goes.
      return redirectAfterPost(request, authPaths.loginAfterReset, { "set-cookie": clearedSessionCookie(request, deps.config) });
    })
    .get(authPaths.verifyEmail, async ({ query }) => {
      const link = await verificationLink(deps, query.token);
      if (!link) return htmlResponse(VerifyLinkPage(), 400, LINK_PAGE_HEADERS);
      return htmlResponse(VerifyEmailPage({ token: String(query.token), email: link.email }), 200, LINK_PAGE_HEADERS);
    })
    .post(authPaths.verifyEmail, async ({ request, body, server }) => {
      const form = tokenForm.parse(formFields(body));
      if (!sameOrigin(request)) {
        const link = await verificationLink(deps, form.token);
        if (!link) return htmlResponse(VerifyLinkPage(), 400, LINK_PAGE_HEADERS);
        return htmlResponse(VerifyEmailPage({ token: form.token, email: link.email, message: NOT_FROM_HERE }), 403, LINK_PAGE_HEADERS);
      }
      const verified = await verifyEmail(deps, form.token, meta(request, server));
      if (!verified) return htmlResponse(VerifyLinkPage(), 400, LINK_PAGE_HEADERS);
      return htmlResponse(EmailVerifiedPage({ email: verified.email }), 200, LINK_PAGE_HEADERS);
    })
    .post(authPaths.resendVerification, async ({ session, actor, request }) => {
      try {
        const outcome = await resendVerification(deps, session.accountId, actor);
        return redirectAfterPost(request, outcome === "sent" ? `${paths.keys}?verification=sent` : paths.keys);
      } catch (err) {
        if (!(err instanceof DomainError) || err.code !== "too_many_attempts") throw err;
        return messagePage(429, "No new link sent", err.detail, session);
      }
    }, { page: true })
    .post("/logout", async ({ session, actor, request }) => {
      // The reference's try-it key ends with the session.
      await revokeSandboxKeys(deps, { sessionId: session.id }, actor);
      await deleteSession(deps, session.id);
      return redirectAfterPost(request, paths.login, { "set-cookie": clearedSessionCookie(request, deps.config) });
    }, { page: true })
    .get("/portal/settings", async ({ session }) => htmlResponse(SettingsPage(await settingsModel(deps, session))), { page: true })
    .post("/portal/settings", async ({ session, actor, body, request }) => {
      const form = passwordForm.parse(formFields(body));
      let renewed: Awaited<ReturnType<typeof changePassword>>;
      try {
        renewed = await changePassword(deps, session.accountId, form, actor);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        const status = err.code === "too_many_attempts" ? 429 : 422;
        const headers = { "hx-push-url": paths.settings, ...retryAfter(err) };
        return htmlResponse(SettingsPage(await settingsModel(deps, session, { password: { errors: err.errors } })), status, headers);
      }
      // Every session ended, this one too: each sandbox key goes with them (no session has the
      // empty id), and this browser carries on in the new session, whose CSRF token the page has.
      await revokeSandboxKeys(deps, { accountId: session.accountId, exceptSessionId: "" }, actor);
      return htmlResponse(SettingsPage(await settingsModel(deps, renewed.session, { password: { saved: true } })), 200, {
        "hx-push-url": paths.settings,
        "set-cookie": sessionCookie(renewed.token, request, deps.config),
      });
    }, { page: true });
};
