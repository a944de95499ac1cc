import { MAIL_CATEGORIES, isMailCategory } from "../email/messages.ts";
import { inArray } from "drizzle-orm";
import type { Deps } from "../deps.ts";
import { accounts } from "../accounts/accounts.sql.ts";
import type { Session } from "../accounts/sessions.ts";
import { listKeys } from "../keys/service.ts";
import type { KeyView } from "../keys/model.ts";
import { pageSession } from "../portal/page.ts";
import type { AuditPageProps, AuditRow } from "../../views/audit/audit.tsx";
import type { AuditEventView } from "./model.ts";
import { auditActions, listAuditEvents } from "./service.ts";
import { DomainError } from "../errors.ts";
import { formatCents } from "../../views/components.tsx";

type KeyName = Pick<KeyView, "id" | "name" | "display">;

const when = (iso: unknown) => (typeof iso === "string" ? iso.replace("T", " ").slice(0, 16) + " UTC" : "");
const quoted = (s: unknown) => `“${String(s)}”`;

/** A change's value for people: a list joined, null as "none", text quoted. */
function value(v: unknown): string {
  if (v === null || v === undefined) return "none";
  if (Array.isArray(v)) return v.length ? v.join(", ") : "none";
  if (typeof v === "string") return /^\d{4}-\d{2}-\d{2}T/.test(v) ? when(v) : quoted(v);
  return String(v);
}

const FIELD_NAMES: Record<string, string> = {
  name: "name",
  scopes: "scopes",
  rateLimit: "rate limit",
  ipAllowlist: "IP allowlist",
  expiresAt: "expiry",
  monthlyQuota: "monthly quota",
  status: "status",
};

/** A plan change's `{ from, to }` (plan ids) in names. */
function planMove(v: unknown, plan: (id: unknown) => string): { from: string; to: string } {
  const { from, to } = (v ?? {}) as { from?: unknown; to?: unknown };
  return { from: plan(from), to: plan(to) };
}

/** A withdrawn scheduled change `{ plan, effectiveAt }`, in words. */
function withdrawnChange(v: unknown, plan: (id: unknown) => string): string {
  const w = (v ?? {}) as { plan?: unknown; effectiveAt?: unknown };
  return `the change to ${plan(w.plan)} scheduled for ${when(w.effectiveAt)}`;
}

const cents = (v: unknown) => (typeof v === "number" ? formatCents(v) : "");

/**
 * One sentence for an audit event, in words and names (ids stay in the details). `key`
 * names the keys the event's changes refer to; `plan` the plans (by id).
 */
