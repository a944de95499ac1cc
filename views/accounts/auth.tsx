/** @jsxImportSource @kitajs/html */
import type { FieldError } from "../../src/errors.ts";
import { Field, errorFor, paths } from "../components.tsx";
import { Layout } from "../layout.tsx";

export interface AuthFormState {
  email?: string;
  errors?: FieldError[];
  /** A message for the whole form (throttling, a bad CSRF token). */
  message?: string;
  /** Good news above the form (the password was just reset). */
  notice?: string;
  next?: string;
}

/** The pages of signing in without a session: the reset and the verification links. */
export const authPaths = {
  forgotPassword: "/forgot-password",
  resetPassword: "/reset-password",
  verifyEmail: "/verify-email",
  resendVerification: "/portal/verify-email/resend",
  /** Where a reset ends: the login page, saying the password changed. */
  loginAfterReset: "/login?reset=done",
} as const;

function FormMessage(props: { message?: string }) {
  return props.message ? (
    <p class="form-error" role="alert" safe>
      {props.message}
    </p>
  ) : (
    ""
  );
}

// Login and signup are not cookie-authenticated, so they carry no CSRF token: the server's
// same-origin check (Origin / Sec-Fetch-Site) guards them against login CSRF.

/**
 * The form alone. With htmx it posts itself and is swapped by the answer: the form again
 * with messages (422, or 429 when throttled; htmx 4 swaps error statuses), or an
 * HX-Redirect on success. Without JavaScript it is a plain POST answered by a page or a 303.
 */
export function LoginForm(props: AuthFormState) {
  return (
    <form id="login-form" method="post" action={paths.login} hx-post={paths.login} hx-target="this" hx-swap="outerHTML" class="card narrow">
      <h1>Log in</h1>
      {props.notice ? (
        <p class="ok" role="status" safe>
          {props.notice}
        </p>
      ) : (
        ""
      )}
      <FormMessage message={props.message} />
      {props.next ? <input type="hidden" name="next" value={props.next} /> : ""}
      <Field name="email" label="Email" type="email" value={props.email} required autocomplete="username" error={errorFor(props.errors, "email")} />
      <Field name="password" label="Password" type="password" required autocomplete="current-password" error={errorFor(props.errors, "password")} />
      <button type="submit">Log in</button>
      <p>
        <a href={authPaths.forgotPassword}>Forgot password?</a>
      </p>
      <p>
        No account yet? <a href={paths.signup}>Sign up</a>
      </p>
    </form>
  );
}

export function LoginPage(props: AuthFormState) {
  return (
    <Layout title="Log in">
      <LoginForm {...props} />
    </Layout>
  );
}

export function SignupForm(props: AuthFormState) {
  return (
    <form id="signup-form" method="post" action={paths.signup} hx-post={paths.signup} hx-target="this" hx-swap="outerHTML" class="card narrow">
      <h1>Create your account</h1>
      <FormMessage message={props.message} />
      <Field name="email" label="Email" type="email" value={props.email} required autocomplete="username" error={errorFor(props.errors, "email")} />
      <Field
        name="password"
        label="Password"
        type="password"
        required
        autocomplete="new-password"
        hint="At least 12 characters; common passwords are refused."
        error={errorFor(props.errors, "password")}
      />
      <button type="submit">Sign up</button>
      <p>
        Already have an account? <a href={paths.login}>Log in</a>
      </p>
    </form>
  );
}

export function SignupPage(props: AuthFormState) {
  return (
    <Layout title="Sign up">
      <SignupForm {...props} />
    </Layout>
  );
}

/**
 * The answer to every sign-up that passed the form's checks where a confirmed address is
 * required: a free address got its account and a confirmation link, a taken one a mail to
 * its owner. It names no address, so the two cannot be told apart. Swapped for the form
 * under htmx (same id), a page without.
 */
export function SignupRequested() {
  return (
    <section id="signup-form" class="card narrow" role="status">
      <h1>Check your mail</h1>
      <p>We sent a message to the address you gave. Follow its link to confirm the address, then log in with the password you chose.</p>
      <p>Nothing came? Look in the spam folder and check the address; the link works for 24 hours.</p>
      <p>
        <a href={paths.login}>Go to log in</a>
      </p>
    </section>
  );
}

export function SignupRequestedPage() {
  return (
    <Layout title="Check your mail">
      <SignupRequested />
    </Layout>
  );
}

