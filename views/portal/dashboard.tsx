/** @jsxImportSource @kitajs/html */
import type { AccountOverview } from "../../src/usage/queries.ts";
import { UsageChart } from "../usage/chart.tsx";
import { formatCount, paths } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";

export function DashboardPage(props: { session: PageSession; overview: AccountOverview; activeKeys: number; origin: string; prefix: string }) {
  const o = props.overview;
  return (
    <Layout title="Dashboard" session={props.session} active="dashboard">
      <h1>Dashboard</h1>
      <dl class="stats card">
        <div>
          <dt>Active keys</dt>
          <dd safe>{formatCount(props.activeKeys)}</dd>
        </div>
        <div>
          <dt>Requests today</dt>
          <dd safe>{formatCount(o.today.successes + o.today.errors)}</dd>
        </div>
        <div>
          <dt>Requests this month</dt>
          <dd safe>{formatCount(o.month.successes + o.month.errors)}</dd>
        </div>
        <div>
          <dt>Error rate this month</dt>
          <dd safe>{`${(o.errorRate * 100).toFixed(1)} %`}</dd>
        </div>
      </dl>
      {props.activeKeys === 0 ? (
        <section class="card empty">
          <h2>Start here</h2>
          <p>
            You have no active key yet. <a href={paths.keys}>Create one</a>, then call the API with it:
          </p>
          <pre safe>{`curl -H "Authorization: Bearer ${props.prefix}_live_…" ${props.origin}/v1/email/someone@example.com`}</pre>
        </section>
      ) : (
        ""
      )}
      <section class="card">
        <h2>Last 7 days</h2>
        <UsageChart id="account-week" title="Daily requests of all your keys, last 7 days" days={o.daily} />
      </section>
    </Layout>
  );
}
