/** @jsxImportSource @kitajs/html */
import type { Children } from "@kitajs/html";
import type { InvoiceLine, InvoiceView, MonthMeter, Plan, PlanChangeKind, PlanChangePreview } from "../../src/billing/model.ts";
import { monthDays, secondsInMonth } from "../../src/billing/invoices.ts";
import { Badge, CsrfField, TableScroll, Time, formatCents, formatCount, paths } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";
import { planSummary } from "./pricing.tsx";

/** "2026-11-01 – 2026-11-30 (UTC)": a month as its first and last day. */
export function monthPeriod(month: string): string {
  const { first, last } = monthDays(month);
  return `${first} – ${last} (UTC)`;
}

/** A percentage for people: whole when it is, else one decimal ("12 %", "33.3 %"). */
function percent(part: number, whole: number): string {
  if (whole <= 0) return "—";
  const p = Math.round((part / whole) * 1000) / 10;
  return `${Number.isInteger(p) ? p : p.toFixed(1)} %`;
}

/** An invoice line's quantity in words: the share of the month on a plan, or the calls over. */
export function lineQuantity(line: InvoiceLine, month: string): string {
  if (line.kind === "overage") return `${formatCount(line.quantity)} calls`;
  return `${percent(line.quantity, secondsInMonth(month))} of the month`;
}

export function InvoiceStatusBadge(props: { status: InvoiceView["status"] }) {
  return (
    <Badge kind={`invoice-${props.status}`}>
      <span>{props.status}</span>
    </Badge>
  );
}

/** The meter of the month: used of included with a bar, the cap or the overage price, the projection. */
export function MonthMeterCard(props: { meter: MonthMeter }) {
  const m = props.meter;
  const max = Math.max(1, m.included);
  const over = Math.max(0, m.used - m.included);
  return (
    <section class="card" id="meter" aria-labelledby="meter-title">
      <h2 id="meter-title" safe>
        {`This month (${m.month})`}
      </h2>
      <p>
        Plan: <strong safe>{m.plan.name}</strong> — <span safe>{planSummary(m.plan)}</span>
      </p>
      <div class="meter-row">
        <label for="calls-meter">Calls used</label>
        <meter id="calls-meter" min="0" max={String(max)} low={String(Math.floor(max * 0.8))} high={String(max)} optimum="0" value={String(Math.min(m.used, max))}>
          <span safe>{`${formatCount(m.used)} of ${formatCount(m.included)}`}</span>
        </meter>
        <span class="meter-text" safe>
          {`${formatCount(m.used)} of ${formatCount(m.included)} included calls (${percent(m.used, m.included)})`}
        </span>
      </div>
      {m.hardCap ? (
        <p class={m.used >= m.included ? "form-error" : "muted"} safe>
          {m.used >= m.included
            ? `Hard cap reached: calls with live keys answer 429 quota_exceeded until the month turns (${m.endsAt.slice(0, 10)}). Upgrade to keep serving.`
            : `Hard cap: past ${formatCount(m.included)} calls this month, calls with live keys answer 429 quota_exceeded until the month turns.`}
        </p>
      ) : (
        <p class="muted" safe>
          {over > 0
            ? `${formatCount(over)} calls over the included ones so far, billed at ${formatCents(m.plan.overageCentsPer1000 ?? 0)} per started 1,000.`
            : `Calls over the included ones are billed at ${formatCents(m.plan.overageCentsPer1000 ?? 0)} per started 1,000; the API keeps serving.`}
        </p>
      )}
      <dl class="stats">
        <div>
          <dt>Projected calls</dt>
          <dd safe>{formatCount(m.projectedCalls)}</dd>
        </div>
        <div>
          <dt>Projected cost</dt>
          <dd safe>{formatCents(m.projectedCents)}</dd>
        </div>
        <div>
          <dt>Cost so far</dt>
          <dd safe>{formatCents(m.costSoFarCents)}</dd>
        </div>
        <div>
          <dt>Month ends</dt>
          <dd>
            <Time iso={m.endsAt} />
          </dd>
        </div>
      </dl>
      <p class="muted">Projected at the current pace: the calls so far divided by the share of the month gone by. Test keys are never counted.</p>
    </section>
  );
}

