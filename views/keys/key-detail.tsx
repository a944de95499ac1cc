/** @jsxImportSource @kitajs/html */
import type { KeyView } from "../../src/keys/model.ts";
import type { UsageReport } from "../../src/usage/queries.ts";
import { UsagePanel } from "../usage/panel.tsx";
import { CsrfField, escape, formatCount, formatDate, paths } from "../components.tsx";
import { EditKeyForm, SecretPanel, StatusBadge, type KeyFormState } from "./keys.tsx";
import { Layout, type PageSession } from "../layout.tsx";
import { RotationPanel, type RotationPanelProps } from "../rotation/rotations.tsx";

export interface KeyDetailProps {
  session: PageSession;
  k: KeyView;
  usage: UsageReport;
  edit: KeyFormState;
  scopes: { name: string; description: string }[];
  rolled?: { secret: string };
  now: number;
  /** The rotation panel's data (views/rotations.tsx), rendered below the usage. */
  rotation?: RotationPanelProps;
}

/** Revoking is open to an active key and to one in a roll's grace period (ending it early). */
function RevokeForm(props: { k: KeyView; csrf: string }) {
  return (
    <form method="post" action={paths.keyRevoke(props.k.id)} hx-confirm="Revoke this key? Requests with it fail from the next one on.">
      <CsrfField token={props.csrf} />
      <button type="submit" class="danger">
        Revoke key
      </button>
    </form>
  );
}

export function KeyDetailPage(props: KeyDetailProps) {
  const k = props.k;
  const changeable = k.status === "active";
  return (
    <Layout title={k.name} session={props.session} active="keys">
      <p>
        <a href={paths.keys}>← All keys</a>
      </p>
      {props.rolled ? <SecretPanel secret={props.rolled.secret} title="New key after the roll" /> : ""}
      <section class="card">
        <h1 safe>{k.name}</h1>
        <dl class="facts">
          <dt>Key</dt>
          <dd>
            <code safe>{k.display}</code>
          </dd>
          <dt>Status</dt>
          <dd>
            <StatusBadge k={k} now={props.now} />
          </dd>
          <dt>Environment</dt>
          <dd>{k.environment}</dd>
          <dt>Scopes</dt>
          <dd safe>{k.scopes.join(", ")}</dd>
          <dt>Rate limit</dt>
          <dd safe>{`${formatCount(k.rateLimit)} / minute`}</dd>
          <dt>Monthly quota</dt>
          <dd safe>{k.monthlyQuota === null ? "none" : formatCount(k.monthlyQuota)}</dd>
          <dt>IP allowlist</dt>
          <dd>{k.ipAllowlist.length ? escape(k.ipAllowlist.join(", ")) : "any address"}</dd>
          <dt>Expires</dt>
          <dd safe>{formatDate(k.expiresAt)}</dd>
          <dt>Created</dt>
          <dd safe>{formatDate(k.createdAt)}</dd>
          <dt>Last used</dt>
          <dd safe>{formatDate(k.lastUsedAt)}</dd>
          {k.replacedBy ? (
            <>
              <dt>Replaced by</dt>
              <dd>
                <a href={paths.key(k.replacedBy)} safe>
                  {k.replacedBy}
                </a>
              </dd>
            </>
          ) : (
            ""
          )}
        </dl>
      </section>
      <UsagePanel k={k} usage={props.usage} />
      {props.rotation ? <RotationPanel {...props.rotation} /> : ""}
      {changeable ? (
        <>
          <EditKeyForm k={k} state={props.edit} scopes={props.scopes} csrf={props.session.csrfToken} />
          <section class="card actions">
            <h2>Roll or revoke</h2>
            <form method="post" action={paths.keyRoll(k.id)} hx-confirm="Roll this key? A new key is made now; this one keeps working only for the grace period.">
              <CsrfField token={props.session.csrfToken} />
              <label for="f-grace">Grace period for the current key</label>
              <select id="f-grace" name="gracePeriodHours">
                <option value="0">none: stop it now</option>
                <option value="1">1 hour</option>
                <option value="24" selected>
                  24 hours
                </option>
                <option value="72">72 hours</option>
              </select>
              <button type="submit">Roll key</button>
            </form>
            <RevokeForm k={k} csrf={props.session.csrfToken} />
          </section>
        </>
      ) : k.status === "expiring" ? (
        <section class="card actions">
          <h2>Revoke</h2>
          <p>This key was rolled and works until its grace period ends. Revoke it to stop it now, for example if it leaked.</p>
          <RevokeForm k={k} csrf={props.session.csrfToken} />
        </section>
      ) : (
        ""
      )}
    </Layout>
  );
}
