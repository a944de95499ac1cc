/** @jsxImportSource @kitajs/html */
import type { Enrolment, TwoFactorStatus } from "../../src/accounts/twofactor.ts";
import type { FieldError } from "../../src/errors.ts";
import { CsrfField, Field, Time, errorFor, paths } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";

/** The addresses of two-factor sign-in: the sign-in's second step and its enrolment, Settings, the operators'. */
export const twoFactorPaths = {
  /** The code after the password (a pending sign-in token, no session). */
  signIn: "/login/two-factor",
  /** The enrolment the operators require, after the password (a pending sign-in token, no session). */
  setup: "/login/two-factor/setup",
  setupStart: "/login/two-factor/setup/start",
  setupConfirm: "/login/two-factor/setup/confirm",
  /** Drops the pending sign-in: the way out of the steps above. */
  cancel: "/login/two-factor/cancel",
  settings: "/portal/settings/two-factor",
  start: "/portal/settings/two-factor/start",
  confirm: "/portal/settings/two-factor/confirm",
  recoveryCodes: "/portal/settings/two-factor/recovery-codes",
  disable: "/portal/settings/two-factor/disable",
  adminSecurity: "/admin/security",
  adminRequire: "/admin/security/two-factor",
  adminReset: (accountId: string) => `/admin/accounts/${encodeURIComponent(accountId)}/two-factor/reset`,
} as const;

/** For password managers: the account a password field belongs to. */
function Username(props: { email: string }) {
  return <input type="email" name="username" value={props.email} autocomplete="username" readonly hidden />;
}

function FormMessage(props: { message?: string }) {
  return props.message ? (
    <p class="form-error" role="alert" safe>
      {props.message}
    </p>
  ) : (
    ""
  );
}

const CODE_HINT = "The 6-digit code your authenticator app shows now, or one of your recovery codes.";

export interface SecondStepState {
  errors?: FieldError[];
  message?: string;
}

/**
 * The code after the password. Like the login form: with htmx it posts itself and is swapped
 * by the answer (the form again with the message beside the field, 422 or 429), or an
 * HX-Redirect; without JavaScript a plain POST answered by a page or a 303. No CSRF token (no
 * session yet): the same-origin check and the SameSite pending cookie guard it.
 */
export function SecondStepForm(props: SecondStepState) {
  return (
    <section id="two-factor-form" class="card narrow">
      <form method="post" action={twoFactorPaths.signIn} hx-post={twoFactorPaths.signIn} hx-target="#two-factor-form" hx-swap="outerHTML">
        <h1>Two-factor sign-in</h1>
        <FormMessage message={props.message} />
        <p>Your password was right. Now enter the code from your authenticator app.</p>
        <Field name="code" label="Code" required autocomplete="one-time-code" hint={CODE_HINT} error={errorFor(props.errors, "code")} />
        <button type="submit">Sign in</button>
      </form>
      <form method="post" action={twoFactorPaths.cancel}>
        <button type="submit" class="link">
          Cancel and sign in again
        </button>
      </form>
    </section>
  );
}

export function SecondStepPage(props: SecondStepState) {
  return (
    <Layout title="Two-factor sign-in">
      <SecondStepForm {...props} />
    </Layout>
  );
}

/**
 * The new secret, shown once: as a QR code (an inline SVG drawn on the server: no script, no
 * request, nothing the CSP forbids) and as text for typing in, with the form that confirms
 * it with a current code.
 */
