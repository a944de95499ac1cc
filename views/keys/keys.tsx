/** @jsxImportSource @kitajs/html */
import type { KeyView } from "../../src/keys/model.ts";
import type { FieldError } from "../../src/errors.ts";
import { Badge, CsrfField, Field, errorFor, formatCount, formatDate, paths, timeLeft } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";

export interface KeyFormValues {
  name?: string;
  environment?: string;
  scopes?: string[];
  rateLimit?: string | number;
  expiresAt?: string;
  ipAllowlist?: string;
  monthlyQuota?: string | number | null;
}

export interface KeyFormState {
  values: KeyFormValues;
  errors?: FieldError[];
}

export function StatusBadge(props: { k: KeyView; now: number }) {
  const k = props.k;
  if (k.status === "expiring") {
    return (
      <Badge kind="expiring">
        <span safe>{`expiring in ${timeLeft(k.graceEndsAt, props.now)}`}</span>
      </Badge>
    );
  }
  return (
    <Badge kind={k.status}>
      <span>{k.status}</span>
    </Badge>
  );
}

/** The secret, shown once, with a copy button (static/app.js) and the warning. */
export function SecretPanel(props: { secret: string; title: string }) {
  return (
    <section class="card secret" role="status" aria-live="polite">
      <h2 safe>{props.title}</h2>
      <p class="warn">Copy this key now. It will not be shown again: Keyport keeps only its hash.</p>
      <div class="secret-row">
        <code id="new-secret" safe>
          {props.secret}
        </code>
        <button type="button" class="copy" data-copy-target="new-secret">
          Copy
        </button>
      </div>
    </section>
  );
}

function ScopeChecks(props: { scopes: { name: string; description: string }[]; selected: string[]; error?: string }) {
  return (
    <fieldset class={props.error ? "field invalid" : "field"} aria-describedby={props.error ? "f-scopes-error" : undefined}>
      <legend>Scopes</legend>
      {props.scopes.map((s) => (
        <label class="check">
          <input type="checkbox" name="scopes" value={s.name} checked={props.selected.includes(s.name)} />
          <code safe>{s.name}</code> <span safe>{s.description}</span>
        </label>
      ))}
      {props.error ? (
        <small class="error" id="f-scopes-error" safe>
          {props.error}
        </small>
      ) : (
        ""
      )}
    </fieldset>
  );
}

/** The fields shared by the create and edit forms. */
function KeyFields(props: { state: KeyFormState; scopes: { name: string; description: string }[]; create: boolean }) {
  const v = props.state.values;
  const e = props.state.errors;
  return (
    <>
      <Field name="name" label="Name" value={v.name} required error={errorFor(e, "name")} />
      {props.create ? (
        <div class={errorFor(e, "environment") ? "field invalid" : "field"}>
          <label for="f-environment">Environment</label>
          <select id="f-environment" name="environment">
            <option value="live" selected={v.environment !== "test"}>
              live
            </option>
            <option value="test" selected={v.environment === "test"}>
              test
            </option>
          </select>
          {errorFor(e, "environment") ? (
            <small class="error" safe>
              {errorFor(e, "environment")}
            </small>
          ) : (
            ""
          )}
        </div>
      ) : (
        ""
      )}
      <ScopeChecks scopes={props.scopes} selected={v.scopes ?? []} error={errorFor(e, "scopes")} />
      <Field name="rateLimit" label="Rate limit (requests per minute)" type="number" min={1} max={100000} value={v.rateLimit ?? 60} error={errorFor(e, "rateLimit")} />
      <Field name="expiresAt" label="Expires on (UTC, optional)" type="date" value={v.expiresAt} error={errorFor(e, "expiresAt")} />
      <Field
        multiline
        name="ipAllowlist"
        label="IP allowlist (optional)"
        value={v.ipAllowlist}
        hint="One address or CIDR range per line, IPv4 or IPv6. Empty allows every address."
        error={errorFor(e, "ipAllowlist")}
      />
      <Field name="monthlyQuota" label="Monthly quota (optional)" type="number" min={1} value={v.monthlyQuota ?? undefined} error={errorFor(e, "monthlyQuota")} />
    </>
  );
}