const KIND_TITLE: Record<PlanChangeKind, (to: string) => string> = {
  upgrade: (to) => `Upgrade to ${to}`,
  downgrade: (to) => `Downgrade to ${to}`,
  cancel: (to) => `Stay on ${to}`,
  same: (to) => `You are on ${to}`,
};

/**
 * The effect of a plan change before it is made: this month with and without it, next month,
 * and the Confirm form. The fragment htmx swaps into #plan-preview; also the body of the
 * preview page without JavaScript.
 */
export function PlanPreview(props: { preview: PlanChangePreview; csrfToken: string }) {
  const p = props.preview;
  return (
    <div id="plan-preview" class="preview" aria-live="polite">
      <h3 safe>{KIND_TITLE[p.kind](p.to.name)}</h3>
      <p class="rule" safe>
        {p.rule}
      </p>
      {p.kind === "same" ? (
        ""
      ) : (
        <>
          {p.kind === "downgrade" ? (
            <p>
              Takes effect <Time iso={p.effectiveAt} />, the start of next month.
            </p>
          ) : (
            <p>Takes effect at once.</p>
          )}
          <TableScroll>
            <table class="preview-table">
              <caption class="visually-hidden">This month and next month, with and without the change</caption>
              <thead>
                <tr>
                  <td></td>
                  <th scope="col">Without the change</th>
                  <th scope="col">With the change</th>
                </tr>
              </thead>
              <tbody>
                <tr>
                  <th scope="row">This month's base fee</th>
                  <td safe>{formatCents(p.thisMonthWithoutChange.baseCents)}</td>
                  <td safe>{formatCents(p.thisMonth.baseCents)}</td>
                </tr>
                <tr>
                  <th scope="row">This month's included calls</th>
                  <td safe>{formatCount(p.thisMonthWithoutChange.includedCalls)}</td>
                  <td safe>{formatCount(p.thisMonth.includedCalls)}</td>
                </tr>
                <tr>
                  <th scope="row" safe>
                    {`This month at the current pace (${formatCount(p.projectedCalls)} calls)`}
                  </th>
                  <td safe>{formatCents(p.thisMonthWithoutChange.projectedCents)}</td>
                  <td safe>{formatCents(p.thisMonth.projectedCents)}</td>
                </tr>
              </tbody>
            </table>
          </TableScroll>
          <p safe>
            {`Next month on ${p.kind === "upgrade" || p.kind === "downgrade" ? p.to.name : p.from.name}: ${formatCents(p.nextMonthCents)} base fee, about ${formatCents(p.nextMonthProjectedCents)} at this month's pace.`}
          </p>
          <form method="post" action={paths.billingPlan} class="actions-row">
            <CsrfField token={props.csrfToken} />
            <input type="hidden" name="plan" value={p.to.id} />
            <button type="submit" safe>
              {p.kind === "cancel" ? `Confirm: stay on ${p.to.name}` : `Confirm: ${p.kind} to ${p.to.name}`}
            </button>
            <a href={paths.billing}>Cancel</a>
          </form>
        </>
      )}
    </div>
  );
}

/** The refusal of a preview (an unknown plan), in the place of the preview. */
export function PlanPreviewError(props: { message: string }) {
  return (
    <div id="plan-preview" class="preview" aria-live="polite">
      <p class="form-error" role="alert" safe>
        {props.message}
      </p>
    </div>
  );
}

