/** @jsxImportSource @kitajs/html */
import type { Children } from "@kitajs/html";
import type { KeyView } from "../../src/keys/model.ts";
import type { UsageReport } from "../../src/usage/queries.ts";
import { UsagePanel } from "../usage/panel.tsx";
import { CsrfField, escape, formatCount, paths, Time } from "../components.tsx";
import { EditKeyForm, SecretPanel, StatusBadge, type KeyFormState } from "./keys.tsx";
import { Layout, type PageSession } from "../layout.tsx";
import { RotationPanel, type RotationPanelProps } from "../rotation/rotations.tsx";
import { LeakedFacts } from "../leaks/report.tsx";

export interface KeyDetailProps {
  session: PageSession;
  k: KeyView;
  usage: UsageReport;
  edit: KeyFormState;
  scopes: { name: string; description: string }[];
  rolled?: { secret: string };
  /** The key that replaced this one, and the one it replaced (a roll or rotation). */
  replacedBy?: Pick<KeyView, "id" | "name" | "display"> | null;
  replaces?: Pick<KeyView, "id" | "name" | "display"> | null;
  /** The account's default grace (its rotation policy), preselected for a roll. */
  defaultGraceHours: number;
  now: number;
  /** The rotation panel's data (views/rotations.tsx), rendered below the usage. */
  rotation?: RotationPanelProps;
}

/** Another key by its name and masked form, linked to its page. */
function KeyLink(props: { k: Pick<KeyView, "id" | "name" | "display"> }) {
  return (
    <a href={paths.key(props.k.id)}>
      <span safe>{props.k.name}</span> <code safe>{props.k.display}</code>
    </a>
  );
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

/** The destructive action, last on the page and set apart from Roll. */
function DangerZone(props: { children?: Children }) {
  return (
    <section class="card actions danger-zone" aria-labelledby="danger-zone-title">
      <h2 id="danger-zone-title">Danger zone</h2>
      {props.children}
    </section>
  );
}

export function KeyDetailPage(props: KeyDetailProps) {
  const k = props.k;
  // A sandbox key is the API reference's: revoked, not changed or rolled (src/keys/service.ts refuseSandbox).
  const changeable = k.status === "active" && !k.sandbox;
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
          <LeakedFacts k={k} />
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
          <dd>
            <Time iso={k.expiresAt} />
          </dd>
          <dt>Created</dt>
          <dd>
            <Time iso={k.createdAt} />
          </dd>
          <dt>Last used</dt>
          <dd>
            <Time iso={k.lastUsedAt} />
          </dd>
          {props.replacedBy ? (
            <>
              <dt>Replaced by</dt>
              <dd>
                <KeyLink k={props.replacedBy} />
              </dd>
            </>
          ) : (
            ""
          )}
          {props.replaces ? (
            <>
              <dt>Replaces</dt>
              <dd>
                <KeyLink k={props.replaces} />
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
            <h2>Roll</h2>
            <p>Rolling makes a new key now; this one keeps working for the grace period you choose, so your integration can switch over.</p>
            <form method="post" action={paths.keyRoll(k.id)} hx-confirm="Roll this key? A new key is made now; this one keeps working only for the grace period.">
              <CsrfField token={props.session.csrfToken} />
              <label for="f-grace">Grace period for the current key</label>
              <select id="f-grace" name="gracePeriodHours">
                {[...new Set([0, 1, 24, 72, props.defaultGraceHours])]
                  .sort((a, b) => a - b)
                  .map((hours) => (
                    <option value={String(hours)} selected={hours === props.defaultGraceHours} safe>
                      {hours === 0 ? "none: stop it now" : `${hours} ${hours === 1 ? "hour" : "hours"}${hours === props.defaultGraceHours ? " (policy default)" : ""}`}
                    </option>
                  ))}
              </select>
              <button type="submit">Roll key</button>
            </form>
          </section>
          <DangerZone>
            <p>Revoking stops this key at once: every request with it fails from the next one on. It cannot be undone.</p>
            <RevokeForm k={k} csrf={props.session.csrfToken} />
          </DangerZone>
        </>
      ) : k.status === "active" ? (
        <DangerZone>
          <p>
            This is the sandbox key of one of your sessions: the API reference's try-it uses it, and it is revoked when that session signs out. It cannot be changed or
            rolled; revoke it to stop it now (the next try-it call makes a new one), or create a test key of your own.
          </p>
          <RevokeForm k={k} csrf={props.session.csrfToken} />
        </DangerZone>
      ) : k.status === "expiring" ? (
        <DangerZone>
          <p>This key was rolled and works until its grace period ends. Revoke it to stop it now, for example if it leaked. It cannot be undone.</p>
          <RevokeForm k={k} csrf={props.session.csrfToken} />
        </DangerZone>
      ) : (
        ""
      )}
    </Layout>
  );
}
