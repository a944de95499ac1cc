/** @jsxImportSource @kitajs/html */
import { escape, paths, Time } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";

/** An audit event as people read it: a sentence, the key's name, the actor's email. */
export interface AuditRow {
  id: string;
  action: string;
  summary: string;
  /** Who: an email, a key's name, "the command line". */
  actor: string;
  key: { id: string; name: string; display: string } | null;
  ip: string | null;
  /** The raw record, behind a details toggle. */
  changes: Record<string, unknown>;
  createdAt: string;
}

export interface AuditPageProps {
  session: PageSession;
  events: AuditRow[];
  filters: { action?: string; keyId?: string };
  actions: string[];
  keys: { id: string; name: string; display: string }[];
  nextCursor: string | null;
}

export function AuditPage(props: AuditPageProps) {
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
              {`${k.name} (${k.display})`}
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
              <th scope="col">What</th>
              <th scope="col">Key</th>
              <th scope="col">Who</th>
              <th scope="col">IP</th>
            </tr>
          </thead>
          <tbody>
            {props.events.map((e) => (
              <tr>
                <td class="when">
                  <Time iso={e.createdAt} />
                </td>
                <td>
                  <span safe>{e.summary}</span>
                  <details class="raw">
                    <summary safe>{e.action}</summary>
                    <pre class="changes">{escape(JSON.stringify({ id: e.id, keyId: e.key?.id ?? null, ...e.changes }, null, 2))}</pre>
                  </details>
                </td>
                <td>
                  {e.key ? (
                    <a href={paths.key(e.key.id)}>
                      <span safe>{e.key.name}</span> <code safe>{e.key.display}</code>
                    </a>
                  ) : (
                    "—"
                  )}
                </td>
                <td safe>{e.actor}</td>
                <td safe>{e.ip ?? "—"}</td>
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
