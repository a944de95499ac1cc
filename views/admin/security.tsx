/** @jsxImportSource @kitajs/html */
import { twoFactorPaths } from "../accounts/twofactor.tsx";
import type { FieldError } from "../../src/errors.ts";
import { CsrfField, errorFor } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";
import { AdminNav } from "./nav.tsx";

export interface AdminSecurityPageProps {
  session: PageSession;
  /** Two-factor sign-in is required of every account. */
  required: boolean;
  /** Whether the operator looking has enrolled (required before turning the requirement on). */
  selfEnrolled: boolean;
  /** What the last save did. */
  done?: { required: boolean; sessionsEnded: number };
  errors?: FieldError[];
}

/** The instance's sign-in rules: whether every account must use two-factor sign-in. */
export function AdminSecurityPage(props: AdminSecurityPageProps) {
  const error = errorFor(props.errors, "required");
  return (
    <Layout title="Sign-in security" session={props.session} active="operator">
      <h1>Sign-in security</h1>
      <AdminNav active="security" />
      {props.done ? (
        <p class="card notice" role="status">
          {props.done.required
            ? `Two-factor sign-in is now required of every account. ${props.done.sessionsEnded} session(s) of accounts not enrolled were signed out: they enrol at their next sign-in.`
            : "Two-factor sign-in is no longer required: each account chooses."}
        </p>
      ) : (
        ""
      )}
      <form method="post" action={twoFactorPaths.adminRequire} class="card narrow" id="require-two-factor">
        <h2>Two-factor sign-in</h2>
        <p>
          Now: <strong>{props.required ? "required of every account" : "each account chooses"}</strong>.
        </p>
        <p>
          When required, an account without it is asked to set it up right after its password, and reaches nothing else of the portal (nor the management API by session) until it has;
          turning it on signs out the sessions of every account not enrolled yet. API keys keep working either way.
        </p>
        {!props.required && !props.selfEnrolled ? <p class="note">Turn on two-factor sign-in for your own account first (Settings): otherwise you would be signed out.</p> : ""}
        <CsrfField token={props.session.csrfToken} />
        <input type="hidden" name="required" value={props.required ? "false" : "true"} />
        {error ? (
          <p class="form-error" role="alert" safe>
            {error}
          </p>
        ) : (
          ""
        )}
        <button type="submit" class={props.required ? undefined : "danger"}>
          {props.required ? "Stop requiring two-factor sign-in" : "Require two-factor sign-in of every account"}
        </button>
      </form>
    </Layout>
  );
}
