/** @jsxImportSource @kitajs/html */
import type { PlanUsage } from "../../src/admin/queries.ts";
import { overageText } from "../billing/pricing.tsx";
import { Badge, TableScroll, Time, formatCents, formatCount, paths } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";
import { AdminNav } from "./nav.tsx";

/** The plans (the plans file, and retired ones accounts may still be on) with how many accounts are on each. */
export function AdminPlansPage(props: { session: PageSession; plans: PlanUsage[] }) {
  return (
    <Layout title="Plans" session={props.session} active="operator">
      <h1>Plans</h1>
      <AdminNav active="plans" />
      <section class="card">
        <p>
          The plans come from the plans file (<code>PLANS_FILE</code>, or the shipped one), seeded into the database at every start; the public <a href={paths.pricing}>pricing page</a>{" "}
          shows the same figures.
        </p>
        <TableScroll>
          <table class="plans-admin">
            <thead>
              <tr>
                <th scope="col">Plan</th>
                <th scope="col">Price per month</th>
                <th scope="col">Included calls</th>
                <th scope="col">Over the included calls</th>
                <th scope="col">Requests/s</th>
                <th scope="col">Accounts</th>
                <th scope="col">Scheduled to move here</th>
              </tr>
            </thead>
            <tbody>
              {props.plans.map((p) => (
                <tr>
                  <th scope="row">
                    <span safe>{p.name}</span> <code class="muted" safe>{p.id}</code>
                    {p.retiredAt ? (
                      <>
                        {" "}
                        <Badge kind="retired">
                          <span>retired</span>
                        </Badge>{" "}
                        <Time iso={p.retiredAt} />
                      </>
                    ) : (
                      ""
                    )}
                  </th>
                  <td safe>{formatCents(p.priceCents)}</td>
                  <td safe>{formatCount(p.includedCalls)}</td>
                  <td safe>{overageText(p)}</td>
                  <td safe>{formatCount(p.requestsPerSecond)}</td>
                  <td safe>{formatCount(p.accounts)}</td>
                  <td safe>{formatCount(p.scheduled)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableScroll>
      </section>
    </Layout>
  );
}
