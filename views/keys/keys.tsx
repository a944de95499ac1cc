/** @jsxImportSource @kitajs/html */
import type { KeyView } from "../../src/keys/model.ts";
import type { FieldError } from "../../src/errors.ts";
import { Badge, CsrfField, Field, errorFor, formatCount, paths, timeLeft, Time } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";
import { authPaths } from "../accounts/auth.tsx";
import { LeakedBadge, ReportLeakForm } from "../leaks/report.tsx";

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
  /** Each beside its field. */
  errors?: FieldError[];
  /** A refusal of the whole form (the key limit), at its top. */
  message?: string;
}

/** What stands at the top of a refused form: its own message, or a pointer to the fields. */
function FormRefusal(props: { state: KeyFormState; fields: string }) {
  if (props.state.message) {
    return (
      <p class="form-error" role="alert" safe>
        {props.state.message}
      </p>
    );
  }
  if (!props.state.errors?.length) return "";
  return (
    <p class="form-error" role="alert" safe>
      {props.fields}
    </p>
  );
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
      <FormRefusal state={props.state} fields="The key was not created: see the fields marked below." />
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
      <FormRefusal state={props.state} fields="Nothing was changed: see the fields marked below." />
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
              {k.sandbox ? (
                <>
                  {" "}
                  <Badge kind="sandbox">
                    <span title="The API reference's try-it key for one session, revoked at its logout">sandbox</span>
                  </Badge>
                </>
              ) : (
                ""
              )}
            </td>
            <td>
              <code safe>{k.display}</code>
            </td>
            <td safe>{k.scopes.join(", ")}</td>
            <td>
              <StatusBadge k={k} now={props.now} />
              {k.leakedAt ? (
                <>
                  {" "}
                  <LeakedBadge k={k} />
                </>
              ) : (
                ""
              )}
            </td>
            <td class="when">
              <Time iso={k.lastUsedAt} />
            </td>
            <td safe>{formatCount(props.perKeyMonth[k.id] ?? 0)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** The list's filters as the page's GET form sends them. */
export interface KeySearchValues {
  q: string;
  status: string;
  environment: string;
  revoked: boolean;
}

/** Search by name, status and environment; revoked keys shown only when asked for. */
function KeyFilters(props: { search: KeySearchValues; total: number }) {
  const s = props.search;
  const option = (value: string, label: string, current: string) => (
    <option value={value} selected={current === value} safe>
      {label}
    </option>
  );
  return (
    <form method="get" action={paths.keys} class="filters card" role="search">
      <label for="k-q">Name</label>
      <input id="k-q" name="q" type="search" value={s.q} placeholder="search" />
      <label for="k-status">Status</label>
      <select id="k-status" name="status">
        {option("", "not revoked", s.status)}
        {option("active", "active", s.status)}
        {option("expiring", "expiring", s.status)}
        {option("expired", "expired", s.status)}
        {option("revoked", "revoked", s.status)}
      </select>
      <label for="k-env">Environment</label>
      <select id="k-env" name="environment">
        {option("", "all", s.environment)}
        {option("live", "live", s.environment)}
        {option("test", "test", s.environment)}
      </select>
      <label class="check">
        <input type="checkbox" name="revoked" value="1" checked={s.revoked} /> show revoked
      </label>
      <button type="submit">Filter</button>
      <span class="muted" safe>
        {`${props.total} ${props.total === 1 ? "key" : "keys"}`}
      </span>
    </form>
  );
}

/** Links to the other pages of the list, keeping the filters. */
function KeyPages(props: { search: KeySearchValues; page: number; pages: number }) {
  if (props.pages <= 1) return "";
  const s = props.search;
  const href = (page: number) =>
    `${paths.keys}?${new URLSearchParams({ ...(s.q ? { q: s.q } : {}), ...(s.status ? { status: s.status } : {}), ...(s.environment ? { environment: s.environment } : {}), ...(s.revoked ? { revoked: "1" } : {}), page: String(page) }).toString()}`;
  return (
    <nav class="pages" aria-label="Pages">
      {props.page > 1 ? (
        <a href={href(props.page - 1)} rel="prev">
          ← Newer
        </a>
      ) : (
        ""
      )}
      <span safe>{`Page ${props.page} of ${props.pages}`}</span>
      {props.page < props.pages ? (
        <a href={href(props.page + 1)} rel="next">
          Older →
        </a>
      ) : (
        ""
      )}
    </nav>
  );
}

/** An account that may not create live keys until its address is confirmed (REQUIRE_EMAIL_VERIFICATION). */
export interface VerificationState {
  email: string;
  /** A new link was just sent. */
  sent: boolean;
}

/** Beside the create form: why live keys wait, and a button for a new link (its own form: forms do not nest). */
function VerificationNotice(props: { state: VerificationState; csrf: string }) {
  return (
    <section id="verify-notice" class="card note" role="status">
      <p>
        <strong>Confirm your address to create live keys.</strong> Test keys and the API reference's sandbox work meanwhile.
      </p>
      <p safe>
        {props.state.sent
          ? `A new link is on its way to ${props.state.email}; it works for 24 hours.`
          : `Follow the link we mailed to ${props.state.email} when you signed up; it works for 24 hours.`}
      </p>
      <form method="post" action={authPaths.resendVerification}>
        <CsrfField token={props.csrf} />
        <button type="submit">Send a new link</button>
      </form>
    </section>
  );
}

export interface KeysSectionProps {
  keys: KeyView[];
  /** How many keys the filters match, and which page of them this is. */
  total: number;
  page: number;
  pages: number;
  search: KeySearchValues;
  /** Whether the account has any key at all (an empty search is not an empty account). */
  anyKeys: boolean;
  perKeyMonth: Record<string, number>;
  form: KeyFormState;
  scopes: { name: string; description: string }[];
  created?: { key: KeyView; secret: string };
  csrf: string;
  origin: string;
  prefix: string;
  now: number;
  /** Set while live keys wait for the account's address to be confirmed. */
  verification?: VerificationState;
}

/** What htmx swaps after a create: the secret (once), the table and a fresh or failed form. */
export function KeysSection(props: KeysSectionProps) {
  return (
    <div id="keys-section">
      {props.created ? <SecretPanel secret={props.created.secret} title={`Key "${props.created.key.name}" created`} /> : ""}
      {props.anyKeys ? <KeyFilters search={props.search} total={props.total} /> : ""}
      {props.keys.length ? (
        <KeyTable keys={props.keys} perKeyMonth={props.perKeyMonth} now={props.now} />
      ) : props.anyKeys ? (
        <p class="card muted">No key matches these filters.</p>
      ) : (
        <EmptyKeys origin={props.origin} prefix={props.prefix} />
      )}
      <KeyPages search={props.search} page={props.page} pages={props.pages} />
      {props.verification ? <VerificationNotice state={props.verification} csrf={props.csrf} /> : ""}
      <CreateKeyForm state={props.form} scopes={props.scopes} csrf={props.csrf} />
    </div>
  );
}

export function KeysPage(props: KeysSectionProps & { session: PageSession }) {
  return (
    <Layout title="Keys" session={props.session} active="keys">
      <h1>Keys</h1>
      <KeysSection {...props} />
      <ReportLeakForm state={{}} csrf={props.csrf} />
    </Layout>
  );
}
