import type { FieldError } from "../src/plugins/problem.ts";
import { CsrfField, Field, errorFor, paths } from "./components.tsx";
import { Layout, type PageSession } from "./layout.tsx";

export function SettingsPage(props: { session: PageSession; errors?: FieldError[]; saved?: boolean }) {
  return (
    <Layout title="Settings" session={props.session} active="settings">
      <h1>Settings</h1>
      <form method="post" action={paths.settings} class="card narrow">
        <h2>Change password</h2>
        {props.saved ? (
          <p class="ok" role="status">
            Password changed. Your other sessions have been signed out.
          </p>
        ) : (
          ""
        )}
        <CsrfField token={props.session.csrfToken} />
        <Field name="current" label="Current password" type="password" required autocomplete="current-password" error={errorFor(props.errors, "current")} />
        <Field name="next" label="New password" type="password" required autocomplete="new-password" hint="At least 12 characters." error={errorFor(props.errors, "next")} />
        <button type="submit">Change password</button>
      </form>
    </Layout>
  );
}
