/** @jsxImportSource @kitajs/html */
import type { FieldError } from "../../src/errors.ts";
import type { RotationPolicy } from "../../src/rotation/service.ts";
import { CsrfField, Field, errorFor, formatDate, paths } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";
import { SecretPanel } from "../keys/keys.tsx";

export interface Delivery {
  id: string;
  event: string;
  state: string;
  attempts: number;
  lastStatus: number | null;
  lastError: string | null;
  createdAt: string;
}

export interface SettingsProps {
  session: PageSession;
  policy: RotationPolicy;
  webhook: { url: string; allowPrivate: boolean } | null;
  deliveries: Delivery[];
  passwordErrors?: FieldError[];
  passwordSaved?: boolean;
  policyErrors?: FieldError[];
  policyValues?: Record<string, string>;
  policySaved?: boolean;
  webhookErrors?: FieldError[];
  webhookUrl?: string;
  newWebhookSecret?: string;
}

export function SettingsPage(props: SettingsProps) {
  const csrf = props.session.csrfToken;
  const pv = props.policyValues;
  return (
    <Layout title="Settings" session={props.session} active="settings">
      <h1>Settings</h1>
      {props.newWebhookSecret ? <SecretPanel secret={props.newWebhookSecret} title="Webhook signing secret" /> : ""}

      <form method="post" action={paths.policy} class="card narrow">
        <h2>Rotation policy</h2>
        {props.policySaved ? (
          <p class="ok" role="status">
            Policy saved.
          </p>
        ) : (
          ""
        )}
        <CsrfField token={csrf} />
        <Field name="maxKeyAgeDays" label="Maximum key age (days, 0 = off)" type="number" min={0} value={pv?.maxKeyAgeDays ?? props.policy.maxKeyAgeDays} error={errorFor(props.policyErrors, "maxKeyAgeDays")} />
        <Field name="defaultGraceHours" label="Default grace period (hours)" type="number" min={0} max={168} value={pv?.defaultGraceHours ?? props.policy.defaultGraceHours} error={errorFor(props.policyErrors, "defaultGraceHours")} />
        <Field
          name="emergencyGraceHours"
          label="Emergency grace period (hours, 0 = revoke at once)"
          type="number"
          min={0}
          max={168}
          value={pv?.emergencyGraceHours ?? props.policy.emergencyGraceHours}
          error={errorFor(props.policyErrors, "emergencyGraceHours")}
        />
        <button type="submit">Save policy</button>
      </form>

      <section class="card">
        <h2>Webhook</h2>
        <form method="post" action={paths.webhook}>
          <CsrfField token={csrf} />
          <Field
            name="url"
            label="Endpoint URL (https)"
            type="url"
            value={props.webhookUrl ?? props.webhook?.url}
            hint="Events are POSTed as JSON with a Keyport-Signature header (t=<unix>,v1=<HMAC-SHA256 hex>). Setting the URL makes a new signing secret."
            error={errorFor(props.webhookErrors, "url")}
          />
          <button type="submit">{props.webhook ? "Replace endpoint" : "Set endpoint"}</button>
        </form>
        <h3>Deliveries</h3>
        {props.deliveries.length ? (
          <table>
            <thead>
              <tr>
                <th scope="col">When</th>
                <th scope="col">Event</th>
                <th scope="col">State</th>
                <th scope="col">Attempts</th>
                <th scope="col">Last answer</th>
                <th scope="col"></th>
              </tr>
            </thead>
            <tbody>
              {props.deliveries.map((d) => (
                <tr>
                  <td safe>{formatDate(d.createdAt)}</td>
                  <td>
                    <code safe>{d.event}</code>
                  </td>
                  <td safe>{d.state}</td>
                  <td safe>{String(d.attempts)}</td>
                  <td safe>{d.lastError ?? (d.lastStatus === null ? "—" : String(d.lastStatus))}</td>
                  <td>
                    <form method="post" action={paths.resend(d.id)}>
                      <CsrfField token={csrf} />
                      <button type="submit" class="link">
                        Resend
                      </button>
                    </form>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p class="muted">No deliveries yet.</p>
        )}
      </section>

      <form method="post" action={paths.settings} class="card narrow">
        <h2>Change password</h2>
        {props.passwordSaved ? (
          <p class="ok" role="status">
            Password changed. Your other sessions have been signed out.
          </p>
        ) : (
          ""
        )}
        <CsrfField token={csrf} />
        <Field name="current" label="Current password" type="password" required autocomplete="current-password" error={errorFor(props.passwordErrors, "current")} />
        <Field name="next" label="New password" type="password" required autocomplete="new-password" hint="At least 12 characters." error={errorFor(props.passwordErrors, "next")} />
        <button type="submit">Change password</button>
      </form>
    </Layout>
  );
}