export function describeEvent(e: Pick<AuditEventView, "action" | "changes">, key: (id: unknown) => string, plan: (id: unknown) => string = (id) => String(id ?? "")): string {
  const c = e.changes as Record<string, unknown>;
  switch (e.action) {
    case "account.suspended":
      return `Account suspended: ${quoted(c.reason ?? "")}; its keys answer 403 account_suspended`;
    case "account.unsuspended":
      return "Suspension lifted: the account's keys work again";
    case "plan.changed": {
      const m = planMove(c.plan, plan);
      if (c.scheduled) return `Plan changed from ${m.from} to ${m.to}: the downgrade scheduled for ${when(c.effectiveAt)} took effect`;
      return `Plan changed from ${m.from} to ${m.to}, at once${c.cancelledScheduled ? `; ${withdrawnChange(c.cancelledScheduled, plan)} withdrawn` : ""}`;
    }
    case "plan.scheduled": {
      const m = planMove(c.plan, plan);
      return `Plan change from ${m.from} to ${m.to} scheduled for ${when(c.effectiveAt)}${c.replaces ? `, replacing ${withdrawnChange(c.replaces, plan)}` : ""}`;
    }
    case "plan.cancelled": {
      const m = planMove(c.plan, plan);
      return `Scheduled plan change from ${m.from} to ${m.to} (for ${when(c.effectiveAt)}) cancelled; the plan stays ${m.from}`;
    }
    case "invoice.finalized":
      return `Invoice ${String(c.number ?? "")} for ${String(c.month ?? "")} finalized: ${cents(c.totalCents)} for ${typeof c.calls === "number" ? c.calls.toLocaleString("en-US") : "?"} calls`;
    case "invoice.paid":
      return `Invoice ${String(c.number ?? "")} marked paid`;
    case "invoice.voided": {
      const from = ((c.status ?? {}) as { from?: unknown }).from;
      return `Invoice ${String(c.number ?? "")} voided${from === "paid" ? " (it had been marked paid)" : ""}`;
    }
    case "account.created":
      return c.operator ? "Account created, as an operator" : "Account created";
    case "account.login":
      if (c.secondFactor === "recovery_code") return "Signed in with a recovery code";
      if (c.secondFactor === "totp") return c.enrolled ? "Signed in, after setting up two-factor sign-in" : "Signed in with a password and an authenticator code";
      return "Signed in";
    case "account.login_2fa_failed":
      return "Failed sign-in: a wrong authenticator or recovery code after the right password";
    case "account.2fa_enabled":
      return "Two-factor sign-in turned on; ten recovery codes made";
    case "account.2fa_disabled":
      return "Two-factor sign-in turned off; its recovery codes deleted";
    case "account.2fa_reset":
      return c.wasEnabled ? "Two-factor sign-in reset by an operator; every session signed out" : "Two-factor sign-in reset by an operator (it was not on); every session signed out";
    case "account.recovery_codes_regenerated":
      return "New recovery codes made; the old ones no longer work";
    case "account.recovery_code_used":
      return `A recovery code used to sign in; ${String(c.left ?? "?")} left`;
    case "instance.2fa_required_set":
      return c.required
        ? `Two-factor sign-in required for every account${typeof c.sessionsEnded === "number" ? `; ${c.sessionsEnded} session${c.sessionsEnded === 1 ? "" : "s"} of accounts without it ended` : ""}`
        : "Two-factor sign-in no longer required for every account";
    case "account.logout":
      return "Signed out";
    case "account.login_failed":
      return "Failed sign-in";
    case "account.password_changed":
      return "Password changed; other sessions signed out";
    case "account.session_revoked":
      return `Signed out a session: ${String(c.device ?? "a device")}${c.ip ? ` from ${String(c.ip)}` : ""}`;
    case "account.other_sessions_revoked":
      return `Signed out everywhere else: ${String(c.count ?? "every")} other session${c.count === 1 ? "" : "s"} ended`;
    case "account.password_reset_requested":
      return "Password reset asked for: a single-use link was mailed to the account's address";
    case "account.password_reset":
      return "Password reset by the mailed link; every session signed out";
    case "account.verification_sent":
      return `Verification link mailed to ${String(c.email ?? "the account's address")}`;
    case "account.email_verified":
      return `Address ${String(c.email ?? "")} confirmed`;
    case "account.email_change_requested":
      return `Change of address to ${String(c.to ?? "")} asked for; a link was mailed to it`;
    case "account.email_changed":
      return `Address changed from ${String(c.from ?? "")} to ${String(c.to ?? "")}; the old address was told`;
    case "account.mail_opted_out":
    case "account.mail_opted_in": {
      const what = typeof c.category === "string" && isMailCategory(c.category) ? MAIL_CATEGORIES[c.category].toLowerCase() : String(c.category ?? "some");
      return `${e.action === "account.mail_opted_out" ? "Turned off" : "Turned on"} mail notices of ${what}`;
    }
    case "key.created":
      if (c.rolledFrom) return `Key ${quoted(c.name)} created by rolling ${key(c.rolledFrom)}`;
      if (c.rotatedFrom) return `Key ${quoted(c.name)} created by rotating ${key(c.rotatedFrom)}`;
      return `Key ${quoted(c.name)} created`;
    case "key.updated": {
      const parts = Object.entries(c).map(([field, ch]) => {
        const { from, to } = (ch ?? {}) as { from?: unknown; to?: unknown };
        return `${FIELD_NAMES[field] ?? field} ${value(from)} → ${value(to)}`;
      });
      return parts.length ? `Changed ${parts.join("; ")}` : "Changed";
    }
    case "key.revoked":
      return "Key revoked";
    case "key.rolled":
      return c.graceEndsAt ? `Rolled: replaced by ${key(c.replacedBy)}; works until ${when(c.graceEndsAt)}` : `Rolled: replaced by ${key(c.replacedBy)} and revoked at once`;
    case "rotation.scheduled":
      return c.at ? `Rotation scheduled for ${when(c.at)}${c.reason ? ` (${c.reason})` : ""}` : `Rotation scheduled${c.reason ? ` (${c.reason})` : ""}`;
    case "rotation.started":
      return `Rotation started: replaced by ${key(c.newKeyId)}${c.graceEndsAt ? `; works until ${when(c.graceEndsAt)}` : ""}`;
    case "rotation.completed":
      return "Rotation completed: the old key is revoked";
    case "rotation.cancelled":
      return "Rotation cancelled";
    case "rotation.failed":
      return `Rotation failed${c.failure ? `: ${c.failure}` : ""}`;
    case "rotation.emergency":
      return `Emergency rotation${c.reason ? ` (${c.reason})` : ""}, ${c.gracePeriodHours ? `grace ${c.gracePeriodHours} h` : "old key revoked at once"}`;
    case "rotation.secret_revealed":
      return "The new key's secret was revealed";
    case "rotation.policy_changed":
      return `Rotation policy: maximum key age ${c.maxKeyAgeDays ? `${c.maxKeyAgeDays} days` : "off"}, grace ${c.defaultGraceHours} h, emergency grace ${c.emergencyGraceHours} h`;
    case "webhook.set":
      return `Webhook set to ${String(c.url ?? "")}${c.allowPrivate ? " (private targets allowed)" : ""}${Array.isArray(c.events) ? `, for ${c.events.join(", ")}` : ""}`;
    case "webhook.deleted":
      return "Webhook removed";
    case "webhook.secret_rotated":
      return `Webhook signing secret rotated; the previous one is valid until ${when(c.previousSecretExpiresAt)}`;
    default:
      return e.action.replace(/[._]/g, " ");
  }
}

