/** @jsxImportSource @kitajs/html */
import type { FieldError } from "../../src/errors.ts";
import type { DeliveryView } from "../../src/notify/model.ts";
import { CsrfField, Field, errorFor, formatDate, paths } from "../components.tsx";

/** The webhook endpoint and its deliveries on the settings page. */
export interface WebhookSectionProps {
  webhook: { url: string; allowPrivate: boolean } | null;
  deliveries: DeliveryView[];
  csrf: string;
  errors?: FieldError[];
  /** What was submitted, when it was refused. */
  url?: string;
}

export function WebhookSection(props: WebhookSectionProps) {
  const csrf = props.csrf;
  return (
    <section class="card">
      <h2>Webhook</h2>
      <form method="post" action={paths.webhook}>
        <CsrfField token={csrf} />
        <Field
          name="url"
          label="Endpoint URL (https)"
          type="url"
          value={props.url ?? props.webhook?.url}
          hint="Events are POSTed as JSON with a Keyport-Signature header (t=<unix>,v1=<HMAC-SHA256 hex>). Setting the URL makes a new signing secret."
          error={errorFor(props.errors, "url")}
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
                <td>{d.state}</td>
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
  );
}
