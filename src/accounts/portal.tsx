/** @jsxImportSource @kitajs/html */
import { recordAudit } from "../audit/service.ts";
import { Elysia } from "elysia";
import { z } from "zod";
import { revokeSandboxKeys } from "../keys/service.ts";
import type { Deps } from "../deps.ts";
import { DomainError } from "../errors.ts";
import { clientIp } from "../gateway/chain.ts";
import { formFields, formText } from "../portal/form.ts";
import { clearedSessionCookie, isHttps, safeNext, sameOrigin, sessionCookie, sessionToken } from "../portal/http.ts";
import { authPlugin } from "../portal/plugin.ts";
import { htmlResponse, messagePage, redirectAfterPost, wantsFragment } from "../portal/respond.ts";
import { pageSession } from "../portal/page.ts";
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
import { SecondStepForm, SecondStepPage, SetupPage, TwoFactorPage, twoFactorPaths, type TwoFactorPageProps } from "../../views/accounts/twofactor.tsx";
import { paths } from "../../views/components.tsx";
import { changePassword, signUp } from "./login.ts";
import { requestPasswordReset, resetLink, resetPassword } from "./reset.ts";
import { resendVerification, verificationLink, verifyEmail } from "./verification.ts";
import { createSession, deleteSession, validateSession, type Session } from "./sessions.ts";
import { settingsModel } from "./settings.ts";
import {
  completeEnrolmentSignIn,
  completeSignIn,
  turnOnTwoFactor,
  disableTwoFactor,
  openPendingSignIn,
  pendingEnrolment,
  regenerateRecoveryCodes,
  sealPendingSignIn,
  signIn,
  startEnrolment,
  twoFactorRequired,
  twoFactorStatus,
  type PendingPurpose,
} from "./twofactor.ts";

const credentialsForm = z.object({ email: formText, password: formText, next: formText });
const passwordForm = z.object({ current: formText, next: formText });
const emailForm = z.object({ email: formText });
const resetForm = z.object({ token: formText, password: formText });
const tokenForm = z.object({ token: formText });
const codeForm = z.object({ code: formText });
const codePasswordForm = z.object({ code: formText, password: formText });

/**
 * The cookie that carries a sign-in between its password and its second step (a sealed
 * pending token, src/accounts/twofactor.ts): HttpOnly, SameSite=Lax, only as long as the
 * step may take, `__Host-` over https like the session's. It opens no session.
 */
const PENDING_COOKIE = "kp_2fa";
const SECURE_PENDING_COOKIE = "__Host-kp_2fa";

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

