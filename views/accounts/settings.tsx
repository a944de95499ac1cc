/** @jsxImportSource @kitajs/html */
import { MAIL_CATEGORIES, MAIL_CATEGORY_NAMES, type MailCategory } from "../../src/email/messages.ts";
import type { FieldError } from "../../src/errors.ts";
import { CsrfField, Field, errorFor, paths, Time } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";
import { SecretPanel } from "../keys/keys.tsx";
import { WebhookSection, type WebhookSectionProps } from "../notify/webhook.tsx";
import { PolicySection, type PolicySectionProps } from "../rotation/policy.tsx";
import { LeakPolicySection, type LeakPolicySectionProps } from "../leaks/policy.tsx";
import { TwoFactorSection } from "./twofactor.tsx";
import type { TwoFactorStatus } from "../../src/accounts/twofactor.ts";
import { SessionsSection, type SessionsSectionProps } from "./sessions.tsx";

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

/** The mail forms' own addresses, under the settings page (src/email/portal.tsx). */
export const mailPaths = {
  mail: `${paths.settings}/mail`,
  email: `${paths.settings}/email`,
};

/** The mail preferences: one box per category that can be turned off; security notices always on. */
export interface MailSectionProps {
  optOut: readonly MailCategory[];
  csrf: string;
  /** What the last save did. */
  notice?: string;
}

export function MailSection(props: MailSectionProps) {
  return (
    <section class="card" id="mail">
      <h2>Mail</h2>
      {props.notice ? (
        <p class="ok" role="status" safe>
          {props.notice}
        </p>
      ) : (
        ""
      )}
      <form method="post" action={mailPaths.mail}>
        <CsrfField token={props.csrf} />
        <fieldset class="field">
          <legend>Notices sent by mail</legend>
          {MAIL_CATEGORY_NAMES.map((c) => (
            <label class="check">
              <input type="checkbox" name="on" value={c} checked={!props.optOut.includes(c)} />
              <span>{MAIL_CATEGORIES[c]}</span>
            </label>
          ))}
          <label class="check">
            <input type="checkbox" checked disabled aria-describedby="f-security-hint" />
            <span>Security notices: a leaked key, a rotation started because of a leak, a changed password</span>
          </label>
          <small class="hint" id="f-security-hint">
            Security notices are always sent. Each other notice carries a one-click unsubscribe link for its kind; the notifications page lists every event either way.
          </small>
        </fieldset>
        <button type="submit">Save mail preferences</button>
      </form>
    </section>
  );
}

/** The account's address and the form to change it (confirmed by a link sent to the new one). */
export interface EmailSectionProps {
  current: string;
  verified: boolean;
  /** A change waiting for its link to be followed. */
  pending: { email: string; expiresAt: string } | null;
  csrf: string;
  errors?: FieldError[];
  /** What was submitted, when it was refused. */
  email?: string;
  /** The form as a whole was refused (throttled). */
  message?: string;
  /** Just requested: the link was mailed. */
  sent?: boolean;
}

export function EmailSection(props: EmailSectionProps) {
  return (
    <form method="post" action={mailPaths.email} class="card narrow" id="email">
      <h2>Change email</h2>
      <p>
        This account uses <strong safe>{props.current}</strong>{" "}
        {props.verified ? <span class="muted">(confirmed)</span> : <span class="muted">(not confirmed yet)</span>}.
      </p>
      {props.message ? (
        <p class="form-error" role="alert" safe>
          {props.message}
        </p>
      ) : (
        ""
      )}
      {props.pending ? (
        <p class={props.sent ? "ok" : undefined} role="status">
          {props.sent ? "Link sent. " : ""}Follow the link mailed to <strong safe>{props.pending.email}</strong> before <Time iso={props.pending.expiresAt} /> to use it
          instead; until then the account keeps its address. A newer request replaces the link.
        </p>
      ) : (
        ""
      )}
      <CsrfField token={props.csrf} />
      <Field name="email" label="New email" type="email" required autocomplete="email" value={props.email} error={errorFor(props.errors, "email")} />
      <Field name="password" label="Current password" type="password" required autocomplete="current-password" error={errorFor(props.errors, "password")} />
      <button type="submit">Send a confirmation link</button>
    </form>
  );
}

/** The settings page: each capability's section, and a webhook secret shown once. */
export interface SettingsProps {
  session: PageSession;
  policy: PolicySectionProps;
  leaks: LeakPolicySectionProps;
  webhook: WebhookSectionProps;
  mail: MailSectionProps;
  email: EmailSectionProps;
  password: PasswordSectionProps;
  twoFactor: TwoFactorStatus;
  sessions: SessionsSectionProps;
  newWebhookSecret?: string;
}

export function SettingsPage(props: SettingsProps) {
  return (
    <Layout title="Settings" session={props.session} active="settings">
      <h1>Settings</h1>
      {props.newWebhookSecret ? <SecretPanel secret={props.newWebhookSecret} title="Webhook signing secret" /> : ""}
      <PolicySection {...props.policy} />
      <LeakPolicySection {...props.leaks} />
      <WebhookSection {...props.webhook} />
      <MailSection {...props.mail} />
      <EmailSection {...props.email} />
      <PasswordSection {...props.password} />
      <TwoFactorSection status={props.twoFactor} />
      <SessionsSection {...props.sessions} />
    </Layout>
  );
}
