import { eq } from "drizzle-orm";
import type { Deps } from "../deps.ts";
import { accounts } from "../accounts/accounts.sql.ts";
import type { Session } from "../accounts/sessions.ts";
import { unreadCount } from "../notify/service.ts";
import { listKeys } from "../keys/service.ts";
import { pendingReveals } from "../rotation/service.ts";
import type { PageSession } from "../../views/layout.tsx";

/** The operator's suspension of an account, if any: what the banner shows. */
async function suspension(deps: Pick<Deps, "db">, accountId: string): Promise<PageSession["suspended"]> {
  const [row] = await deps.db.select({ at: accounts.suspendedAt, reason: accounts.suspendedReason }).from(accounts).where(eq(accounts.id, accountId));
  return row?.at ? { since: row.at.toISOString(), reason: row.reason ?? "" } : null;
}

/**
 * What every page's layout shows of the session: the account, its CSRF token, the unread
 * count, secrets waiting, and a suspension with its reason.
 */
export async function pageSession(deps: Deps, s: Session): Promise<PageSession> {
  const [unread, reveals, suspended] = await Promise.all([unreadCount(deps.db, s.accountId), pendingReveals(deps, s.accountId), suspension(deps, s.accountId)]);
  // Named as people know them: the replaced key's name and masked form (rare: only while a secret waits).
  const keys = reveals.length ? new Map((await listKeys(deps, s.accountId)).map((k) => [k.id, k])) : new Map();
  return {
    email: s.email,
    csrfToken: s.csrfToken,
    isOperator: s.isOperator,
    unread,
    suspended,
    pendingReveals: reveals.map((r) => {
      const k = keys.get(r.keyId);
      return { id: r.id, keyId: r.keyId, keyLabel: k ? `“${k.name}” ${k.display}` : "a key" };
    }),
  };
}