export function EnrolmentPanel(props: { enrolment: Enrolment; action: string; csrf?: string; askPassword: boolean; email: string; errors?: FieldError[] }) {
  const safeQrSvg = props.enrolment.safeQrSvg;
  return (
    <section class="card secret" id="enrolment">
      <h2>Scan this code with your authenticator app</h2>
      <p>Any app for time-based codes works (for example a password manager or an authenticator app on your phone).</p>
      <div class="qr" role="img" aria-label="QR code of the secret for your authenticator app">
        {safeQrSvg}
      </div>
      <p>Can't scan it? Enter this secret in the app instead (time-based, 6 digits, 30 seconds):</p>
      <div class="secret-row">
        <code id="totp-secret" safe>
          {props.enrolment.secret}
        </code>
        <button type="button" class="copy" data-copy-target="totp-secret">
          Copy
        </button>
      </div>
      <form method="post" action={props.action}>
        {props.csrf ? <CsrfField token={props.csrf} /> : ""}
        <Field name="code" label="Code from the app" required autocomplete="one-time-code" hint="To check that the app has the secret: the 6 digits it shows now." error={errorFor(props.errors, "code")} />
        {props.askPassword ? <Username email={props.email} /> : ""}
        {props.askPassword ? <Field name="password" label="Current password" type="password" required autocomplete="current-password" error={errorFor(props.errors, "password")} /> : ""}
        <button type="submit">Turn on two-factor sign-in</button>
      </form>
    </section>
  );
}

/** The recovery codes, shown once: whoever has lost the device signs in with one of them, once each. */
export function RecoveryCodesPanel(props: { codes: string[] }) {
  return (
    <section class="card secret" role="status" aria-live="polite" id="recovery-codes-panel">
      <h2>Your recovery codes</h2>
      <p class="warn">Copy these codes now and keep them somewhere safe (a password manager, or printed). They will not be shown again: Keyport keeps only their hashes.</p>
      <p>Each code signs you in once in place of the app's code, if you lose the device. Making new codes stops these from working.</p>
      <pre id="recovery-codes" safe>
        {props.codes.join("\n")}
      </pre>
      <button type="button" class="copy" data-copy-target="recovery-codes">
        Copy the codes
      </button>
    </section>
  );
}

/** The Settings page's summary: whether it is on, and the way to its page. */
export function TwoFactorSection(props: { status: TwoFactorStatus }) {
  const s = props.status;
  return (
    <section class="card narrow" id="two-factor">
      <h2>Two-factor sign-in</h2>
      {s.enabled ? (
        <p>
          <strong>On</strong> since <Time iso={s.enabledAt} />: signing in takes a code from your authenticator app after the password.{" "}
          <span safe>{`${s.recoveryCodesLeft} of 10 recovery codes unused.`}</span>
        </p>
      ) : (
        <p>
          <strong>Off</strong>: signing in takes only your password. {s.required ? "The operators of this service require it: you will be asked to set it up." : "Add a code from an authenticator app to protect your keys."}
        </p>
      )}
      <p>
        <a href={twoFactorPaths.settings}>{s.enabled ? "Manage two-factor sign-in" : "Set up two-factor sign-in"}</a>
      </p>
    </section>
  );
}

export interface TwoFactorPageProps {
  session: PageSession;
  status: TwoFactorStatus;
  /** An enrolment started: its secret, shown in this answer only. */
  enrolment?: Enrolment;
  /** Recovery codes just made: shown in this answer only. */
  codes?: string[];
  /** Which form the errors belong to. */
  form?: "confirm" | "recovery" | "disable" | "start";
  errors?: FieldError[];
  message?: string;
  notice?: string;
}

