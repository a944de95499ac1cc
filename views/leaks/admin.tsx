/** @jsxImportSource @kitajs/html */
import type { FieldError } from "../../src/errors.ts";
import type { LeakOutcome, LeakPolicy, LeakSource } from "../../src/leaks/leaks.sql.ts";
import { AdminNav } from "../admin/nav.tsx";
import { Badge, CsrfField, TableScroll, Time, errorFor, formatCount, paths } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";

/** One report as operators see it: who reported it too, and whose key it is. */
export interface AdminLeakRow {
  id: string;
  createdAt: string;
  source: LeakSource;
  display: string;
  url: string | null;
  /** `account:acct_…`, `key:key_…`, `github`, `cli` … */
  reporter: string;
  /** The key's owner, once the report was processed and the key is one of ours. */
  accountId: string | null;
  outcome: LeakOutcome;
  action: string | null;
}

export interface AdminLeaksPageProps {
  session: PageSession;
  reports: AdminLeakRow[];
  /** How many `reports` can hold: the page says when it shows only the latest. */
  limit: number;
  floor: LeakPolicy;
  /** The floor was just saved. */
  saved?: boolean;
  floorErrors?: FieldError[];
}

const FLOOR_TEXT: Record<LeakPolicy, string> = {
  notify: "None: each account's own policy applies",
  rotate: "At least rotate: no account is only notified",
  revoke: "Revoke: every leaked live key is revoked at once",
};

/** The account in a reporter such as `account:acct_…`, for a link to its page. */
const reporterAccount = (reporter: string) => (reporter.startsWith("account:") ? reporter.slice("account:".length) : null);

/** Who reported it: an account links to its page; anything else is shown as recorded. */
function Reporter(props: { reporter: string }) {
  const account = reporterAccount(props.reporter);
  if (account) {
    return (
      <a href={paths.adminAccount(account)}>
        <code safe>{props.reporter}</code>
      </a>
    );
  }
  return <code safe>{props.reporter}</code>;
}

function FloorForm(props: { floor: LeakPolicy; csrf: string; saved?: boolean; errors?: FieldError[] }) {
  const error = errorFor(props.errors, "floor");
  return (
    <form method="post" action={paths.adminLeaksFloor} class="card narrow" id="leak-floor">
      <h2>Floor for every account</h2>
      <p>Each account chooses what a leak of one of its live keys does (notify, rotate, revoke; rotate by default). A floor makes a weaker choice the floor instead.</p>
      {props.saved ? (
        <p class="ok" role="status">
          Floor saved.
        </p>
      ) : (
        ""
      )}
      <CsrfField token={props.csrf} />
      <fieldset class={error ? "field invalid" : "field"}>
        <legend>Leak policy floor</legend>
        {(["notify", "rotate", "revoke"] as const).map((p) => (
          <label class="check">
            <input type="radio" name="floor" value={p} checked={props.floor === p} />
            <span safe>{FLOOR_TEXT[p]}</span>
          </label>
        ))}
        {error ? (
          <small class="error" safe>
            {error}
          </small>
        ) : (
          ""
        )}
      </fieldset>
      <button type="submit">Save floor</button>
    </form>
  );
}

/**
 * Every leak report, newest first, from every source (GitHub's and GitLab's scanners, people
 * in the portal and the API, `keyport scan --report`), with what was done, and the floor.
 * A reported URL is text, never a link: it is whatever the reporter sent.
 */
export function AdminLeaksPage(props: AdminLeaksPageProps) {
  return (
    <Layout title="Leaks" session={props.session} active="operator">
      <h1>Leaked keys</h1>
      <AdminNav active="leaks" />
      <FloorForm floor={props.floor} csrf={props.session.csrfToken} saved={props.saved} errors={props.floorErrors} />
      <section class="card">
        <h2>Reports</h2>
        <p class="muted" safe>
          {props.reports.length >= props.limit ? `The latest ${formatCount(props.limit)} reports, newest first.` : `${formatCount(props.reports.length)} ${props.reports.length === 1 ? "report" : "reports"}, newest first.`}
        </p>
        {props.reports.length ? (
          <TableScroll>
            <table class="leaks">
              <thead>
                <tr>
                  <th scope="col">When</th>
                  <th scope="col">Source</th>
                  <th scope="col">Key</th>
                  <th scope="col">Seen at</th>
                  <th scope="col">Reporter</th>
                  <th scope="col">Outcome</th>
                  <th scope="col">Action</th>
                </tr>
              </thead>
              <tbody>
                {props.reports.map((r) => (
                  <tr id={`leak-${r.id}`}>
                    <td class="when">
                      <Time iso={r.createdAt} />
                    </td>
                    <td>{r.source}</td>
                    <td>
                      <code safe>{r.display}</code>
                      {r.accountId ? (
                        <>
                          {" "}
                          <a href={paths.adminAccount(r.accountId)} class="muted">
                            owner
                          </a>
                        </>
                      ) : (
                        ""
                      )}
                    </td>
                    <td>
                      <code class="leak-url" safe>
                        {r.url ?? "—"}
                      </code>
                    </td>
                    <td>
                      <Reporter reporter={r.reporter} />
                    </td>
                    <td>
                      <Badge kind={`leak-${r.outcome}`}>
                        <span safe>{r.outcome.replace("_", " ")}</span>
                      </Badge>
                    </td>
                    <td safe>{r.action ?? "—"}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableScroll>
        ) : (
          <p class="muted">No key has been reported.</p>
        )}
      </section>
    </Layout>
  );
}
