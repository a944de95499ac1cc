/** @jsxImportSource @kitajs/html */
import type { FieldError } from "../../src/errors.ts";
import { Field, errorFor, paths } from "../components.tsx";
import { Layout } from "../layout.tsx";

export interface AuthFormState {
  email?: string;
  errors?: FieldError[];
  /** A message for the whole form (throttling, a bad CSRF token). */
  message?: string;
  next?: string;
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
      {props.message ? (
        <p class="form-error" role="alert" safe>
          {props.message}
        </p>
      ) : (
        ""
      )}
      {props.next ? <input type="hidden" name="next" value={props.next} /> : ""}
      <Field name="email" label="Email" type="email" value={props.email} required autocomplete="username" error={errorFor(props.errors, "email")} />
      <Field name="password" label="Password" type="password" required autocomplete="current-password" error={errorFor(props.errors, "password")} />
      <button type="submit">Log in</button>
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
      {props.message ? (
        <p class="form-error" role="alert" safe>
          {props.message}
        </p>
      ) : (
        ""
      )}
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
