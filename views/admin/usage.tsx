/** @jsxImportSource @kitajs/html */
import type { DailyByEnvironment } from "../../src/admin/queries.ts";
import type { ComplianceReport } from "../../src/rotation/compliance.ts";
import { formatCount, paths } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";
import { UsageChart } from "../usage/chart.tsx";
import { AdminNav } from "./nav.tsx";

const total = (days: DailyByEnvironment[], env: "live" | "test") => days.reduce((n, d) => n + d[env].successes + d[env].errors, 0);

/** Daily requests with live keys and with test keys, as two charts (the usage chart of a key page). */
export function LiveTestCharts(props: { id: string; days: DailyByEnvironment[] }) {
  const from = props.days[0]?.day ?? "";
  const to = props.days.at(-1)?.day ?? "";
  return (
    <div class="charts">
      <h3 safe>{`Live keys: ${formatCount(total(props.days, "live"))} requests`}</h3>
      <UsageChart id={`${props.id}-live`} title={`Requests with live keys, ${from} to ${to}`} days={props.days.map((d) => ({ day: d.day, ...d.live }))} />
      <h3 safe>{`Test keys: ${formatCount(total(props.days, "test"))} requests`}</h3>
      <UsageChart id={`${props.id}-test`} title={`Requests with test keys, ${from} to ${to}`} days={props.days.map((d) => ({ day: d.day, ...d.test }))} />
    </div>
  );
}

/** Usage of every account, live and test apart, and the compliance summary. */
export function AdminUsagePage(props: { session: PageSession; days: DailyByEnvironment[]; compliance: ComplianceReport }) {
  const c = props.compliance;
  return (
    <Layout title="Usage (all accounts)" session={props.session} active="operator">
      <h1>Usage across all accounts</h1>
      <AdminNav active="usage" />
      <section class="card">
        <h2>Last 30 days</h2>
        <LiveTestCharts id="global-usage" days={props.days} />
      </section>
      <section class="card">
        <h2>Compliance</h2>
        <dl class="stats">
          <div>
            <dt>Keys in use</dt>
            <dd safe>{formatCount(c.total)}</dd>
          </div>
          <div>
            <dt>Within policy</dt>
            <dd safe>{`${c.percentWithinPolicy} %`}</dd>
          </div>
          <div>
            <dt>Over the maximum age</dt>
            <dd safe>{formatCount(c.overPolicy)}</dd>
          </div>
          <div>
            <dt>Rotations in flight</dt>
            <dd safe>{formatCount(c.inFlight)}</dd>
          </div>
        </dl>
        <p>
          <a href={paths.adminCompliance}>Every key's compliance</a>
        </p>
      </section>
    </Layout>
  );
}
