/** @jsxImportSource @kitajs/html */
import type { FieldError } from "../../src/errors.ts";
import type { ProductView } from "../../src/products/model.ts";
import { PRODUCT_STATUSES } from "../../src/products/products.sql.ts";
import { Badge, CsrfField, EventsTable, Field, TableScroll, Time, errorFor, escape, formatCount, paths } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";
import { AdminNav } from "./nav.tsx";

/** A product's settings as the form holds them: what the operator typed, kept after a refusal. */
export interface ProductSettingsValues {
  name: string;
  description: string;
  status: string;
  upstreamUrl: string;
  sandboxUrl: string;
  timeoutMs: string;
  maxBodyBytes: string;
  validateRequests: boolean;
}

/** The register form's fields: the settings, the id, and the spec's URL (a chosen file is never sent back). */
export interface RegisterFormValues extends ProductSettingsValues {
  id: string;
  specUrl: string;
}

export interface ProductsPageProps {
  session: PageSession;
  products: ProductView[];
  form: { values: RegisterFormValues; errors?: FieldError[] };
  /** The id of the product just removed. */
  removed?: string;
}

/** An audit event of a product's log, as people read it. */
export interface ProductEventRow {
  id: string;
  createdAt: string;
  action: string;
  /** Who: an email, "the command line". */
  actor: string;
  /** What changed, in words. */
  summary: string;
  ip: string | null;
}

/** One stored spec version. */
export interface SpecVersionRow {
  version: number;
  source: string;
  /** The spec's info.version. */
  specVersion: string;
  operations: number;
  createdAt: string;
}

/** What an operator's action did, said at the top of the product's page after the redirect. */
export type ProductDone = "updated" | "uploaded" | "uploaded_inactive" | "activated";

export interface ProductPageProps {
  session: PageSession;
  product: ProductView;
  versions: SpecVersionRow[];
  events: ProductEventRow[];
  done?: { kind: ProductDone; version?: number };
  /** A refused settings change: the form as sent, its errors. */
  settings?: { values: ProductSettingsValues; errors: FieldError[] };
  /** A refused spec upload. */
  upload?: { specUrl: string; activate: boolean; errors: FieldError[] };
  /** A refused activation. */
  versionError?: string;
  /** A refused removal: what was typed, and why. */
  remove?: { confirm: string; error: string };
}

export interface ProductSecretPageProps {
  session: PageSession;
  product: ProductView;
  secret: string;
  /** Registered just now (else: the secret was rotated). */
  registered: boolean;
}

/** The settings of a product in the form's terms. */
function settingsValues(p: ProductView): ProductSettingsValues {
  return {
    name: p.name,
    description: p.description,
    status: p.status,
    upstreamUrl: p.upstreamUrl,
    sandboxUrl: p.sandboxUrl ?? "",
    timeoutMs: String(p.timeoutMs),
    maxBodyBytes: String(p.maxBodyBytes),
    validateRequests: p.validateRequests,
  };
}

const FORM_FIELDS = ["id", "name", "description", "status", "upstreamUrl", "sandboxUrl", "timeoutMs", "maxBodyBytes", "validateRequests", "spec", "specUrl"];

export function ProductStatusBadge(props: { status: string }) {
  return (
    <Badge kind={props.status === "active" ? "active" : props.status === "beta" ? "beta" : "deprecated"}>
      <span safe>{props.status}</span>
    </Badge>
  );
}

/** Messages the form has no field for (shown above it), so no refusal goes unsaid. */
function OtherErrors(props: { errors?: FieldError[]; fields: string[] }) {
  const other = (props.errors ?? []).filter((e) => !props.fields.some((f) => e.field === f || e.field.startsWith(f + ".")));
  return other.length ? (
    <ul class="form-error" role="alert">
      {other.map((e) => (
        <li safe>{e.field === "body" ? e.message : `${e.field} ${e.message}`}</li>
      ))}
    </ul>
  ) : (
    ""
  );
}