/** "Forgot password?": the address to send a reset link to. */
export function ForgotPasswordForm(props: AuthFormState) {
  return (
    <form id="forgot-form" method="post" action={authPaths.forgotPassword} hx-post={authPaths.forgotPassword} hx-target="this" hx-swap="outerHTML" class="card narrow">
      <h1>Reset your password</h1>
      <p>Enter the address you signed up with. If it has an account, we mail it a link to choose a new password.</p>
      <FormMessage message={props.message} />
      <Field name="email" label="Email" type="email" value={props.email} required autocomplete="username" error={errorFor(props.errors, "email")} />
      <button type="submit">Send the link</button>
      <p>
        Remembered it? <a href={paths.login}>Log in</a>
      </p>
    </form>
  );
}

export function ForgotPasswordPage(props: AuthFormState) {
  return (
    <Layout title="Reset your password">
      <ForgotPasswordForm {...props} />
    </Layout>
  );
}

/**
 * The answer to every well-formed request, whether the address has an account or not: it
 * names no account, so it cannot tell anyone which addresses have one. Swapped for the
 * form under htmx (same id), a page without.
 */
export function ResetRequested() {
  return (
    <section id="forgot-form" class="card narrow" role="status">
      <h1>Check your mail</h1>
      <p>If an account uses that address, a link to choose a new password is on its way to it. The link works once, for 30 minutes.</p>
      <p>Nothing came? Look in the spam folder, check the address, and ask again in a few minutes.</p>
      <p>
        <a href={paths.login}>Back to log in</a>
      </p>
    </section>
  );
}

export function ResetRequestedPage() {
  return (
    <Layout title="Check your mail">
      <ResetRequested />
    </Layout>
  );
}

export interface ResetFormState {
  /** The link's token, carried in a hidden field (not the address bar) to the POST. */
  token: string;
  email: string;
  errors?: FieldError[];
  message?: string;
}

/** The new password, for the account the link was sent to. */
export function ResetPasswordForm(props: ResetFormState) {
  return (
    <form id="reset-form" method="post" action={authPaths.resetPassword} class="card narrow">
      <h1>Choose a new password</h1>
      <FormMessage message={props.message} />
      <p safe>{`For the account of ${props.email}. Setting it signs out every session of the account.`}</p>
      <input type="hidden" name="token" value={props.token} />
      {/* For password managers: the account the new password belongs to. */}
      <input type="hidden" name="email" value={props.email} autocomplete="username" />
      <Field
        name="password"
        label="New password"
        type="password"
        required
        autocomplete="new-password"
        hint="At least 12 characters; common passwords are refused."
        error={errorFor(props.errors, "password")}
      />
      <button type="submit">Set the password</button>
    </form>
  );
}

export function ResetPasswordPage(props: ResetFormState) {
  return (
    <Layout title="Choose a new password">
      <ResetPasswordForm {...props} />
    </Layout>
  );
}

/** A reset link that does not work (unknown, used, replaced, expired): what to do instead. */
export function ResetLinkPage() {
  return (
    <Layout title="This link does not work">
      <section class="card narrow">
        <h1>This link does not work</h1>
        <p>A password reset link works once, for 30 minutes, and a newer request replaces it. This one was used, has expired, or was replaced.</p>
        <p>
          <a href={authPaths.forgotPassword}>Ask for a new link</a>
        </p>
      </section>
    </Layout>
  );
}

/**
 * A verification link's page: a button, not the visit itself, confirms the address, so a
 * mail scanner that opens every link confirms nothing.
 */
export function VerifyEmailPage(props: { token: string; email: string; message?: string }) {
  return (
    <Layout title="Confirm your address">
      <form id="verify-form" method="post" action={authPaths.verifyEmail} class="card narrow">
        <h1>Confirm your address</h1>
        <FormMessage message={props.message} />
        <p safe>{`Confirm that ${props.email} is your address and belongs to your Keyport account.`}</p>
        <input type="hidden" name="token" value={props.token} />
        <button type="submit">Confirm this address</button>
      </form>
    </Layout>
  );
}

export function EmailVerifiedPage(props: { email: string }) {
  return (
    <Layout title="Address confirmed">
      <section class="card narrow" role="status">
        <h1>Address confirmed</h1>
        <p safe>{`${props.email} is confirmed. Your account can now create live keys.`}</p>
        <p>
          <a href={paths.keys}>Go to your keys</a>
        </p>
      </section>
    </Layout>
  );
}

/** A verification link that does not work: where a new one comes from. */
export function VerifyLinkPage() {
  return (
    <Layout title="This link does not work">
      <section class="card narrow">
        <h1>This link does not work</h1>
        <p>A confirmation link works once, for 24 hours, and a newer one replaces it. This one was used, has expired, or was replaced; if your address is already confirmed, there is nothing more to do.</p>
        <p>
          <a href={paths.keys}>Log in and send a new link from the Keys page</a>
        </p>
      </section>
    </Layout>
  );
}
