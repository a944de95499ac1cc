/** @jsxImportSource @kitajs/html */
import type { DailyByEnvironment, OperatorAccountRow } from "../../src/admin/queries.ts";
import type { CurrentPlan, InvoiceView, Plan, PlanChangeKind } from "../../src/billing/model.ts";
import type { KeyView } from "../../src/keys/model.ts";
import type { AuditRow } from "../audit/audit.tsx";
import { InvoiceTable } from "../billing/billing.tsx";
import { planSummary } from "../billing/pricing.tsx";
import { Badge, CsrfField, EventsTable, Field, TableScroll, Time, formatCount, paths } from "../components.tsx";
import { StatusBadge } from "../keys/keys.tsx";
import { Layout, type PageSession } from "../layout.tsx";
import { AccountStatusBadge, OperatorBadge } from "./accounts.tsx";
import { AdminNav } from "./nav.tsx";
import { twoFactorPaths } from "../accounts/twofactor.tsx";
import { LiveTestCharts } from "./usage.tsx";

/** What an operator's action did, said at the top of the page after the redirect. */
export type AccountDone = "suspended" | "unsuspended" | "two_factor_reset" | PlanChangeKind;

export interface AccountPageProps {
  session: PageSession;
  account: OperatorAccountRow;
  plan: CurrentPlan;
  plans: Plan[];
  rule: string;
  keys: KeyView[];
  usage: DailyByEnvironment[];
  invoices: InvoiceView[];
  events: AuditRow[];
  now: number;
  done?: AccountDone;
  /** A refused suspension: the reason as typed, the message beside it. */
  suspendForm?: { reason: string; error: string };
  /** A refused plan change. */
  planError?: string;
  /** Whether the account has two-factor sign-in on (src/accounts/twofactor.ts). */
  twoFactor: { enabled: boolean; enabledAt: string | null };
}

function doneMessage(done: AccountDone, p: AccountPageProps): string {
  switch (done) {
    case "suspended":
      return "Suspended: the account's keys answer 403 account_suspended from their next request, on every instance.";
    case "unsuspended":
      return "Suspension lifted: the account's keys work again.";
    case "two_factor_reset":
      return "Two-factor sign-in reset: it is off for the account, and every session of it was signed out. Its user signs in with the password (and enrols again where it is required).";
    case "upgrade":
      return `Plan changed: the account is on ${p.plan.plan.name} from now on.`;
    case "downgrade":
      return p.plan.scheduled ? `Scheduled: the account moves to ${p.plan.scheduled.toPlan.name} on ${p.plan.scheduled.effectiveAt.slice(0, 10)}.` : `The account is on ${p.plan.plan.name}.`;
    case "cancel":
      return `The scheduled change is withdrawn: the account stays on ${p.plan.plan.name}.`;
    case "same":
      return `Nothing changed: the account is on ${p.plan.plan.name}.`;
  }
}