function StatusSelect(props: { value: string; error?: string }) {
  return (
    <div class={props.error ? "field invalid" : "field"}>
      <label for="f-status">Status</label>
      <select id="f-status" name="status" aria-invalid={props.error ? "true" : undefined} aria-describedby={props.error ? "f-status-error" : undefined}>
        {PRODUCT_STATUSES.map((s) => (
          <option value={s} selected={props.value === s}>
            {s}
          </option>
        ))}
      </select>
      {props.error ? (
        <small class="error" id="f-status-error" safe>
          {props.error}
        </small>
      ) : (
        ""
      )}
    </div>
  );
}

/** The settings the register and edit forms share. */
function SettingsFields(props: { values: ProductSettingsValues; errors?: FieldError[]; register: boolean }) {
  const v = props.values;
  const e = props.errors;
  const validateError = errorFor(e, "validateRequests");
  return (
    <>
      <Field name="name" label={props.register ? "Name (optional: the spec's title)" : "Name"} value={v.name} error={errorFor(e, "name")} required={!props.register} />
      <Field name="description" label={props.register ? "Description (optional: the spec's description)" : "Description"} multiline value={v.description} error={errorFor(e, "description")} />
      <StatusSelect value={v.status} error={errorFor(e, "status")} />
      <Field name="upstreamUrl" label="Upstream URL (live keys' calls)" type="url" required value={v.upstreamUrl} error={errorFor(e, "upstreamUrl")} hint="http or https, no query: /v1/<id>/<path> goes to this URL + /<path>." />
      <Field name="sandboxUrl" label="Sandbox URL (test keys' calls; optional)" type="url" value={v.sandboxUrl} error={errorFor(e, "sandboxUrl")} hint="Without one, test keys are refused (403 sandbox_unavailable)." />
      <Field name="timeoutMs" label="Timeout (ms)" type="number" min={100} max={300000} value={v.timeoutMs} error={errorFor(e, "timeoutMs")} hint={props.register ? "Empty: 30000 (30 s)." : undefined} />
      <Field name="maxBodyBytes" label="Largest request body (bytes)" type="number" min={0} value={v.maxBodyBytes} error={errorFor(e, "maxBodyBytes")} hint={props.register ? "Empty: 10485760 (10 MiB)." : undefined} />
      <div class={validateError ? "field invalid" : "field"}>
        <label class="check">
          <input type="checkbox" name="validateRequests" value="true" checked={v.validateRequests} aria-describedby="f-validateRequests-hint" />
          Validate requests against the spec before forwarding them
        </label>
        <small class="hint" id="f-validateRequests-hint">
          A request the spec does not allow is answered 400 invalid_request with the failing fields, and never reaches the upstream.
        </small>
        {validateError ? (
          <small class="error" safe>
            {validateError}
          </small>
        ) : (
          ""
        )}
      </div>
    </>
  );
}

/** A spec as a file or a URL; the spec's problems listed one by one beside it. */
function SpecSourceFields(props: { specUrl: string; errors?: FieldError[] }) {
  const problems = (props.errors ?? []).filter((e) => e.field === "spec").map((e) => e.message);
  return (
    <fieldset class={problems.length ? "field invalid" : "field"}>
      <legend>OpenAPI spec (3.0 or 3.1, JSON or YAML)</legend>
      <div class={problems.length ? "field invalid" : "field"}>
        <label for="f-spec">A file</label>
        <input
          id="f-spec"
          name="spec"
          type="file"
          accept=".json,.yaml,.yml,application/json,application/yaml,text/yaml"
          aria-invalid={problems.length ? "true" : undefined}
          aria-describedby={problems.length ? "f-spec-error" : undefined}
        />
        {problems.length ? (
          <ul class="error" id="f-spec-error">
            {problems.map((m) => (
              <li safe>{m}</li>
            ))}
          </ul>
        ) : (
          ""
        )}
      </div>
      <Field name="specUrl" label="or its URL, which Keyport fetches once" type="url" value={props.specUrl} error={errorFor(props.errors, "specUrl")} />
    </fieldset>
  );
}