/** Who did it, for people: an account's email, a key's name, the CLI, Keyport itself. */
async function actorNames(deps: Deps, events: AuditEventView[], keys: Map<string, KeyName>): Promise<(actor: string) => string> {
  const accountIds = [...new Set(events.map((e) => e.actor).filter((a) => a.startsWith("account:")).map((a) => a.slice("account:".length)))];
  const rows = accountIds.length ? await deps.db.select({ id: accounts.id, email: accounts.email }).from(accounts).where(inArray(accounts.id, accountIds)) : [];
  const emails = new Map(rows.map((r) => [r.id, r.email]));
  return (actor) => {
    if (actor.startsWith("account:")) return emails.get(actor.slice(8)) ?? "a deleted account";
    if (actor.startsWith("key:")) {
      const k = keys.get(actor.slice(4));
      return k ? `key ${quoted(k.name)} (${k.display})` : "an API key";
    }
    if (actor === "cli") return "the command line";
    if (actor === "system") return "Keyport (scheduled)";
    if (actor === "anonymous") return "someone not signed in";
    if (actor === "unsubscribe-link") return "the unsubscribe link of a notice";
    return actor;
  };
}

/**
 * Events as people read them: each a sentence with the key's name (`keys`: the account's),
 * the actor's email. The audit page's rows, and the operator's account page's.
 */
export async function auditRows(deps: Deps, events: AuditEventView[], allKeys: KeyName[]): Promise<AuditRow[]> {
  const keys = new Map<string, KeyName>(allKeys.map((k) => [k.id, k]));
  const actor = await actorNames(deps, events, keys);
  const keyLabel = (id: unknown) => {
    const k = typeof id === "string" ? keys.get(id) : undefined;
    return k ? `${quoted(k.name)} (${k.display})` : "another key";
  };
  const planLabel = (id: unknown) => (typeof id === "string" ? (deps.catalog.byId.get(id)?.name ?? id) : "another plan");
  return events.map((e) => ({
    id: e.id,
    createdAt: e.createdAt,
    action: e.action,
    summary: describeEvent(e, keyLabel, planLabel),
    key: e.keyId ? (keys.get(e.keyId) ?? null) : null,
    actor: actor(e.actor),
    ip: e.ip,
    changes: e.changes,
  }));
}

/** The audit page: events in words, with the key's name and the actor's email. */
export async function auditPageModel(deps: Deps, s: Session, q: { action?: string; keyId?: string; cursor?: string }): Promise<AuditPageProps> {
  const filters = { action: q.action || undefined, keyId: q.keyId || undefined };
  let page: Awaited<ReturnType<typeof listAuditEvents>>;
  try {
    page = await listAuditEvents(deps.db, s.accountId, { ...filters, cursor: q.cursor || undefined });
  } catch (err) {
    // A cursor this page did not give: the first page.
    if (!(err instanceof DomainError)) throw err;
    page = await listAuditEvents(deps.db, s.accountId, filters);
  }
  const [actions, allKeys, session] = await Promise.all([auditActions(deps.db, s.accountId), listKeys(deps, s.accountId), pageSession(deps, s)]);
  const events = await auditRows(deps, page.data, allKeys);
  return { session, events, filters, actions, keys: allKeys.map((k) => ({ id: k.id, name: k.name, display: k.display })), nextCursor: page.nextCursor };
}
