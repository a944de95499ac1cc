/** @jsxImportSource @kitajs/html */
import type { KeyView } from "../../src/keys/model.ts";
import { USAGE_RANGES, type UsageReport } from "../../src/usage/model.ts";
import { UsageChart } from "./chart.tsx";
import { TableScroll, formatCount, paths } from "../components.tsx";

function ms(v: number | null): string {
  return v === null ? "—" : `${v} ms`;
}

/** The usage fragment: switching the range swaps this element only (Vary: HX-Request). */
export function UsagePanel(props: { k: KeyView; usage: UsageReport }) {
  const u = props.usage;
  return (
    <section id="usage-panel" class="card">
      <div class="panel-head">
        <h2>Usage</h2>
        <nav class="ranges" aria-label="Range">
          {USAGE_RANGES.map((d) => (
            <a
              href={`${paths.key(props.k.id)}?days=${d}`}
              hx-get={paths.keyUsage(props.k.id, d)}
              hx-target="#usage-panel"
              hx-swap="outerHTML"
              hx-push-url={`${paths.key(props.k.id)}?days=${d}`}
              aria-current={u.days === d ? "true" : undefined}
              safe
            >
              {`${d} days`}
            </a>
          ))}
        </nav>
      </div>
      <dl class="stats">
        <div>
          <dt>Requests</dt>
          <dd safe>{formatCount(u.summary.total)}</dd>
        </div>
        <div>
          <dt>Error rate</dt>
          <dd safe>{`${(u.summary.errorRate * 100).toFixed(1)} %`}</dd>
        </div>
        <div>
          <dt>Average latency</dt>
          <dd safe>{ms(u.summary.avgLatencyMs)}</dd>
        </div>
        <div>
          <dt>p95 latency</dt>
          <dd safe>{ms(u.summary.p95LatencyMs)}</dd>
        </div>
      </dl>
      <UsageChart id={`usage-${props.k.id}`} title={`Daily requests of ${props.k.name}, last ${u.days} days`} days={u.daily} />
      <h3>Top endpoints</h3>
      {u.topEndpoints.length ? (
        <TableScroll>
          <table>
            <thead>
              <tr>
                <th scope="col">Endpoint</th>
                <th scope="col">Requests</th>
                <th scope="col">Errors</th>
              </tr>
            </thead>
            <tbody>
              {u.topEndpoints.map((e) => (
                <tr>
                  <td>
                    <code safe>{e.endpoint}</code>
                  </td>
                  <td safe>{formatCount(e.requests)}</td>
                  <td safe>{formatCount(e.errors)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </TableScroll>
      ) : (
        <p class="muted">No requests in this range yet.</p>
      )}
      <p>
        <a href={paths.keyUsageCsv(props.k.id, u.days)} download={`usage-${props.k.id}-${u.days}d.csv`}>
          Download CSV of the daily rows
        </a>
      </p>
    </section>
  );
}
