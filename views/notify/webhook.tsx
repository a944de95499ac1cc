/** @jsxImportSource @kitajs/html */
import type { FieldError } from "../../src/errors.ts";
import type { DeliveryView, WebhookSettings } from "../../src/notify/model.ts";
import { NOTIFICATION_EVENTS, type NotificationEvent } from "../../src/notify/notify.sql.ts";
import { CsrfField, Field, errorFor, paths, Time } from "../components.tsx";

/** The webhook's own forms, under the section's path. */
export const webhookPaths = {
  test: `${paths.webhook}/test`,
  rotateSecret: `${paths.webhook}/rotate-secret`,
  remove: `${paths.webhook}/delete`,
};

const SIGNATURE_HEADER: string = "Keyport-Signature: t=<unix>,v1=<HMAC-SHA256 hex>";

/** When each event is sent, beside its checkbox. */
const SENT_WHEN: Record<NotificationEvent, string> = {
  "key.created": "a key is created",
  "key.revoked": "a key is revoked",
  "key.rotation_scheduled": "a rotation is scheduled",
  "key.rotation_started": "a rotation starts (its new key is made)",
  "key.expiring": "a key stops within 24 hours",
  "key.rotation_completed": "a rotation's grace period ends",
  "key.leaked": "a key is found in public code",
  "usage.quota_warning": "a key has used 80 % of its monthly quota",
  "plan.usage_80": "the account has used 80 % of its plan's included calls this month",
  "plan.usage_100": "the account has used all its plan's included calls this month",
  "invoice.finalized": "a month's invoice is finalized",
};

/** The webhook endpoint and its deliveries on the settings page. */
export interface WebhookSectionProps {
  webhook: WebhookSettings;
  deliveries: DeliveryView[];
  csrf: string;
  errors?: FieldError[];
  /** What was submitted, when it was refused. */
  url?: string;
  events?: string[];
  allowPrivate?: boolean;
  /** What the last action did ("Endpoint saved."). */
  notice?: string;
}

export function WebhookSection(props: WebhookSectionProps) {
  const csrf = props.csrf;
  const endpoint = props.webhook.endpoint;
  const operator = props.webhook.mayAllowPrivate;
  const chosen: readonly string[] = props.events ?? endpoint?.events ?? NOTIFICATION_EVENTS;
  const eventsError = errorFor(props.errors, "events");
  return (
    <section class="card">
      <h2>Webhook</h2>
      {props.notice ? (
        <p class="ok" role="status" safe>
          {props.notice}
        </p>
      ) : (
        ""
      )}
      <form method="post" action={paths.webhook}>
        <CsrfField token={csrf} />
        <Field
          name="url"
          label="Endpoint URL"
          type="url"
          value={props.url ?? endpoint?.url}
          hint={
            operator
              ? "https, resolving to public addresses; plain http only for localhost, with private and loopback targets allowed below."
              : "https, resolving to public addresses: private and loopback targets (localhost too) are refused; only an operator's account may allow them."
          }
          error={errorFor(props.errors, "url")}
        />
        <fieldset class={eventsError ? "field invalid" : "field"} aria-describedby={eventsError ? "f-events-error" : undefined}>
          <legend>Events</legend>
          {/* An unchecked box sends nothing: this tells "none chosen" from a form without the list. */}
          <input type="hidden" name="chooseEvents" value="1" />
          {NOTIFICATION_EVENTS.map((e) => (
            <label class="check">
              <input type="checkbox" name="events" value={e} checked={chosen.includes(e)} />
              <code>{e}</code> <span safe>{SENT_WHEN[e]}</span>
            </label>
          ))}
          {eventsError ? (
            <small class="error" id="f-events-error" safe>
              {eventsError}
            </small>
          ) : (
            ""
          )}
        </fieldset>
        {operator ? (
          <div class="field">
            <label class="check">
              <input type="checkbox" name="allowPrivate" value="true" checked={props.allowPrivate ?? endpoint?.allowPrivate ?? false} aria-describedby="f-allowPrivate-hint" />
              Allow private and loopback targets
            </label>
            <small class="hint" id="f-allowPrivate-hint">
              Operators only: turns this endpoint's SSRF guard off (localhost, 10.0.0.0/8, 169.254.169.254 …), for a receiver on this machine or network.
            </small>
          </div>
        ) : (
          ""
        )}
        <button type="submit">{endpoint ? "Save endpoint" : "Set endpoint"}</button>
      </form>
      {endpoint ? (
        <>
          <p class="muted">
            Events are POSTed as JSON with a <code safe>{SIGNATURE_HEADER}</code> header; saving keeps the signing secret. A rotation makes a new
            one and signs with both for 24 hours (two v1 entries), so a receiver can switch without refusing a delivery.
          </p>
          {endpoint.previousSecretExpiresAt ? (
            <p role="status">
              The previous signing secret also signs deliveries until <Time iso={endpoint.previousSecretExpiresAt} />.
            </p>
          ) : (
            ""
          )}
          <div class="actions">
            <form method="post" action={webhookPaths.test}>
              <CsrfField token={csrf} />
              <button type="submit">Send test event</button>
            </form>
            <form method="post" action={webhookPaths.rotateSecret} hx-confirm="Make a new signing secret? The current one keeps signing for 24 hours.">
              <CsrfField token={csrf} />
              <button type="submit">Rotate signing secret</button>
            </form>
            <form method="post" action={webhookPaths.remove} hx-confirm="Remove the webhook? Pending deliveries are given up.">
              <CsrfField token={csrf} />
              <button type="submit" class="danger">
                Remove endpoint
              </button>
            </form>
          </div>
        </>
      ) : (
        ""
      )}
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
                <td class="when">
                  <Time iso={d.createdAt} />
                </td>
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
