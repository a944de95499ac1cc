/** @jsxImportSource @kitajs/html */
import { CsrfField, formatDate, paths } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";

const LABELS: Record<string, string> = {
  "key.created": "Key created",
  "key.revoked": "Key revoked",
  "key.rotation_scheduled": "Rotation scheduled",
  "key.rotation_started": "Rotation started",
  "key.expiring": "Key stops within 24 hours",
  "key.rotation_completed": "Rotation completed",
  "key.leaked": "Key found leaked",
  "usage.quota_warning": "Quota nearly used",
};

export function NotificationsPage(props: {
  session: PageSession;
  items: { id: string; event: string; keyId: string | null; data: Record<string, unknown>; createdAt: string; readAt: string | null }[];
}) {
  return (
    <Layout title="Notifications" session={props.session} active="notifications">
      <h1>Notifications</h1>
      {props.items.some((n) => !n.readAt) ? (
        <form method="post" action={`${paths.notifications}/read`}>
          <CsrfField token={props.session.csrfToken} />
          <button type="submit">Mark all as read</button>
        </form>
      ) : (
        ""
      )}
      {props.items.length ? (
        <ul class="notifications card">
          {props.items.map((n) => (
            <li class={n.readAt ? "read" : "unread"}>
              <strong safe>{LABELS[n.event] ?? n.event}</strong> <span class="muted" safe>{formatDate(n.createdAt)}</span>
              {n.keyId ? (
                <>
                  {" · "}
                  <a href={paths.key(n.keyId)} safe>
                    {n.keyId}
                  </a>
                </>
              ) : (
                ""
              )}
              {typeof n.data.reason === "string" ? <span class="muted" safe>{` · ${n.data.reason}`}</span> : ""}
            </li>
          ))}
        </ul>
      ) : (
        <p class="card muted">Nothing yet. Key changes, rotations and quota warnings show up here.</p>
      )}
    </Layout>
  );
}