/** The step a pending sign-in is at: the code, or the enrolment the operators require. */
const STEP_PAGE: Record<PendingPurpose, string> = { code: twoFactorPaths.signIn, enrol: twoFactorPaths.setup };

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

  const secureCookie = (request: Request) => deps.config.cookieSecure === "true" || (deps.config.cookieSecure !== "false" && isHttps(request, deps.config));
  const pendingCookie = (request: Request, token: string, maxAge: number) =>
    new Bun.Cookie(secureCookie(request) ? SECURE_PENDING_COOKIE : PENDING_COOKIE, token, { path: "/", httpOnly: true, sameSite: "lax", secure: secureCookie(request), maxAge }).serialize();
  const clearedPendingCookie = (request: Request) => pendingCookie(request, "", 0);
  const pendingToken = (request: Request) => {
    const header = request.headers.get("cookie");
    if (!header) return undefined;
    const cookies = new Bun.CookieMap(header);
    return cookies.get(SECURE_PENDING_COOKIE) ?? cookies.get(PENDING_COOKIE) ?? undefined;
  };
  const pending = (request: Request, purpose: PendingPurpose) => openPendingSignIn(deps, pendingToken(request), purpose);
  /**
   * A step's route asked for without a pending sign-in for that step: on to the step the
   * browser's pending sign-in is at, or — none, or no longer valid — back to the login page,
   * the stale cookie dropped.
   */
  const toLogin = async (request: Request) => {
    const step = await pendingStep(request);
    if (step) return redirectAfterPost(request, STEP_PAGE[step]);
    return redirectAfterPost(request, paths.login, pendingToken(request) ? { "set-cookie": clearedPendingCookie(request) } : {});
  };
  /** A signed-in answer: the session cookie set, the pending one dropped. */
  const withSession = (res: Response, request: Request, token: string) => {
    res.headers.append("set-cookie", sessionCookie(token, request, deps.config));
    res.headers.append("set-cookie", clearedPendingCookie(request));
    return res;
  };
  /** A pending sign-in's second step: its token in the cookie, the browser sent to the step's page. */
  const toStep = (request: Request, account: Parameters<typeof sealPendingSignIn>[1], purpose: PendingPurpose, next: string) => {
    const { token, maxAgeSeconds } = sealPendingSignIn(deps, account, purpose, next);
    return redirectAfterPost(request, STEP_PAGE[purpose], { "set-cookie": pendingCookie(request, token, maxAgeSeconds) });
  };
  /** Which step a browser's pending sign-in is at, if it holds a valid one. */
  const pendingStep = async (request: Request): Promise<PendingPurpose | null> => {
    if (!pendingToken(request)) return null;
    if (await pending(request, "code")) return "code";
    return (await pending(request, "enrol")) ? "enrol" : null;
  };

  /** The Settings → Two-factor page, with a form's outcome. */
  const twoFactorPage = async (session: Session, extra: Omit<TwoFactorPageProps, "session" | "status"> = {}, status = 200) =>
    htmlResponse(TwoFactorPage({ session: await pageSession(deps, session), status: await twoFactorStatus(deps, session.accountId), ...extra }), status, { "hx-push-url": twoFactorPaths.settings });
  const refusedTwoFactor = async (session: Session, err: unknown, form: TwoFactorPageProps["form"], extra: Omit<TwoFactorPageProps, "session" | "status"> = {}) => {
    if (!(err instanceof DomainError)) throw err;
    const throttled = err.code === "too_many_attempts";
    return twoFactorPage(session, { form, errors: err.errors, message: err.errors?.length ? undefined : err.detail, ...extra }, throttled ? 429 : 422);
  };

  return new Elysia({ name: "accounts-portal" })
    .use(authPlugin(deps))
    .get("/login", async ({ request, query }) => {
      if (await signedIn(request)) return toDashboard();
      // Between the password and the second step (a portal page sent the browser here): on to that step.
      const step = await pendingStep(request);
      if (step) return new Response(null, { status: 303, headers: { location: STEP_PAGE[step] } });
      return htmlResponse(LoginPage({ next: safeNext(query.next), notice: query.reset === "done" ? RESET_DONE : undefined }));
    })
    .post("/login", async ({ request, body, server }) => {
      const form = credentialsForm.parse(formFields(body));
      const next = safeNext(form.next);
      const render = (status: number, state: AuthFormState, headers: Record<string, string> = {}) =>
        htmlResponse(wantsFragment(request) ? LoginForm({ email: form.email, next, ...state }) : LoginPage({ email: form.email, next, ...state }), status, headers);
      if (!sameOrigin(request)) return render(403, { message: NOT_FROM_HERE });
      try {
        const { account, step } = await signIn(deps, { email: form.email, password: form.password }, meta(request, server));
        // Two-factor sign-in: no session until the second step passes.
        if (step) return toStep(request, account, step, next);
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
        // The operators require two-factor sign-in: the new account enrols before it gets a session.
        if (await twoFactorRequired(deps)) return toStep(request, outcome.signedIn, "enrol", paths.dashboard);
        const { token } = await createSession(deps, outcome.signedIn.id, meta(request, server));
        return redirectAfterPost(request, paths.dashboard, { "set-cookie": sessionCookie(token, request, deps.config) });
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        if (err.code === "too_many_attempts") return render(429, { message: err.detail }, retryAfter(err));
        return render(422, { errors: err.errors, message: err.errors?.length ? undefined : err.detail });
      }
    })
    .get(twoFactorPaths.signIn, async ({ request }) => ((await pending(request, "code")) ? htmlResponse(SecondStepPage({}), 200, { "cache-control": "no-store" }) : toLogin(request)))
    .post(twoFactorPaths.signIn, async ({ request, body, server }) => {
      const form = codeForm.parse(formFields(body));
      const render = (status: number, state: Parameters<typeof SecondStepForm>[0], headers: Record<string, string> = {}) =>
        htmlResponse(wantsFragment(request) ? SecondStepForm(state) : SecondStepPage(state), status, { "cache-control": "no-store", "hx-push-url": twoFactorPaths.signIn, ...headers });
      if (!sameOrigin(request)) return render(403, { message: NOT_FROM_HERE });
      const held = await pending(request, "code");
      if (!held) return toLogin(request);
      try {
        await completeSignIn(deps, held.account.id, form.code, meta(request, server));
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        return render(err.code === "too_many_attempts" ? 429 : 422, { errors: err.errors }, retryAfter(err));
      }
      const { token } = await createSession(deps, held.account.id, meta(request, server));
      return withSession(redirectAfterPost(request, safeNext(held.next)), request, token);
    })
    .get(twoFactorPaths.setup, async ({ request }) => {
      const held = await pending(request, "enrol");
      return held ? htmlResponse(SetupPage({ email: held.account.email }), 200, { "cache-control": "no-store" }) : toLogin(request);
    })
    .post(twoFactorPaths.setupStart, async ({ request }) => {
      const held = await pending(request, "enrol");
      if (!held) return toLogin(request);
      const headers = { "cache-control": "no-store", "hx-push-url": twoFactorPaths.setup };
      if (!sameOrigin(request)) return htmlResponse(SetupPage({ email: held.account.email, message: NOT_FROM_HERE }), 403, headers);
      return htmlResponse(SetupPage({ email: held.account.email, enrolment: await startEnrolment(deps, held.account.id) }), 200, headers);
    })
    .post(twoFactorPaths.setupConfirm, async ({ request, body, server }) => {
      const form = codeForm.parse(formFields(body));
      const held = await pending(request, "enrol");
      if (!held) return toLogin(request);
      const headers = { "cache-control": "no-store", "hx-push-url": twoFactorPaths.setup };
      if (!sameOrigin(request)) return htmlResponse(SetupPage({ email: held.account.email, message: NOT_FROM_HERE }), 403, headers);
      let codes: string[];
      try {
        codes = await completeEnrolmentSignIn(deps, held.account.id, form.code, meta(request, server));
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        const enrolment = (await pendingEnrolment(deps, held.account.id)) ?? undefined;
        return htmlResponse(SetupPage({ email: held.account.email, enrolment, errors: err.errors, message: err.errors?.length ? undefined : err.detail }), 422, headers);
      }
      const { token } = await createSession(deps, held.account.id, meta(request, server));
      // The recovery codes, once, in this answer; the session is open from it on.
      return withSession(htmlResponse(SetupPage({ email: held.account.email, codes, next: safeNext(held.next) }), 200, headers), request, token);
    })
    .post(twoFactorPaths.cancel, ({ request }) =>
      sameOrigin(request) ? redirectAfterPost(request, paths.login, { "set-cookie": clearedPendingCookie(request) }) : messagePage(403, "Request refused", NOT_FROM_HERE),
    )
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
      await recordAudit(deps.db, actor, { accountId: session.accountId, action: "account.logout", changes: { session: session.id } }, new Date(deps.clock.now()));
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
    }, { page: true })
    // Settings → Two-factor sign-in. A secret or codes appear only in the answer to the POST
    // that made them (no-store, like every signed-in page); a reload shows neither.
    .get(twoFactorPaths.settings, ({ session }) => twoFactorPage(session), { page: true })
    .post(twoFactorPaths.start, async ({ session }) => {
      try {
        return await twoFactorPage(session, { enrolment: await startEnrolment(deps, session.accountId) });
      } catch (err) {
        return refusedTwoFactor(session, err, "start");
      }
    }, { page: true })
    .post(twoFactorPaths.confirm, async ({ session, actor, body, request }) => {
      const form = codePasswordForm.parse(formFields(body));
      try {
        const { codes, renewed } = await turnOnTwoFactor(deps, session.accountId, { code: form.code, password: form.password }, actor);
        // Every session ended, this one too (as after a password change): their sandbox keys
        // go with them, and this browser carries on in the new session, whose CSRF token the page has.
        await revokeSandboxKeys(deps, { accountId: session.accountId, exceptSessionId: "" }, actor);
        const page = await twoFactorPage(renewed.session, {
          codes,
          notice: "Two-factor sign-in is on: the next sign-in will ask for a code from your app. Every other browser signed in to this account was signed out.",
        });
        page.headers.append("set-cookie", sessionCookie(renewed.token, request, deps.config));
        return page;
      } catch (err) {
        // The same enrolment again beside the messages: the secret is not in use yet.
        const enrolment = (await pendingEnrolment(deps, session.accountId)) ?? undefined;
        return refusedTwoFactor(session, err, "confirm", { enrolment });
      }
    }, { page: true })
    .post(twoFactorPaths.recoveryCodes, async ({ session, actor, body }) => {
      try {
        const codes = await regenerateRecoveryCodes(deps, session.accountId, { password: formText.parse(formFields(body).password) }, actor);
        return await twoFactorPage(session, { codes, notice: "New recovery codes made: the earlier ones no longer work." });
      } catch (err) {
        return refusedTwoFactor(session, err, "recovery");
      }
    }, { page: true })
    .post(twoFactorPaths.disable, async ({ session, actor, body }) => {
      const form = codePasswordForm.parse(formFields(body));
      try {
        await disableTwoFactor(deps, session.accountId, { password: form.password, code: form.code }, actor);
        return await twoFactorPage(session, { notice: "Two-factor sign-in is off: signing in takes only your password." });
      } catch (err) {
        return refusedTwoFactor(session, err, "disable");
      }
    }, { page: true });
};
