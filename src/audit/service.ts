import { and, desc, eq, lt, or, sql, type SQL } from "drizzle-orm";
import type { Tx, Db } from "../db/client.ts";
import { newId } from "../ids.ts";
import { invalidInput } from "../errors.ts";
import { auditEvents } from "./audit.sql.ts";

/** Who asked and from where; carried from the route (or CLI) into every audit event. */
export interface Actor {
  /** `account:acct_…`, `key:key_…`, `cli` or `system`. */
  actor: string;
  ip?: string | null;
  userAgent?: string | null;
}

export const cliActor: Actor = { actor: "cli" };
export const systemActor: Actor = { actor: "system" };

export interface AuditInput {
  accountId: string;
  action: string;
  keyId?: string | null;
  changes?: Record<string, unknown>;
}

/** Written inside the caller's transaction, so the change and its record agree. */
export async function recordAudit(tx: Tx | Db, who: Actor, event: AuditInput, at: Date): Promise<void> {
  await tx.insert(auditEvents).values({
    id: newId("evt"),
    accountId: event.accountId,
    actor: who.actor,
    action: event.action,
    keyId: event.keyId ?? null,
    ip: who.ip ?? null,
    userAgent: who.userAgent ? who.userAgent.slice(0, 300) : null,
    changes: event.changes ?? {},
    createdAt: at,
  });
}

export const AUDIT_PAGE = 50;

import type { AuditEventView } from "./model.ts";
export type { AuditEventView } from "./model.ts";

function encodeCursor(createdAt: Date, id: string): string {
  return Buffer.from(`${createdAt.toISOString()}|${id}`).toString("base64url");
}

function decodeCursor(cursor: string): { createdAt: Date; id: string } {
  const [iso, id] = Buffer.from(cursor, "base64url").toString().split("|");
  const createdAt = new Date(iso ?? "");
  if (!id || Number.isNaN(createdAt.getTime())) throw invalidInput("The cursor is not valid.", [{ field: "cursor", message: "is not a cursor this API returned" }]);
  return { createdAt, id };
}

/** One page of an account's audit events, newest first; `nextCursor` continues after it. */
export async function listAuditEvents(
  db: Db,
  accountId: string,
  filter: { keyId?: string; action?: string; cursor?: string },
): Promise<{ data: AuditEventView[]; nextCursor: string | null }> {
  const where: (SQL | undefined)[] = [eq(auditEvents.accountId, accountId)];
  if (filter.keyId) where.push(eq(auditEvents.keyId, filter.keyId));
  if (filter.action) where.push(eq(auditEvents.action, filter.action));
  if (filter.cursor) {
    const c = decodeCursor(filter.cursor);
    where.push(or(lt(auditEvents.createdAt, c.createdAt), and(eq(auditEvents.createdAt, c.createdAt), lt(auditEvents.id, c.id))));
  }
  const rows = await db
    .select()
    .from(auditEvents)
    .where(and(...where))
    .orderBy(desc(auditEvents.createdAt), desc(auditEvents.id))
    .limit(AUDIT_PAGE + 1);
  const page = rows.slice(0, AUDIT_PAGE);
  const last = page[page.length - 1];
  return {
    data: page.map((e) => ({
      id: e.id,
      action: e.action,
      actor: e.actor,
      keyId: e.keyId,
      ip: e.ip,
      userAgent: e.userAgent,
      changes: e.changes,
      createdAt: e.createdAt.toISOString(),
    })),
    nextCursor: rows.length > AUDIT_PAGE && last ? encodeCursor(last.createdAt, last.id) : null,
  };
}

/** The actions an account's log holds, for the filter. */
export async function auditActions(db: Db, accountId: string): Promise<string[]> {
  const rows = await db
    .selectDistinct({ action: auditEvents.action })
    .from(auditEvents)
    .where(eq(auditEvents.accountId, accountId))
    .orderBy(sql`1`);
  return rows.map((r) => r.action);
}
