/** @jsxImportSource @kitajs/html */
import { escape, formatDate, paths } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";

export interface AuditRow {
  id: string;
  action: string;
  actor: string;
  keyId: string | null;
  ip: string | null;
  changes: Record<string, unknown>;
  createdAt: string;
}

export function AuditPage(props: {
  session: PageSession;
  events: AuditRow[];
  filters: { action?: string; keyId?: string };
  actions: string[];
  keys: { id: string; name: string }[];
  nextCursor: string | null;
}) {
  const f = props.filters;
  const next = props.nextCursor
    ? `${paths.audit}?${new URLSearchParams({ ...(f.action ? { action: f.action } : {}), ...(f.keyId ? { keyId: f.keyId } : {}), cursor: props.nextCursor }).toString()}`
    : null;
  return (
    <Layout title="Audit log" session={props.session} active="audit">
      <h1>Audit log</h1>
      <form method="get" action={paths.audit} class="filters card">
        <label for="f-action">Action</label>
        <select id="f-action" name="action">
          <option value="">all</option>
          {props.actions.map((a) => (
            <option value={a} selected={f.action === a} safe>
              {a}
            </option>
          ))}
        </select>
        <label for="f-key">Key</label>
        <select id="f-key" name="keyId">
          <option value="">all</option>
          {props.keys.map((k) => (
            <option value={k.id} selected={f.keyId === k.id} safe>
              {`${k.name} (${k.id})`}
            </option>
          ))}
        </select>
        <button type="submit">Filter</button>
      </form>
      {props.events.length ? (
        <table class="audit">
          <thead>
            <tr>
              <th scope="col">When</th>
              <th scope="col">Action</th>
              <th scope="col">Key</th>
              <th scope="col">Actor</th>
              <th scope="col">IP</th>
              <th scope="col">Changes</th>
            </tr>
          </thead>
          <tbody>
            {props.events.map((e) => (
              <tr>
                <td safe>{formatDate(e.createdAt)}</td>
                <td>
                  <code safe>{e.action}</code>
                </td>
                <td>
                  {e.keyId ? (
                    <a href={paths.key(e.keyId)} safe>
                      {e.keyId}
                    </a>
                  ) : (
                    "—"
                  )}
                </td>
                <td safe>{e.actor}</td>
                <td safe>{e.ip ?? "—"}</td>
                <td>
                  <code class="changes">{Object.keys(e.changes).length ? escape(JSON.stringify(e.changes)) : ""}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p class="card muted">No events match.</p>
      )}
      {next ? (
        <p>
          <a href={next} rel="next">
            Older events →
          </a>
        </p>
      ) : (
        ""
      )}
    </Layout>
  );
}
