/** @jsxImportSource @kitajs/html */
import type { InvoiceWithEmail } from "../../src/billing/model.ts";
import { InvoiceStatusBadge, monthPeriod } from "../billing/billing.tsx";
import { CsrfField, TableScroll, formatCents, formatCount, paths } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";
import { AdminNav } from "./nav.tsx";

export interface AdminInvoicesProps {
  session: PageSession;
  month: string;
  invoices: InvoiceWithEmail[];
  /** A refused month or status change, at the top. */
  error?: string;
  /** After a status change: the invoice's number and its new status. */
  done?: { number: string; status: string };
}

const sum = (xs: InvoiceWithEmail[]) => xs.reduce((n, i) => n + i.totalCents, 0);

function StatusForm(props: { id: string; status: "paid" | "void"; csrf: string; label: string }) {
  return (
    <form method="post" action={paths.adminInvoiceStatus(props.id)} class="inline">
      <CsrfField token={props.csrf} />
      <input type="hidden" name="status" value={props.status} />
      <button type="submit" class={props.status === "void" ? "danger small" : "small"} safe>
        {props.label}
      </button>
    </form>
  );
}

/** A month's invoices: totals by status, mark paid / void, the CSV export. */
export function AdminInvoicesPage(props: AdminInvoicesProps) {
  const live = props.invoices.filter((i) => i.status !== "void");
  return (
    <Layout title={`Invoices ${props.month}`} session={props.session} active="operator">
      <h1 safe>{`Invoices, ${props.month}`}</h1>
      <AdminNav active="invoices" />
      {props.error ? (
        <p class="card form-error" role="alert" safe>
          {props.error}
        </p>
      ) : (
        ""
      )}
      {props.done ? (
        <p class="card notice" role="status" safe>
          {`Invoice ${props.done.number} is now ${props.done.status}.`}
        </p>
      ) : (
        ""
      )}
      <form method="get" action={paths.adminInvoices} class="filters card">
        <label for="f-month">Month</label>
        <input id="f-month" type="month" name="month" value={props.month} />
        <button type="submit">Show</button>
        <a href={paths.adminInvoicesCsv(props.month)} download={`invoices-${props.month}.csv`}>
          Download CSV
        </a>
      </form>
      <dl class="stats card">
        <div>
          <dt>Invoices</dt>
          <dd safe>{formatCount(props.invoices.length)}</dd>
        </div>
        <div>
          <dt>Billed (not void)</dt>
          <dd safe>{formatCents(sum(live))}</dd>
        </div>
        <div>
          <dt>Paid</dt>
          <dd safe>{formatCents(sum(live.filter((i) => i.status === "paid")))}</dd>
        </div>
        <div>
          <dt>Open</dt>
          <dd safe>{formatCents(sum(live.filter((i) => i.status === "open")))}</dd>
        </div>
      </dl>
      {props.invoices.length ? (
        <TableScroll>
          <table class="invoices">
            <caption class="visually-hidden" safe>
              {`Invoices for ${monthPeriod(props.month)}`}
            </caption>
            <thead>
              <tr>
                <th scope="col">Number</th>
                <th scope="col">Account</th>
                <th scope="col">Calls</th>
                <th scope="col">Included</th>
                <th scope="col">Total</th>
                <th scope="col">Status</th>
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {props.invoices.map((i) => (
                <tr>
                  <td safe>{i.number}</td>
                  <td>
                    <a href={paths.adminAccount(i.accountId)} safe>
                      {i.email}
                    </a>
                  </td>
                  <td safe>{formatCount(i.calls)}</td>
                  <td safe>{formatCount(i.includedCalls)}</td>
                  <td class="amount" safe>
                    {formatCents(i.totalCents)}
                  </td>
                  <td>
                    <InvoiceStatusBadge status={i.status} />
                  </td>
                  <td class="row-actions">
                    {i.status === "open" ? <StatusForm id={i.id} status="paid" csrf={props.session.csrfToken} label="Mark paid" /> : ""}
                    {i.status !== "void" ? <StatusForm id={i.id} status="void" csrf={props.session.csrfToken} label="Void" /> : "—"}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableScroll>
      ) : (
        <p class="card muted">
          No invoices for this month: it closes (once across instances) shortly after it ends, or with <code>keyport invoices close --month YYYY-MM</code>.
        </p>
      )}
    </Layout>
  );
}
