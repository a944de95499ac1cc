/** @jsxImportSource @kitajs/html */
import { CsrfField, paths, Time } from "../components.tsx";
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
  "plan.usage_80": "80 % of the plan's calls used this month",
  "plan.usage_100": "All the plan's calls used this month",
  "invoice.finalized": "Invoice finalized",
};

/** A notification as people read it: the key's name and masked form rather than its id. */
export interface NotificationItem {
  id: string;
  event: string;
  key: { id: string; name: string; display: string } | null;
  data: Record<string, unknown>;
  createdAt: string;
  readAt: string | null;
}

export function NotificationsPage(props: { session: PageSession; items: NotificationItem[] }) {
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
              <strong safe>{LABELS[n.event] ?? n.event}</strong> <span class="muted">
                <Time iso={n.createdAt} />
              </span>
              {n.key ? (
                <>
                  {" · "}
                  <a href={paths.key(n.key.id)}>
                    <span safe>{n.key.name}</span> <code safe>{n.key.display}</code>
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