/** Settings → Two-factor sign-in: set it up; or, when on, new recovery codes and turning it off. */
export function TwoFactorPage(props: TwoFactorPageProps) {
  const s = props.status;
  const csrf = props.session.csrfToken;
  const errorsOf = (form: TwoFactorPageProps["form"]) => (props.form === form ? props.errors : undefined);
  return (
    <Layout title="Two-factor sign-in" session={props.session} active="settings">
      <h1>Two-factor sign-in</h1>
      <p>
        <a href={paths.settings}>← Settings</a>
      </p>
      {props.notice ? (
        <p class="card notice" role="status" safe>
          {props.notice}
        </p>
      ) : (
        ""
      )}
      <FormMessage message={props.message} />
      {props.codes ? <RecoveryCodesPanel codes={props.codes} /> : ""}
      {s.enabled ? (
        <>
          <section class="card narrow">
            <p>
              <strong>On</strong> since <Time iso={s.enabledAt} />. <span safe>{`${s.recoveryCodesLeft} of 10 recovery codes unused.`}</span>
            </p>
          </section>
          <form method="post" action={twoFactorPaths.recoveryCodes} class="card narrow" id="regenerate">
            <h2>New recovery codes</h2>
            <p>Ten new codes; every earlier code stops working.</p>
            <CsrfField token={csrf} />
            <Username email={props.session.email} />
            <Field name="password" label="Current password" type="password" required autocomplete="current-password" error={errorFor(errorsOf("recovery"), "password")} />
            <button type="submit">Make new recovery codes</button>
          </form>
          {s.required ? (
            <p class="card note" role="note">
              The operators of this service require two-factor sign-in for every account: it cannot be turned off.
            </p>
          ) : (
            <form method="post" action={twoFactorPaths.disable} class="card narrow" id="disable">
              <h2>Turn off two-factor sign-in</h2>
              <CsrfField token={csrf} />
              <Username email={props.session.email} />
              <Field name="password" label="Current password" type="password" required autocomplete="current-password" error={errorFor(errorsOf("disable"), "password")} />
              <Field name="code" label="Code" required autocomplete="one-time-code" hint={CODE_HINT} error={errorFor(errorsOf("disable"), "code")} />
              <button type="submit" class="danger">
                Turn off
              </button>
            </form>
          )}
        </>
      ) : props.enrolment ? (
        <EnrolmentPanel enrolment={props.enrolment} action={twoFactorPaths.confirm} csrf={csrf} askPassword email={props.session.email} errors={errorsOf("confirm")} />
      ) : (
        <form method="post" action={twoFactorPaths.start} class="card narrow" id="start">
          <p>Signing in will take a code from an authenticator app after your password, so a stolen password alone opens nothing.</p>
          {s.required ? <p class="note">The operators of this service require it for every account.</p> : ""}
          <CsrfField token={csrf} />
          {errorFor(errorsOf("start"), "code") ? (
            <p class="form-error" role="alert" safe>
              {errorFor(errorsOf("start"), "code") ?? ""}
            </p>
          ) : (
            ""
          )}
          <button type="submit">Set up two-factor sign-in</button>
        </form>
      )}
    </Layout>
  );
}

export interface SetupPageProps {
  email: string;
  enrolment?: Enrolment;
  codes?: string[];
  /** Where the portal opens once set up. */
  next?: string;
  errors?: FieldError[];
  message?: string;
}

/**
 * The enrolment the operators require, between the password and the session: the only pages
 * such an account reaches until it is enrolled (and the way out). Once confirmed, the session
 * is open and the recovery codes are shown once, with the way on to the portal.
 */
export function SetupPage(props: SetupPageProps) {
  return (
    <Layout title="Set up two-factor sign-in">
      <section class="card narrow">
        <h1>Set up two-factor sign-in</h1>
        <FormMessage message={props.message} />
        {props.codes ? (
          <p class="ok" role="status" safe>
            {`Two-factor sign-in is on for ${props.email}, and you are signed in.`}
          </p>
        ) : (
          <p safe>{`The operators of this service require two-factor sign-in for every account. Set it up for ${props.email} to continue.`}</p>
        )}
      </section>
      {props.codes ? (
        <>
          <RecoveryCodesPanel codes={props.codes} />
          <p>
            <a href={props.next ?? paths.dashboard}>I have saved the codes: continue</a>
          </p>
        </>
      ) : props.enrolment ? (
        <EnrolmentPanel enrolment={props.enrolment} action={twoFactorPaths.setupConfirm} askPassword={false} email={props.email} errors={props.errors} />
      ) : (
        <form method="post" action={twoFactorPaths.setupStart} class="card narrow">
          <p>You need an authenticator app: a password manager or an app on your phone that makes time-based codes.</p>
          <button type="submit">Show the code to scan</button>
        </form>
      )}
      {props.codes ? (
        ""
      ) : (
        <form method="post" action={twoFactorPaths.cancel} class="card narrow">
          <button type="submit" class="link">
            Sign out
          </button>
        </form>
      )}
    </Layout>
  );
}
