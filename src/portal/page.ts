import type { Deps } from "../deps.ts";
import type { Session } from "../accounts/sessions.ts";
import { unreadCount } from "../notify/service.ts";
import { pendingReveals } from "../rotation/service.ts";
import type { PageSession } from "../../views/layout.tsx";

/** What every page's layout shows of the session: the account, its CSRF token, the unread count, secrets waiting. */
export async function pageSession(deps: Deps, s: Session): Promise<PageSession> {
  const [unread, reveals] = await Promise.all([unreadCount(deps.db, s.accountId), pendingReveals(deps, s.accountId)]);
  return { email: s.email, csrfToken: s.csrfToken, isOperator: s.isOperator, unread, pendingReveals: reveals.map((r) => ({ id: r.id, keyId: r.keyId })) };
}
