/** @jsxImportSource @kitajs/html */
import type { OperatorAccountRow } from "../../src/admin/queries.ts";
import { Badge, TableScroll, Time, formatCount, paths } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";
import { AdminNav } from "./nav.tsx";

export function AccountStatusBadge(props: { suspendedAt: string | null }) {
  return props.suspendedAt ? (
    <Badge kind="suspended">
      <span>suspended</span>
    </Badge>
  ) : (
    <Badge kind="active">
      <span>active</span>
    </Badge>
  );
}

/** " operator" after an account's name or id, when it is one. */
export function OperatorBadge(props: { operator: boolean }) {
  return props.operator ? (
    <>
      {" "}
      <Badge kind="operator">
        <span>operator</span>
      </Badge>
    </>
  ) : (
    ""
  );
}

export interface AccountsPageProps {
  session: PageSession;
  accounts: OperatorAccountRow[];
  /** Plan id → name (the catalog's, or the plans table's for a retired plan). */
  planNames: Record<string, string>;
  q: string;
  total: number;
  page: number;
  pages: number;
}

/** Every account (50 a page), searched by email: plan, active keys, calls this month, last activity, status. */
export function AccountsPage(props: AccountsPageProps) {
  return (
    <Layout title="Accounts" session={props.session} active="operator">
      <h1>Accounts</h1>
      <AdminNav active="accounts" />
      <form method="get" action={paths.adminAccounts} role="search" class="filters card">
        <label for="f-q">Email contains</label>
        <input id="f-q" type="search" name="q" value={props.q} maxlength="254" />
        <button type="submit">Search</button>
        <span class="muted" safe>
          {props.q ? `${formatCount(props.total)} matching` : `${formatCount(props.total)} accounts`}
        </span>
      </form>
      {props.accounts.length ? (
        <TableScroll>
          <table class="accounts">
            <thead>
              <tr>
                <th scope="col">Email</th>
                <th scope="col">Plan</th>
                <th scope="col">Active keys</th>
                <th scope="col">Calls this month</th>
                <th scope="col">Last activity</th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {props.accounts.map((a) => (
                <tr>
                  <td>
                    <a href={paths.adminAccount(a.id)} safe>
                      {a.email}
                    </a>
                    <OperatorBadge operator={a.operator} />
                  </td>
                  <td safe>{props.planNames[a.planId] ?? a.planId}</td>
                  <td safe>{formatCount(a.activeKeys)}</td>
                  <td safe>{formatCount(a.callsThisMonth)}</td>
                  <td>
                    <Time iso={a.lastActivityAt} />
                  </td>
                  <td>
                    <AccountStatusBadge suspendedAt={a.suspendedAt} />
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableScroll>
      ) : (
        <p class="card muted">No account matches.</p>
      )}
      {props.pages > 1 ? (
        <nav class="pager" aria-label="Pages">
          {props.page > 1 ? (
            <a href={paths.adminAccountsPage(props.q, props.page - 1)} rel="prev">
              ← Previous
            </a>
          ) : (
            ""
          )}
          <span safe>{`Page ${props.page} of ${props.pages}`}</span>
          {props.page < props.pages ? (
            <a href={paths.adminAccountsPage(props.q, props.page + 1)} rel="next">
              Next →
            </a>
          ) : (
            ""
          )}
        </nav>
      ) : (
        ""
      )}
    </Layout>
  );
}
