/** @jsxImportSource @kitajs/html */
import { TableScroll, Time, formatCount, paths } from "../components.tsx";
import { AdminNav } from "../admin/nav.tsx";
import { Layout, type PageSession } from "../layout.tsx";

/** The operators' mail page (src/email/admin.tsx). */
export const ADMIN_MAIL_PATH = paths.adminMail;

/** A message that failed for good: sent to no one after 24 h of attempts. */
export interface FailedMailRow {
  id: string;
  to: string;
  /** Its template: `password_reset`, `notice:key.revoked` … */
  kind: string;
  attempts: number;
  lastError: string | null;
  createdAt: string;
  failedAt: string | null;
}

export interface AdminMailPageProps {
  session: PageSession;
  /** Messages waiting in the outbox (sent by the timer, retried with backoff). */
  queued: number;
  /** The latest messages that failed for good, newest first. */
  failed: FailedMailRow[];
  /** How many `failed` can hold: the page says when it shows only the latest. */
  limit: number;
  /** Where mail goes: an SMTP server (SMTP_URL), or `.eml` files in DATA_DIR/mail/. */
  transport: "smtp" | "file";
}

/**
 * What the outbox holds for operators: how much waits, and what could not be delivered in
 * 24 h (the address, the template, the last error), so a broken SMTP server is seen before
 * customers say their reset mail never came.
 */
export function AdminMailPage(props: AdminMailPageProps) {
  return (
    <Layout title="Mail" session={props.session} active="operator">
      <h1>Mail</h1>
      <AdminNav active="mail" />
      <section class="card">
        <p>
          {props.transport === "smtp" ? (
            <>Mail is sent to the SMTP server of SMTP_URL.</>
          ) : (
            <>
              No SMTP_URL is set: each message is written as an <code>.eml</code> file to <code>DATA_DIR/mail/</code>, and nothing leaves this machine.
            </>
          )}
        </p>
        <dl class="facts">
          <dt>Waiting to be sent</dt>
          <dd safe>{formatCount(props.queued)}</dd>
          <dt>Failed for good</dt>
          <dd safe>{props.failed.length >= props.limit ? `${formatCount(props.limit)} or more (the latest below)` : formatCount(props.failed.length)}</dd>
        </dl>
      </section>
      <section class="card">
        <h2>Failed messages</h2>
        <p class="muted">A message is retried with backoff (30 s, doubling to an hour) and marked failed when 24 h have passed since it was queued. Its link, if it carried one, is dropped.</p>
        {props.failed.length ? (
          <TableScroll>
            <table class="mail-failed">
              <thead>
                <tr>
                  <th scope="col">To</th>
                  <th scope="col">Message</th>
                  <th scope="col">Queued</th>
                  <th scope="col">Failed</th>
                  <th scope="col">Attempts</th>
                  <th scope="col">Last error</th>
                </tr>
              </thead>
              <tbody>
                {props.failed.map((m) => (
                  <tr>
                    <td safe>{m.to}</td>
                    <td>
                      <code safe>{m.kind}</code>
                    </td>
                    <td>
                      <Time iso={m.createdAt} />
                    </td>
                    <td>
                      <Time iso={m.failedAt} />
                    </td>
                    <td safe>{formatCount(m.attempts)}</td>
                    <td>
                      <code safe>{m.lastError ?? ""}</code>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableScroll>
        ) : (
          <p class="muted">No message has failed.</p>
        )}
      </section>
    </Layout>
  );
}