export function CreateKeyForm(props: { state: KeyFormState; scopes: { name: string; description: string }[]; csrf: string }) {
  return (
    <form id="create-key" method="post" action={paths.keys} hx-post={paths.keys} hx-target="#keys-section" hx-swap="outerHTML" class="card">
      <h2>Create a key</h2>
      {props.state.errors?.length ? (
        <p class="form-error" role="alert">
          The key was not created: see the fields marked below.
        </p>
      ) : (
        ""
      )}
      <CsrfField token={props.csrf} />
      <KeyFields state={props.state} scopes={props.scopes} create />
      <button type="submit">Create key</button>
    </form>
  );
}

export function EditKeyForm(props: { k: KeyView; state: KeyFormState; scopes: { name: string; description: string }[]; csrf: string }) {
  return (
    <form id="edit-key" method="post" action={paths.key(props.k.id)} class="card">
      <h2>Edit</h2>
      {props.state.errors?.length ? (
        <p class="form-error" role="alert">
          Nothing was changed: see the fields marked below.
        </p>
      ) : (
        ""
      )}
      <CsrfField token={props.csrf} />
      <KeyFields state={props.state} scopes={props.scopes} create={false} />
      <button type="submit">Save changes</button>
    </form>
  );
}

export function EmptyKeys(props: { origin: string; prefix: string }) {
  return (
    <section class="card empty">
      <h2>No keys yet</h2>
      <p>Create your first key with the form below, then call the API with it:</p>
      <pre safe>{`curl -H "Authorization: Bearer ${props.prefix}_live_…" ${props.origin}/v1/email/someone@example.com`}</pre>
    </section>
  );
}

export function KeyTable(props: { keys: KeyView[]; perKeyMonth: Record<string, number>; now: number }) {
  return (
    <table class="keys">
      <thead>
        <tr>
          <th scope="col">Name</th>
          <th scope="col">Env</th>
          <th scope="col">Key</th>
          <th scope="col">Scopes</th>
          <th scope="col">Status</th>
          <th scope="col">Last used</th>
          <th scope="col">Requests this month</th>
        </tr>
      </thead>
      <tbody>
        {props.keys.map((k) => (
          <tr id={`key-${k.id}`}>
            <td>
              <a href={paths.key(k.id)} safe>
                {k.name}
              </a>
            </td>
            <td>
              <Badge kind={k.environment}>
                <span>{k.environment}</span>
              </Badge>
            </td>
            <td>
              <code safe>{k.display}</code>
            </td>
            <td safe>{k.scopes.join(", ")}</td>
            <td>
              <StatusBadge k={k} now={props.now} />
            </td>
            <td safe>{formatDate(k.lastUsedAt)}</td>
            <td safe>{formatCount(props.perKeyMonth[k.id] ?? 0)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export interface KeysSectionProps {
  keys: KeyView[];
  perKeyMonth: Record<string, number>;
  form: KeyFormState;
  scopes: { name: string; description: string }[];
  created?: { key: KeyView; secret: string };
  csrf: string;
  origin: string;
  prefix: string;
  now: number;
}

/** What htmx swaps after a create: the secret (once), the table and a fresh or failed form. */
export function KeysSection(props: KeysSectionProps) {
  return (
    <div id="keys-section">
      {props.created ? <SecretPanel secret={props.created.secret} title={`Key "${props.created.key.name}" created`} /> : ""}
      {props.keys.length ? <KeyTable keys={props.keys} perKeyMonth={props.perKeyMonth} now={props.now} /> : <EmptyKeys origin={props.origin} prefix={props.prefix} />}
      <CreateKeyForm state={props.form} scopes={props.scopes} csrf={props.csrf} />
    </div>
  );
}

export function KeysPage(props: KeysSectionProps & { session: PageSession }) {
  return (
    <Layout title="Keys" session={props.session} active="keys">
      <h1>Keys</h1>
      <KeysSection {...props} />
    </Layout>
  );
}
