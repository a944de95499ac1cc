/** @jsxImportSource @kitajs/html */
import type { ComplianceReport } from "../../src/rotation/compliance.ts";
import { Badge, formatCount, formatDate, paths, timeLeft } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";

export function CompliancePage(props: { session: PageSession; report: ComplianceReport; now: number; operator: boolean }) {
  const r = props.report;
  return (
    <Layout title={props.operator ? "Compliance (all accounts)" : "Compliance"} session={props.session} active="compliance">
      <h1>{props.operator ? "Compliance across all accounts" : "Compliance"}</h1>
      <dl class="stats card">
        <div>
          <dt>Keys in use</dt>
          <dd safe>{formatCount(r.total)}</dd>
        </div>
        <div>
          <dt>Within policy</dt>
          <dd safe>{`${r.percentWithinPolicy} %`}</dd>
        </div>
        <div>
          <dt>Over the maximum age</dt>
          <dd safe>{formatCount(r.overPolicy)}</dd>
        </div>
        <div>
          <dt>Rotations in flight</dt>
          <dd safe>{formatCount(r.inFlight)}</dd>
        </div>
      </dl>
      <section class="card">
        <h2>Keys by age</h2>
        <table>
          <tbody>
            {r.byAge.map((b) => (
              <tr>
                <th scope="row" safe>
                  {b.label}
                </th>
                <td safe>{formatCount(b.count)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
      <section class="card">
        <h2>Keys</h2>
        <p>
          <a href={props.operator ? paths.adminComplianceCsv : paths.complianceCsv} download="compliance.csv">
            Download CSV
          </a>
        </p>
        <table>
          <thead>
            <tr>
              <th scope="col">Key</th>
              {props.operator ? <th scope="col">Account</th> : ""}
              <th scope="col">Age</th>
              <th scope="col">Policy</th>
              <th scope="col">Rotation in flight</th>
            </tr>
          </thead>
          <tbody>
            {r.rows.map((k) => (
              <tr>
                <td>
                  {props.operator ? (
                    <span safe>{k.name}</span>
                  ) : (
                    <a href={paths.key(k.keyId)} safe>
                      {k.name}
                    </a>
                  )}
                </td>
                {props.operator ? <td safe>{k.email}</td> : ""}
                <td safe>{`${k.ageDays} d`}</td>
                <td>
                  {k.overPolicy ? (
                    <Badge kind="revoked">
                      <span safe>{`over ${k.maxAgeDays} d`}</span>
                    </Badge>
                  ) : (
                    <Badge kind="active">
                      <span>within</span>
                    </Badge>
                  )}
                </td>
                <td safe>
                  {k.rotationState === "scheduled"
                    ? `scheduled for ${formatDate(k.rotationDueAt)}`
                    : k.rotationState === "grace_period"
                      ? `grace: ${timeLeft(k.rotationDueAt, props.now)} left`
                      : "—"}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </section>
    </Layout>
  );
}