/** One account for an operator: its facts, keys, usage, invoices and audit log; suspend / unsuspend and change plan. */
export function AccountPage(props: AccountPageProps) {
  const a = props.account;
  const p = props.plan;
  return (
    <Layout title={`Account ${a.email}`} session={props.session} active="operator">
      <h1 safe>{a.email}</h1>
      <AdminNav active="accounts" />
      <p>
        <a href={paths.adminAccounts}>← Accounts</a>
      </p>
      {props.done ? (
        <p class="card notice" role="status" safe>
          {doneMessage(props.done, props)}
        </p>
      ) : (
        ""
      )}
      <section class="card">
        <dl class="facts">
          <dt>Account</dt>
          <dd>
            <code safe>{a.id}</code>
            <OperatorBadge operator={a.operator} />
          </dd>
          <dt>Status</dt>
          <dd>
            <AccountStatusBadge suspendedAt={a.suspendedAt} />
            {a.suspendedAt ? (
              <>
                {" "}
                since <Time iso={a.suspendedAt} />
              </>
            ) : (
              ""
            )}
          </dd>
          {a.suspendedAt ? (
            <>
              <dt>Reason</dt>
              <dd safe>{a.suspendedReason ?? ""}</dd>
            </>
          ) : (
            ""
          )}
          <dt>Plan</dt>
          <dd>
            <strong safe>{p.plan.name}</strong> — <span safe>{planSummary(p.plan)}</span>
            {p.scheduled ? (
              <>
                <br />
                <span safe>{`Changes to ${p.scheduled.toPlan.name} on`}</span> <Time iso={p.scheduled.effectiveAt} />
              </>
            ) : (
              ""
            )}
          </dd>
          <dt>Two-factor sign-in</dt>
          <dd>
            {props.twoFactor.enabled ? (
              <>
                On since <Time iso={props.twoFactor.enabledAt} />
              </>
            ) : (
              "Off"
            )}
          </dd>
          <dt>Calls this month</dt>
          <dd safe>{`${formatCount(a.callsThisMonth)} (live keys, successful)`}</dd>
          <dt>Active keys</dt>
          <dd safe>{formatCount(a.activeKeys)}</dd>
          <dt>Last activity</dt>
          <dd>
            <Time iso={a.lastActivityAt} />
          </dd>
          <dt>Created</dt>
          <dd>
            <Time iso={a.createdAt} />
          </dd>
        </dl>
      </section>

      <section class="card">
        <h2>Usage, last 30 days</h2>
        <LiveTestCharts id="account-usage" days={props.usage} />
      </section>

      <section class="card">
        <h2>Keys</h2>
        {props.keys.length ? (
          <TableScroll>
            <table>
              <thead>
                <tr>
                  <th scope="col">Name</th>
                  <th scope="col">Key</th>
                  <th scope="col">Environment</th>
                  <th scope="col">Status</th>
                  <th scope="col">Scopes</th>
                  <th scope="col">Last used</th>
                </tr>
              </thead>
              <tbody>
                {props.keys.map((k) => (
                  <tr>
                    <td safe>{k.name}</td>
                    <td>
                      <code safe>{k.display}</code>
                    </td>
                    <td>
                      <Badge kind={k.environment}>
                        <span>{k.environment}</span>
                      </Badge>
                    </td>
                    <td>
                      <StatusBadge k={k} now={props.now} />
                    </td>
                    <td safe>{k.scopes.join(", ")}</td>
                    <td>
                      <Time iso={k.lastUsedAt} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableScroll>
        ) : (
          <p class="muted">No keys.</p>
        )}
      </section>

      <section class="card">
        <h2>Invoices</h2>
        <InvoiceTable invoices={props.invoices} link={(i) => paths.adminInvoicesMonth(i.month)} />
      </section>

      <section class="card">
        <h2>Change plan</h2>
        <p class="rule" safe>
          {props.rule}
        </p>
        <form method="post" action={paths.adminAccountPlan(a.id)} class="filters">
          <CsrfField token={props.session.csrfToken} />
          <label for="f-plan">Plan</label>
          <select id="f-plan" name="plan" aria-invalid={props.planError ? "true" : undefined} aria-describedby={props.planError ? "f-plan-error" : undefined}>
            {props.plans.map((pl) => (
              <option value={pl.id} selected={pl.id === p.plan.id} safe>
                {pl.id === p.plan.id ? `${pl.name} (current)` : pl.name}
              </option>
            ))}
          </select>
          <button type="submit">Change plan</button>
          {props.planError ? (
            <small class="error" id="f-plan-error" safe>
              {props.planError}
            </small>
          ) : (
            ""
          )}
        </form>
      </section>

      <section class="card">
        <h2>Recent audit events</h2>
        <EventsTable events={props.events} />
      </section>

      <section class="card danger-zone" id="two-factor-reset">
        <h2>Reset two-factor sign-in</h2>
        <p>For a user who lost both the device and the recovery codes: turns two-factor sign-in off for the account and signs out every session of it. Make sure who asks is the account's owner.</p>
        <form method="post" action={twoFactorPaths.adminReset(a.id)} hx-confirm="Reset two-factor sign-in of this account and sign out its sessions?">
          <CsrfField token={props.session.csrfToken} />
          <button type="submit" class="danger">
            Reset two-factor sign-in
          </button>
        </form>
      </section>

      <section class="card danger-zone">
        {a.suspendedAt ? (
          <>
            <h2>Lift the suspension</h2>
            <p>The account's keys work again from their next request.</p>
            <form method="post" action={paths.adminUnsuspend(a.id)}>
              <CsrfField token={props.session.csrfToken} />
              <button type="submit">Unsuspend</button>
            </form>
          </>
        ) : (
          <>
            <h2>Suspend</h2>
            <p>Every key of the account answers 403 account_suspended from its next request, on every instance. Its users see the reason on every page of the portal.</p>
            <form method="post" action={paths.adminSuspend(a.id)} hx-confirm="Suspend this account? Its keys stop working at once.">
              <CsrfField token={props.session.csrfToken} />
              <Field name="reason" label="Reason (shown to the account's users)" multiline required value={props.suspendForm?.reason} error={props.suspendForm?.error} />
              <button type="submit" class="danger">
                Suspend the account
              </button>
            </form>
          </>
        )}
      </section>
    </Layout>
  );
}
