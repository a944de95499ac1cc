import type { Tx, Db } from "../db/client.ts";
import { newId } from "../ids.ts";
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
