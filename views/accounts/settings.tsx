/** @jsxImportSource @kitajs/html */
import type { FieldError } from "../../src/errors.ts";
import { CsrfField, Field, errorFor, paths } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";
import { SecretPanel } from "../keys/keys.tsx";
import { WebhookSection, type WebhookSectionProps } from "../notify/webhook.tsx";
import { PolicySection, type PolicySectionProps } from "../rotation/policy.tsx";

/** The password form on the settings page. */
export interface PasswordSectionProps {
  csrf: string;
  errors?: FieldError[];
  saved?: boolean;
}

export function PasswordSection(props: PasswordSectionProps) {
  const csrf = props.csrf;
  return (
    <form method="post" action={paths.settings} class="card narrow">
      <h2>Change password</h2>
      {props.saved ? (
        <p class="ok" role="status">
          Password changed. Your other sessions have been signed out.
        </p>
      ) : (
        ""
      )}
      <CsrfField token={csrf} />
      <Field name="current" label="Current password" type="password" required autocomplete="current-password" error={errorFor(props.errors, "current")} />
      <Field name="next" label="New password" type="password" required autocomplete="new-password" hint="At least 12 characters." error={errorFor(props.errors, "next")} />
      <button type="submit">Change password</button>
    </form>
  );
}

/** The settings page: each capability's section, and a webhook secret shown once. */
export interface SettingsProps {
  session: PageSession;
  policy: PolicySectionProps;
  webhook: WebhookSectionProps;
  password: PasswordSectionProps;
  newWebhookSecret?: string;
}

export function SettingsPage(props: SettingsProps) {
  return (
    <Layout title="Settings" session={props.session} active="settings">
      <h1>Settings</h1>
      {props.newWebhookSecret ? <SecretPanel secret={props.newWebhookSecret} title="Webhook signing secret" /> : ""}
      <PolicySection {...props.policy} />
      <WebhookSection {...props.webhook} />
      <PasswordSection {...props.password} />
    </Layout>
  );
}
