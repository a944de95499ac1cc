import { and, count, desc, eq, isNull } from "drizzle-orm";
import { accounts } from "../accounts/accounts.sql.ts";
import type { Db, Tx } from "../db/client.ts";
import { enqueueNotice } from "../email/outbox.ts";
import { isNoticeEvent } from "../email/messages.ts";
import { newId } from "../ids.ts";
import type { NotificationView } from "./model.ts";
import { notifications, webhookDeliveries, webhookEndpoints, type NotificationEvent } from "./notify.sql.ts";

export interface NotificationInput {
  accountId: string;
  event: NotificationEvent;
  keyId?: string | null;
  data?: Record<string, unknown>;
}

/**
 * Writes a notification (the in-app list and the outbox) inside the caller's transaction,
 * plus a pending webhook delivery when the account has an endpoint that gets this event,
 * and for a notice (NOTICE_EVENTS) a mail to the account's address as it is in this
 * transaction: the change, its notification and its mail commit or roll back together.
 * A notice whose category the account turned off is still queued: the outbox decides when
 * it sends (status skipped), so an opt-out is honoured for what is queued too.
 */
export async function emit(tx: Tx | Db, n: NotificationInput, at: Date): Promise<string> {
  const id = newId("ntf");
  await tx.insert(notifications).values({ id, accountId: n.accountId, event: n.event, keyId: n.keyId ?? null, data: n.data ?? {}, createdAt: at });
  const [endpoint] = await tx.select({ url: webhookEndpoints.url, events: webhookEndpoints.events }).from(webhookEndpoints).where(eq(webhookEndpoints.accountId, n.accountId));
  if (endpoint && (endpoint.events === null || endpoint.events.includes(n.event))) {
    await tx.insert(webhookDeliveries).values({
      id: newId("dlv"),
      accountId: n.accountId,
      notificationId: id,
      event: n.event,
      url: endpoint.url,
      state: "pending",
      nextAttemptAt: at,
      createdAt: at,
    });
  }
  if (isNoticeEvent(n.event)) {
    const [account] = await tx.select({ email: accounts.email }).from(accounts).where(eq(accounts.id, n.accountId));
    // The outbox picks the category from its own row's data (src/email/messages.ts), so what
    // makes a rotation a security notice (a leak as its reason) travels with the mail.
    const reason = typeof n.data?.reason === "string" ? { reason: n.data.reason } : {};
    if (account) await enqueueNotice(tx, { accountId: n.accountId, to: account.email, kind: `notice:${n.event}`, data: { notificationId: id, ...reason } }, at);
  }
  return id;
}

export async function listNotifications(db: Db, accountId: string, limit = 50) {
  return db.select().from(notifications).where(eq(notifications.accountId, accountId)).orderBy(desc(notifications.createdAt), desc(notifications.id)).limit(limit);
}

/** The newest notifications as the API and the portal show them. */
export async function listNotificationViews(db: Db, accountId: string, limit = 50): Promise<NotificationView[]> {
  const rows = await listNotifications(db, accountId, limit);
  return rows.map((n) => ({ id: n.id, event: n.event, keyId: n.keyId, data: n.data, createdAt: n.createdAt.toISOString(), readAt: n.readAt?.toISOString() ?? null }));
}

export async function unreadCount(db: Db, accountId: string): Promise<number> {
  const [row] = await db
    .select({ n: count() })
    .from(notifications)
    .where(and(eq(notifications.accountId, accountId), isNull(notifications.readAt)));
  return row?.n ?? 0;
}

export async function markAllRead(db: Db, accountId: string, at: Date): Promise<void> {
  await db
    .update(notifications)
    .set({ readAt: at })
    .where(and(eq(notifications.accountId, accountId), isNull(notifications.readAt)));
}