/** The registered products and the form that registers one. */
export function ProductsPage(props: ProductsPageProps) {
  const v = props.form.values;
  const e = props.form.errors;
  return (
    <Layout title="Products" session={props.session} active="operator">
      <h1>Products</h1>
      <AdminNav active="products" />
      {props.removed ? (
        <p class="card notice" role="status" safe>
          {`Product ${props.removed} removed: /v1/${props.removed}/… answers 404 from the next request on every instance. Its usage and its audit log stay.`}
        </p>
      ) : (
        ""
      )}
      <section class="card">
        <p>
          A product is one of your own APIs behind Keyport: registered from its OpenAPI spec, called at <code>{escape("/v1/<id>/…")}</code> with the same keys, limits, meter and
          invoices as the built-in API, and forwarded to its upstream (live keys) or its sandbox (test keys).
        </p>
        {props.products.length ? (
          <TableScroll>
            <table class="products">
              <thead>
                <tr>
                  <th scope="col">Id</th>
                  <th scope="col">Name</th>
                  <th scope="col">Status</th>
                  <th scope="col">Upstream</th>
                  <th scope="col">Sandbox</th>
                  <th scope="col">Active version</th>
                  <th scope="col">Operations</th>
                  <th scope="col">Scopes</th>
                </tr>
              </thead>
              <tbody>
                {props.products.map((p) => (
                  <tr>
                    <th scope="row">
                      <a href={paths.adminProduct(p.id)}>
                        <code safe>{p.id}</code>
                      </a>
                    </th>
                    <td safe>{p.name}</td>
                    <td>
                      <ProductStatusBadge status={p.status} />
                    </td>
                    <td>
                      <code safe>{p.upstreamUrl}</code>
                    </td>
                    <td>{p.sandboxUrl ? <code safe>{p.sandboxUrl}</code> : <span class="muted">none</span>}</td>
                    <td safe>{String(p.activeVersion)}</td>
                    <td safe>{formatCount(p.operations.length)}</td>
                    <td safe>{p.scopes.join(", ")}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableScroll>
        ) : (
          <p class="muted">No product is registered yet.</p>
        )}
      </section>

      <section class="card" id="register">
        <h2>Register a product</h2>
        {e?.length ? (
          <p class="form-error" role="alert">
            The product is not registered: every problem is listed beside its field. Choose the spec's file again.
          </p>
        ) : (
          ""
        )}
        <OtherErrors errors={e} fields={FORM_FIELDS} />
        <form method="post" action={paths.adminProducts} enctype="multipart/form-data">
          <CsrfField token={props.session.csrfToken} />
          <Field name="id" label="Id" required value={v.id} error={errorFor(e, "id")} hint="Lowercase letters, digits and dashes, starting with a letter: the /v1/<id>/ prefix and the scopes' <id>:read, <id>:write." />
          <SettingsFields values={v} errors={e} register />
          <SpecSourceFields specUrl={v.specUrl} errors={e} />
          <button type="submit">Register the product</button>
        </form>
      </section>
    </Layout>
  );
}

function doneMessage(done: NonNullable<ProductPageProps["done"]>, p: ProductView): string {
  const v = done.version === undefined ? "" : ` ${done.version}`;
  switch (done.kind) {
    case "updated":
      return "Settings saved: they apply from the next request on every instance.";
    case "uploaded":
      return `Spec version${v} uploaded and active: /v1/${p.id}/… serves its operations from the next request on every instance.`;
    case "uploaded_inactive":
      return `Spec version${v} uploaded; version ${p.activeVersion} still serves until you activate it.`;
    case "activated":
      return `Spec version${v} is active: /v1/${p.id}/… serves its operations from the next request on every instance.`;
  }
}

/** One product for an operator: its settings, operations, spec versions, gateway secret, audit log; remove. */
export function ProductPage(props: ProductPageProps) {
  const p = props.product;
  const csrf = props.session.csrfToken;
  const settings = props.settings ?? { values: settingsValues(p), errors: [] };
  const upload = props.upload ?? { specUrl: "", activate: true, errors: [] };
  return (
    <Layout title={`Product ${p.name}`} session={props.session} active="operator">
      <h1 safe>{p.name}</h1>
      <AdminNav active="products" />
      <p>
        <a href={paths.adminProducts}>← Products</a>
      </p>
      {props.done ? (
        <p class="card notice" role="status" safe>
          {doneMessage(props.done, p)}
        </p>
      ) : (
        ""
      )}
      <section class="card">
        <dl class="facts">
          <dt>Id</dt>
          <dd>
            <code safe>{p.id}</code>
          </dd>
          <dt>Status</dt>
          <dd>
            <ProductStatusBadge status={p.status} />
          </dd>
          <dt>Called at</dt>
          <dd>
            <code safe>{`/v1/${p.id}/…`}</code>
          </dd>
          <dt>Upstream</dt>
          <dd>
            <code safe>{p.upstreamUrl}</code>
          </dd>
          <dt>Sandbox</dt>
          <dd>{p.sandboxUrl ? <code safe>{p.sandboxUrl}</code> : <span class="muted">none: test keys are refused</span>}</dd>
          <dt>Timeout</dt>
          <dd safe>{`${formatCount(p.timeoutMs)} ms`}</dd>
          <dt>Largest request body</dt>
          <dd safe>{`${formatCount(p.maxBodyBytes)} bytes`}</dd>
          <dt>Request validation</dt>
          <dd>{p.validateRequests ? "on" : "off"}</dd>
          <dt>Active spec version</dt>
          <dd safe>{String(p.activeVersion)}</dd>
          <dt>Scopes</dt>
          <dd safe>{p.scopes.join(", ")}</dd>
          <dt>Registered</dt>
          <dd>
            <Time iso={p.createdAt} />
          </dd>
          <dt>Last changed</dt>
          <dd>
            <Time iso={p.updatedAt} />
          </dd>
        </dl>
      </section>

      <section class="card">
        <h2>Operations</h2>
        <TableScroll>
          <table class="operations">
            <thead>
              <tr>
                <th scope="col">Method</th>
                <th scope="col">Path</th>
                <th scope="col">Scope</th>
                <th scope="col">Summary</th>
              </tr>
            </thead>
            <tbody>
              {p.operations.map((o) => (
                <tr>
                  <td>
                    <code safe>{o.method}</code>
                  </td>
                  <td>
                    <code safe>{o.path}</code>
                  </td>
                  <td>
                    <code safe>{o.scope}</code>
                  </td>
                  <td safe>{o.summary}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableScroll>
      </section>

      <section class="card">
        <h2>Settings</h2>
        {settings.errors.length ? (
          <p class="form-error" role="alert">
            Nothing was changed: every problem is listed beside its field.
          </p>
        ) : (
          ""
        )}
        <OtherErrors errors={settings.errors} fields={FORM_FIELDS} />
        <form method="post" action={paths.adminProduct(p.id)}>
          <CsrfField token={csrf} />
          <SettingsFields values={settings.values} errors={settings.errors} register={false} />
          <button type="submit">Save settings</button>
        </form>
      </section>

      <section class="card">
        <h2>Spec versions</h2>
        {props.versionError ? (
          <p class="form-error" role="alert" safe>
            {props.versionError}
          </p>
        ) : (
          ""
        )}
        <TableScroll>
          <table class="versions">
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">Source</th>
                <th scope="col">info.version</th>
                <th scope="col">Operations</th>
                <th scope="col">Uploaded</th>
                <th scope="col">Serving</th>
                <th scope="col">Spec</th>
              </tr>
            </thead>
            <tbody>
              {props.versions.map((s) => (
                <tr aria-current={s.version === p.activeVersion ? "true" : undefined}>
                  <th scope="row" safe>
                    {String(s.version)}
                  </th>
                  <td>
                    <code safe>{s.source}</code>
                  </td>
                  <td safe>{s.specVersion || "—"}</td>
                  <td safe>{formatCount(s.operations)}</td>
                  <td>
                    <Time iso={s.createdAt} />
                  </td>
                  <td>
                    {s.version === p.activeVersion ? (
                      <Badge kind="active">
                        <span>active</span>
                      </Badge>
                    ) : (
                      <form method="post" action={paths.adminProductActivate(p.id, s.version)} hx-confirm="Serve this version from the next request?">
                        <CsrfField token={csrf} />
                        <button type="submit">Activate</button>
                      </form>
                    )}
                  </td>
                  <td>
                    <a href={paths.adminProductSpec(p.id, s.version)} download="">
                      spec.json
                    </a>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableScroll>
      </section>

      <section class="card">
        <h2>Upload a new version</h2>
        {upload.errors.length ? (
          <p class="form-error" role="alert">
            The spec was not stored: its problems are listed beside it. Choose the file again.
          </p>
        ) : (
          ""
        )}
        <OtherErrors errors={upload.errors} fields={FORM_FIELDS} />
        <form method="post" action={paths.adminProductVersions(p.id)} enctype="multipart/form-data">
          <CsrfField token={csrf} />
          <SpecSourceFields specUrl={upload.specUrl} errors={upload.errors} />
          <div class="field">
            <label class="check">
              <input type="checkbox" name="activate" value="true" checked={upload.activate} />
              Activate now (else it waits in the list until you activate it)
            </label>
          </div>
          <button type="submit">Upload the spec</button>
        </form>
      </section>

      <section class="card">
        <h2>Gateway secret</h2>
        <p>
          Keyport sends a secret in the <code>Keyport-Gateway-Secret</code> header of every request it forwards, so the upstream can refuse calls that did not pass the
          gateway. It was shown once, when the product was registered or the secret last rotated; it cannot be shown again. A new one is sent from the next request on
          every instance: have the upstream accept the old and the new one while you switch.
        </p>
        <form method="post" action={paths.adminProductSecret(p.id)} hx-confirm="Make a new gateway secret? The current one stops being sent at once.">
          <CsrfField token={csrf} />
          <button type="submit">Rotate the gateway secret</button>
        </form>
      </section>

      <section class="card">
        <h2>Audit log</h2>
        <EventsTable events={props.events} />
      </section>

      <section class="card danger-zone">
        <h2>Remove the product</h2>
        <p>
          <code safe>{`/v1/${p.id}/…`}</code> answers 404 from the next request on every instance, and its spec versions are deleted. Its usage and this audit log stay.
        </p>
        <form method="post" action={paths.adminProductRemove(p.id)}>
          <CsrfField token={csrf} />
          <Field name="confirm" label="Type the product's id to confirm" required autocomplete="off" value={props.remove?.confirm} error={props.remove?.error} />
          <button type="submit" class="danger">
            Remove the product
          </button>
        </form>
      </section>
    </Layout>
  );
}

/** The gateway secret, shown once: at registration or after a rotation. */
export function ProductSecretPage(props: ProductSecretPageProps) {
  const p = props.product;
  return (
    <Layout title={`Gateway secret of ${p.name}`} session={props.session} active="operator">
      <h1 safe>{props.registered ? `${p.name} is registered` : `New gateway secret for ${p.name}`}</h1>
      <AdminNav active="products" />
      {props.registered ? (
        <p class="card notice" role="status" safe>
          {`/v1/${p.id}/… serves ${p.operations.length} operation${p.operations.length === 1 ? "" : "s"} from now on, on every instance; keys need ${p.scopes.join(", ")}.`}
        </p>
      ) : (
        ""
      )}
      <section class="card secret" role="status" aria-live="polite">
        <h2>Keyport-Gateway-Secret</h2>
        <p class="warn">Copy this secret now. It will not be shown again.</p>
        <div class="secret-row">
          <code id="new-secret" safe>
            {props.secret}
          </code>
          <button type="button" class="copy" data-copy-target="new-secret">
            Copy
          </button>
        </div>
        <p>
          Keyport sends it in the <code>Keyport-Gateway-Secret</code> header of every request it forwards to this product's upstream and sandbox. Make the upstream refuse
          every request whose header is not this secret, and compare the two in constant time (<code>crypto.timingSafeEqual</code> in Node and Bun,{" "}
          <code>hmac.compare_digest</code> in Python, <code>subtle.ConstantTimeCompare</code> in Go): an ordinary string comparison returns sooner the sooner the strings
          differ, and that timing lets a caller guess the secret piece by piece.
        </p>
        {props.registered ? (
          ""
        ) : (
          <p>The previous secret is no longer sent, from the next request on every instance: the upstream should accept both only while you switch it over.</p>
        )}
      </section>
      <p>
        <a href={paths.adminProduct(p.id)}>Go to the product's page</a>
      </p>
    </Layout>
  );
}
