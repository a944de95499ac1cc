/** @jsxImportSource @kitajs/html */
import type { SessionView } from "../../src/accounts/sessions.ts";
import { Badge, CsrfField, paths, TableScroll, Time } from "../components.tsx";

/** The sessions section's forms, under the settings page (src/accounts/sessions-portal.tsx). */
export const sessionPaths = {
  revoke: (id: string) => `${paths.settings}/sessions/${encodeURIComponent(id)}/revoke`,
  revokeOthers: `${paths.settings}/sessions/revoke-others`,
};

/** The account's signed-in browsers and clients, with a sign-out for each and for all the others. */
export interface SessionsSectionProps {
  sessions: SessionView[];
  /** Live sessions in all (the list shows the most recently seen of them). */
  total: number;
  csrf: string;
  /** What the last sign-out did. */
  notice?: string;
  /** Why the last sign-out did nothing. */
  message?: string;
}

/**
 * The Sessions section of the settings page: one row per live session (device, address,
 * signed in, last seen), this browser's marked. Each button is a form that works without
 * JavaScript (the page comes back); with htmx it swaps this section alone.
 */
export function SessionsSection(props: SessionsSectionProps) {
  const others = props.sessions.some((s) => !s.current) || props.total > props.sessions.length;
  const swap = { "hx-target": "#sessions", "hx-swap": "outerHTML" };
  return (
    <section class="card" id="sessions">
      <h2>Sessions</h2>
      <p class="muted">
        Where this account is signed in. A session unused for 30 days ends by itself; one you do not recognise, sign out, then change the password.
      </p>
      {props.notice ? (
        <p class="ok" role="status" safe>
          {props.notice}
        </p>
      ) : (
        ""
      )}
      {props.message ? (
        <p class="form-error" role="alert" safe>
          {props.message}
        </p>
      ) : (
        ""
      )}
      <TableScroll>
        <table class="sessions">
          <thead>
            <tr>
              <th scope="col">Device</th>
              <th scope="col">IP</th>
              <th scope="col">Signed in</th>
              <th scope="col">Last seen</th>
              {/* Named for screen readers only: a visually hidden span (position: absolute) would escape the table's scroll box on a phone. */}
              <th scope="col" aria-label="Sign out"></th>
            </tr>
          </thead>
          <tbody>
            {props.sessions.map((s) => (
              <tr aria-current={s.current ? "true" : undefined}>
                <td>
                  {s.userAgent ? (
                    <details class="raw">
                      <summary safe>{s.device}</summary>
                      <code safe>{s.userAgent}</code>
                    </details>
                  ) : (
                    <span safe>{s.device}</span>
                  )}
                  {s.current ? (
                    <>
                      {" "}
                      <Badge kind="active">This session</Badge>
                    </>
                  ) : (
                    ""
                  )}
                </td>
                <td safe>{s.ip ?? "—"}</td>
                <td>
                  <Time iso={s.createdAt} />
                </td>
                <td>
                  <Time iso={s.lastSeenAt} />
                </td>
                <td>
                  {s.current ? (
                    <form method="post" action={paths.logout}>
                      <CsrfField token={props.csrf} />
                      <button type="submit">Sign out</button>
                    </form>
                  ) : (
                    <form method="post" action={sessionPaths.revoke(s.id)} hx-post={sessionPaths.revoke(s.id)} {...swap}>
                      <CsrfField token={props.csrf} />
                      <button type="submit" class="danger">
                        Sign out
                      </button>
                    </form>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </TableScroll>
      {props.total > props.sessions.length ? (
        <p class="muted" safe>
          {`Showing the ${props.sessions.length} most recently seen of ${props.total} sessions.`}
        </p>
      ) : (
        ""
      )}
      {others ? (
        <form
          method="post"
          action={sessionPaths.revokeOthers}
          hx-post={sessionPaths.revokeOthers}
          hx-confirm="Sign out every other session? This browser stays signed in."
          {...swap}
        >
          <CsrfField token={props.csrf} />
          <button type="submit" class="danger">
            Sign out everywhere else
          </button>
        </form>
      ) : (
        <p class="muted">No other session is signed in.</p>
      )}
    </section>
  );
}
