/** @jsxImportSource @kitajs/html */
import Html, { type Children } from "@kitajs/html";
import type { FieldError } from "../src/errors.ts";

/** Every portal path in one place: views build links from these, never from user text. */
export const paths = {
  home: "/",
  login: "/login",
  signup: "/signup",
  logout: "/logout",
  dashboard: "/portal",
  keys: "/portal/keys",
  key: (id: string) => `/portal/keys/${encodeURIComponent(id)}`,
  keyEdit: (id: string) => `/portal/keys/${encodeURIComponent(id)}/edit`,
  keyRevoke: (id: string) => `/portal/keys/${encodeURIComponent(id)}/revoke`,
  keyRoll: (id: string) => `/portal/keys/${encodeURIComponent(id)}/roll`,
  keyUsage: (id: string, days: number) => `/portal/keys/${encodeURIComponent(id)}/usage?days=${days}`,
  keyUsageCsv: (id: string, days: number) => `/portal/keys/${encodeURIComponent(id)}/usage.csv?days=${days}`,
  audit: "/portal/audit",
  settings: "/portal/settings",
  notifications: "/portal/notifications",
  compliance: "/portal/compliance",
  complianceCsv: "/portal/compliance.csv",
  adminCompliance: "/admin/compliance",
  adminComplianceCsv: "/admin/compliance.csv",
  reveal: (id: string) => `/portal/rotations/${encodeURIComponent(id)}/reveal`,
  cancelRotation: (id: string) => `/portal/rotations/${encodeURIComponent(id)}/cancel`,
  keyRotations: (id: string) => `/portal/keys/${encodeURIComponent(id)}/rotations`,
  keyEmergency: (id: string) => `/portal/keys/${encodeURIComponent(id)}/rotations/emergency`,
  webhook: "/portal/settings/webhook",
  policy: "/portal/settings/policy",
  resend: (id: string) => `/portal/settings/webhook/deliveries/${encodeURIComponent(id)}/resend`,
  docs: "/docs",
  pricing: "/pricing",
  billing: "/portal/billing",
  billingChange: "/portal/billing/change",
  billingPreview: (plan: string) => `/portal/billing/change?plan=${encodeURIComponent(plan)}`,
  billingPlan: "/portal/billing/plan",
  invoice: (id: string) => `/portal/billing/invoices/${encodeURIComponent(id)}`,
  invoiceCsv: (id: string) => `/portal/billing/invoices/${encodeURIComponent(id)}.csv`,
  adminAccounts: "/admin/accounts",
  adminAccountsPage: (q: string, page: number) => `/admin/accounts?${new URLSearchParams({ ...(q ? { q } : {}), ...(page > 1 ? { page: String(page) } : {}) }).toString()}`,
  adminAccount: (id: string) => `/admin/accounts/${encodeURIComponent(id)}`,
  adminSuspend: (id: string) => `/admin/accounts/${encodeURIComponent(id)}/suspend`,
  adminUnsuspend: (id: string) => `/admin/accounts/${encodeURIComponent(id)}/unsuspend`,
  adminAccountPlan: (id: string) => `/admin/accounts/${encodeURIComponent(id)}/plan`,
  adminPlans: "/admin/plans",
  adminInvoices: "/admin/invoices",
  adminInvoicesMonth: (month: string) => `/admin/invoices?month=${encodeURIComponent(month)}`,
  adminInvoicesCsv: (month: string) => `/admin/invoices.csv?month=${encodeURIComponent(month)}`,
  adminInvoiceStatus: (id: string) => `/admin/invoices/${encodeURIComponent(id)}/status`,
  adminUsage: "/admin/usage",
  adminMail: "/admin/mail",
  adminProducts: "/admin/products",
  adminProductRemoved: (id: string) => `/admin/products?removed=${encodeURIComponent(id)}`,
  adminProduct: (id: string) => `/admin/products/${encodeURIComponent(id)}`,
  adminProductDone: (id: string, done: string, version?: number) =>
    `/admin/products/${encodeURIComponent(id)}?${new URLSearchParams({ done, ...(version === undefined ? {} : { version: String(version) }) }).toString()}`,
  adminProductVersions: (id: string) => `/admin/products/${encodeURIComponent(id)}/versions`,
  adminProductActivate: (id: string, version: number) => `/admin/products/${encodeURIComponent(id)}/versions/${version}/activate`,
  adminProductSpec: (id: string, version: number) => `/admin/products/${encodeURIComponent(id)}/versions/${version}/spec.json`,
  adminProductSecret: (id: string) => `/admin/products/${encodeURIComponent(id)}/secret`,
  adminProductRemove: (id: string) => `/admin/products/${encodeURIComponent(id)}/remove`,
  reportLeak: "/portal/leaks",
  leakPolicy: "/portal/settings/leaks",
  adminLeaks: "/admin/leaks",
  adminLeaksFloor: "/admin/leaks/floor",
  adminLeaksFloorSaved: "/admin/leaks?done=floor",
};

/** Every message for a field (a list's entries too: `ipAllowlist.1`), joined: all of them at once. */
export function errorFor(errors: FieldError[] | undefined, field: string): string | undefined {
  const messages = (errors ?? []).filter((e) => e.field === field || e.field.startsWith(field + ".")).map((e) => e.message);
  return messages.length ? [...new Set(messages)].join("; ") : undefined;
}