/** The plan form: choosing a plan asks for its preview (a GET: a page without JS, a fragment with htmx). */
function PlanChoice(props: { plans: Plan[]; current: string; selected?: string; rule: string; children?: Children }) {
  return (
    <section class="card" id="change-plan" aria-labelledby="change-plan-title">
      <h2 id="change-plan-title">Change plan</h2>
      <p class="rule" safe>
        {props.rule}
      </p>
      <form method="get" action={paths.billingChange} hx-get={paths.billingChange} hx-target="#plan-preview" hx-swap="outerHTML">
        <fieldset class="field">
          <legend>Plan</legend>
          {props.plans.map((p) => (
            <label class="check">
              <input type="radio" name="plan" value={p.id} checked={(props.selected || props.current) === p.id} required />
              <span>
                <strong safe>{p.name}</strong>
                {p.id === props.current ? " (your plan)" : ""} — <span safe>{planSummary(p)}</span>
              </span>
            </label>
          ))}
        </fieldset>
        <button type="submit">Preview the change</button> <a href={paths.pricing}>Compare the plans</a>
      </form>
      {props.children ? props.children : <div id="plan-preview" class="preview" aria-live="polite"></div>}
    </section>
  );
}

export function InvoiceTable(props: { invoices: InvoiceView[]; link: (i: InvoiceView) => string; csv?: (id: string) => string }) {
  if (props.invoices.length === 0) return <p class="muted">No invoices yet: the first is made when this month closes.</p>;
  return (
    <TableScroll>
      <table class="invoices">
        <thead>
          <tr>
            <th scope="col">Number</th>
            <th scope="col">Period</th>
            <th scope="col">Calls</th>
            <th scope="col">Total</th>
            <th scope="col">Status</th>
            {props.csv ? <th scope="col">CSV</th> : ""}
          </tr>
        </thead>
        <tbody>
          {props.invoices.map((i) => (
            <tr>
              <td>
                <a href={props.link(i)} safe>
                  {i.number}
                </a>
              </td>
              <td safe>{i.month}</td>
              <td safe>{formatCount(i.calls)}</td>
              <td class="amount" safe>
                {formatCents(i.totalCents)}
              </td>
              <td>
                <InvoiceStatusBadge status={i.status} />
              </td>
              {props.csv ? (
                <td>
                  <a href={props.csv(i.id)} download={`${i.number}.csv`} safe>
                    {`${i.number}.csv`}
                  </a>
                </td>
              ) : (
                ""
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </TableScroll>
  );
}

export interface BillingPageProps {
  session: PageSession;
  meter: MonthMeter;
  plans: Plan[];
  invoices: InvoiceView[];
  rule: string;
  /** After a confirmed change: what happened, told from the state now. */
  changed?: PlanChangeKind;
}

/** What a confirmed change did, in a sentence (from the state after it). */
function changedMessage(kind: PlanChangeKind, m: MonthMeter): string {
  switch (kind) {
    case "upgrade":
      return `Done: your plan is now ${m.plan.name}, from now on.`;
    case "downgrade":
      return m.scheduled ? `Scheduled: your plan changes to ${m.scheduled.toPlan.name} at the start of next month (${m.scheduled.effectiveAt.slice(0, 10)}).` : `Your plan is ${m.plan.name}.`;
    case "cancel":
      return `Done: the scheduled change is withdrawn; you stay on ${m.plan.name}.`;
    case "same":
      return `Nothing changed: you are on ${m.plan.name}.`;
  }
}

export function BillingPage(props: BillingPageProps) {
  const m = props.meter;
  return (
    <Layout title="Billing" session={props.session} active="billing">
      <h1>Billing</h1>
      {props.changed ? (
        <p class="card notice" role="status" safe>
          {changedMessage(props.changed, m)}
        </p>
      ) : (
        ""
      )}
      {m.scheduled ? (
        <section class="card scheduled">
          <p>
            <strong>Scheduled change:</strong> <span safe>{`your plan changes from ${m.plan.name} to ${m.scheduled.toPlan.name} on`}</span> <Time iso={m.scheduled.effectiveAt} />.{" "}
            <a href={paths.billingPreview(m.plan.id)} safe>
              {`Keep ${m.plan.name} instead`}
            </a>
          </p>
        </section>
      ) : (
        ""
      )}
      <MonthMeterCard meter={m} />
      <PlanChoice plans={props.plans} current={m.plan.id} rule={props.rule} />
      <section class="card">
        <h2>Invoices</h2>
        <InvoiceTable invoices={props.invoices} link={(i) => paths.invoice(i.id)} csv={paths.invoiceCsv} />
      </section>
    </Layout>
  );
}

/** The preview as a page of its own (the plan form without JavaScript), with the form to choose again. */
export function PlanPreviewPage(props: { session: PageSession; plans: Plan[]; current: string; selected: string; rule: string; preview: PlanChangePreview | { error: string } }) {
  const p = props.preview;
  return (
    <Layout title="Change plan" session={props.session} active="billing">
      <h1>Change plan</h1>
      <p>
        <a href={paths.billing}>← Billing</a>
      </p>
      <PlanChoice plans={props.plans} current={props.current} selected={props.selected} rule={props.rule}>
        {"error" in p ? <PlanPreviewError message={p.error} /> : <PlanPreview preview={p} csrfToken={props.session.csrfToken} />}
      </PlanChoice>
    </Layout>
  );
}

/** An invoice as a printable page: number, status, period, lines, totals in dollars. */
export function InvoicePage(props: { session: PageSession; invoice: InvoiceView; email: string; back?: { href: string; label: string }; csv: string }) {
  const i = props.invoice;
  return (
    <Layout title={`Invoice ${i.number}`} session={props.session} active="billing">
      <p class="no-print">
        <a href={props.back?.href ?? paths.billing} safe>
          {`← ${props.back?.label ?? "Billing"}`}
        </a>
      </p>
      <article class="card invoice">
        <header class="invoice-head">
          <div>
            <h1>
              Invoice <span safe>{i.number}</span>
            </h1>
            <p class="muted">Keyport</p>
          </div>
          <InvoiceStatusBadge status={i.status} />
        </header>
        <dl class="facts">
          <dt>Number</dt>
          <dd safe>{i.number}</dd>
          <dt>Billed to</dt>
          <dd safe>{props.email}</dd>
          <dt>Period</dt>
          <dd safe>{monthPeriod(i.month)}</dd>
          <dt>Issued</dt>
          <dd>
            <Time iso={i.finalizedAt} />
          </dd>
          <dt>Status</dt>
          <dd>
            <span>{i.status}</span>
            {i.paidAt ? (
              <>
                {" "}
                (paid <Time iso={i.paidAt} />)
              </>
            ) : (
              ""
            )}
            {i.voidedAt ? (
              <>
                {" "}
                (voided <Time iso={i.voidedAt} />)
              </>
            ) : (
              ""
            )}
          </dd>
          <dt>Calls</dt>
          <dd safe>{`${formatCount(i.calls)} successful calls with live keys; ${formatCount(i.includedCalls)} included`}</dd>
          <dt>Currency</dt>
          <dd safe>{i.currency}</dd>
        </dl>
        <TableScroll>
          <table class="invoice-lines">
            <thead>
              <tr>
                <th scope="col">Description</th>
                <th scope="col">Quantity</th>
                <th scope="col" class="amount">
                  Amount
                </th>
              </tr>
            </thead>
            <tbody>
              {i.lines.map((l) => (
                <tr>
                  <td safe>{l.description}</td>
                  <td safe>{lineQuantity(l, i.month)}</td>
                  <td class="amount" safe>
                    {formatCents(l.amountCents)}
                  </td>
                </tr>
              ))}
            </tbody>
            <tfoot>
              <tr>
                <th scope="row" colspan="2">
                  Total
                </th>
                <td class="amount total" safe>
                  {`${formatCents(i.totalCents)} ${i.currency}`}
                </td>
              </tr>
            </tfoot>
          </table>
        </TableScroll>
        <p class="no-print">
          <a href={props.csv} download={`${i.number}.csv`}>
            Download CSV
          </a>{" "}
          · Print this page from your browser for a paper or PDF copy.
        </p>
      </article>
    </Layout>
  );
}