/** A labelled input (or textarea) with its error message beside it (aria-describedby ties them together). */
export function Field(props: {
  name: string;
  label: string;
  type?: string;
  value?: string | number | null;
  error?: string;
  hint?: string;
  required?: boolean;
  autocomplete?: string;
  min?: number;
  max?: number;
  multiline?: boolean;
}) {
  const id = `f-${props.name}`;
  const value = props.value === null || props.value === undefined ? undefined : String(props.value);
  const described = props.error ? `${id}-error` : undefined;
  return (
    <div class={props.error ? "field invalid" : "field"}>
      <label for={id} safe>
        {props.label}
      </label>
      {props.multiline ? (
        <textarea id={id} name={props.name} rows="3" aria-invalid={props.error ? "true" : undefined} aria-describedby={described} safe>
          {value ?? ""}
        </textarea>
      ) : (
        <input
          id={id}
          name={props.name}
          type={props.type ?? "text"}
          value={value}
          required={props.required}
          autocomplete={props.autocomplete}
          min={props.min === undefined ? undefined : String(props.min)}
          max={props.max === undefined ? undefined : String(props.max)}
          aria-invalid={props.error ? "true" : undefined}
          aria-describedby={described}
        />
      )}
      {props.hint ? (
        <small class="hint" safe>
          {props.hint}
        </small>
      ) : (
        ""
      )}
      {props.error ? (
        <small class="error" id={described} safe>
          {props.error}
        </small>
      ) : (
        ""
      )}
    </div>
  );
}

export function Badge(props: { kind: string; children?: Children }) {
  return <span class={`badge badge-${props.kind}`}>{props.children}</span>;
}

export function CsrfField(props: { token: string }) {
  return <input type="hidden" name="_csrf" value={props.token} />;
}

/** An instant as canonical ISO 8601 in UTC (`2026-03-01T09:05:00.000Z`), or null when it does not parse. */
function utcInstant(iso: string): string | null {
  const t = Date.parse(iso);
  return Number.isNaN(t) ? null : new Date(t).toISOString();
}

/**
 * "2026-03-01 09:05 UTC": readable without JavaScript and labelled UTC (an offset such as
 * +02:00 is converted). A value that is not an instant (a bare date) keeps its first 16 characters.
 */
export function formatDate(iso: string | null | undefined): string {
  if (!iso) return "—";
  const utc = iso.includes("T") ? utcInstant(iso) : null;
  return utc ? `${utc.slice(0, 10)} ${utc.slice(11, 16)} UTC` : `${iso.replace("T", " ").slice(0, 16)} UTC`;
}

/**
 * An instant: `<time datetime="…Z">2026-03-01 09:05 UTC</time>`, which static/app.js rewrites
 * into the reader's own time zone (also in fragments htmx swaps in). Without JavaScript the
 * UTC text stays. The datetime attribute is the re-serialised instant, never the input text.
 *
 * @example <td><Time iso={k.lastUsedAt} /></td>
 */
export function Time(props: { iso: string | null | undefined }): JSX.Element {
  const utc = props.iso && props.iso.includes("T") ? utcInstant(props.iso) : null;
  if (!utc) return Html.escapeHtml(formatDate(props.iso));
  return (
    <time datetime={utc} safe>
      {formatDate(utc)}
    </time>
  );
}

/**
 * A table that scrolls sideways inside its own box on a narrow screen instead of widening the
 * page. (Tables outside this wrapper get the same behaviour from app.css on narrow screens.)
 */
export function TableScroll(props: { children?: Children }) {
  return <div class="table-scroll">{props.children}</div>;
}

export function formatCount(n: number): string {
  return n.toLocaleString("en-US");
}

/** US cents as dollars: 5800 → "$58.00", 150 → "$1.50" (money is integer cents everywhere). */
export function formatCents(cents: number): string {
  const sign = cents < 0 ? "−" : "";
  const abs = Math.abs(Math.trunc(cents));
  return `${sign}$${Math.floor(abs / 100).toLocaleString("en-US")}.${String(abs % 100).padStart(2, "0")}`;
}

/** "3 h 12 min", "1 h", "2 d 4 h", "1 d": time left until an instant, in whole minutes rounded up. */
export function timeLeft(iso: string | null, now: number): string {
  if (!iso) return "";
  // Round once, then split: rounding the minutes alone turned 59 min 59 s into "60 min".
  const minutes = Math.ceil(Math.max(0, new Date(iso).getTime() - now) / 60_000);
  const d = Math.floor(minutes / 1440);
  const h = Math.floor((minutes % 1440) / 60);
  const m = minutes % 60;
  if (d > 0) return h ? `${d} d ${h} h` : `${d} d`;
  if (h > 0) return m ? `${h} h ${m} min` : `${h} h`;
  return `${m} min`;
}

export const escape = (v: unknown) => Html.escapeHtml(String(v));


/** An operator's short audit log (an account's, a product's): when, what in words and as the action, who, from where. */
export function EventsTable(props: { events: { createdAt: string; summary: string; action: string; actor: string; ip: string | null }[] }) {
  if (props.events.length === 0) return <p class="muted">No events.</p>;
  return (
    <TableScroll>
      <table class="audit">
        <thead>
          <tr>
            <th scope="col">When</th>
            <th scope="col">What</th>
            <th scope="col">Who</th>
            <th scope="col">IP</th>
          </tr>
        </thead>
        <tbody>
          {props.events.map((e) => (
            <tr>
              <td class="when">
                <Time iso={e.createdAt} />
              </td>
              <td>
                <span safe>{e.summary}</span> <code class="muted" safe>{e.action}</code>
              </td>
              <td safe>{e.actor}</td>
              <td safe>{e.ip ?? "—"}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </TableScroll>
  );
}
