import { createHmac, timingSafeEqual } from "node:crypto";
import { eq } from "drizzle-orm";
import { accounts } from "../accounts/accounts.sql.ts";
import type { Deps } from "../deps.ts";
import { displayKey } from "../keys/format.ts";
import { apiKeys } from "../keys/keys.sql.ts";
import { notifications, type NotificationEvent } from "../notify/notify.sql.ts";
import { renderMail, type MailContent } from "../../views/email/mail.tsx";
import type { MailMessage } from "./transport.ts";

/**
 * What Keyport mails, by template: the account's own mail (reset, verification, the change of
 * address, a changed password) and notices of events (`notice:<event>`). Rendered when sent
 * (src/email/outbox.ts) from the row's data, so a key is named by its masked form as it is
 * then, and a notice the account turned off meanwhile is not sent.
 */
export const NOTICE_EVENTS = ["key.rotation_scheduled", "key.rotation_started", "key.expiring", "key.revoked", "key.leaked", "plan.usage_80", "plan.usage_100", "invoice.finalized"] as const satisfies readonly NotificationEvent[];
export type NoticeEvent = (typeof NOTICE_EVENTS)[number];

export const ACCOUNT_MAIL = ["password_reset", "verify_email", "change_email", "email_changed", "password_changed", "signup_attempted", "two_factor_enabled", "two_factor_disabled", "recovery_code_used"] as const;
export type MailKind = (typeof ACCOUNT_MAIL)[number] | `notice:${NoticeEvent}`;

/**
 * Notice categories an account can turn off (Settings). Security notices — a leaked key, a
 * rotation started because of a leak, a changed password — are always sent.
 */
export const MAIL_CATEGORIES = {
  rotation: "Key rotations: scheduled, started, and a replaced key's last 24 hours",
  keys: "A key revoked",
  usage: "The plan's included calls at 80 % and 100 %",
  billing: "An invoice finalized",
} as const;
export type MailCategory = keyof typeof MAIL_CATEGORIES;
export const MAIL_CATEGORY_NAMES = Object.keys(MAIL_CATEGORIES) as MailCategory[];

export function isMailCategory(s: string): s is MailCategory {
  return Object.hasOwn(MAIL_CATEGORIES, s);
}

const LEAK_REASON = /leak/i;

/** The category of a notice, or "security" for one that cannot be turned off. */
export function noticeCategory(event: NoticeEvent, data: Record<string, unknown>): MailCategory | "security" {
  switch (event) {
    case "key.leaked":
      return "security";
    case "key.rotation_started":
      return typeof data.reason === "string" && LEAK_REASON.test(data.reason) ? "security" : "rotation";
    case "key.rotation_scheduled":
    case "key.expiring":
      return "rotation";
    case "key.revoked":
      return "keys";
    case "plan.usage_80":
    case "plan.usage_100":
      return "usage";
    case "invoice.finalized":
      return "billing";
  }
}

export function isNoticeEvent(event: string): event is NoticeEvent {
  return (NOTICE_EVENTS as readonly string[]).includes(event);
}

/** The one-click unsubscribe token of an account and category: an HMAC, so nothing is stored (RFC 8058 links carry it). */
export function unsubscribeToken(secretKey: string | undefined, accountId: string, category: MailCategory): string {
  if (!secretKey) throw new Error("SECRET_KEY is not set");
  return createHmac("sha256", secretKey).update(`unsubscribe\0${accountId}\0${category}`).digest("base64url");
}

export function unsubscribeTokenValid(secretKey: string | undefined, accountId: string, category: MailCategory, token: string): boolean {
  const want = Buffer.from(unsubscribeToken(secretKey, accountId, category));
  const got = Buffer.from(token);
  return got.length === want.length && timingSafeEqual(got, want);
}

/** `/email/unsubscribe?a=<account>&c=<category>&t=<token>` at the public origin. */
export function unsubscribeUrl(config: Pick<Deps["config"], "publicUrl" | "secretKey">, accountId: string, category: MailCategory): string {
  const q = new URLSearchParams({ a: accountId, c: category, t: unsubscribeToken(config.secretKey, accountId, category) });
  return `${config.publicUrl}/email/unsubscribe?${q.toString()}`;
}

type RenderDeps = Pick<Deps, "db" | "config">;

interface MailRow {
  accountId: string | null;
  to: string;
  kind: MailKind;
  data: Record<string, unknown>;
}

const text = (v: unknown, fallback = ""): string => (typeof v === "string" ? v : v === undefined || v === null ? fallback : String(v));
const when = (iso: unknown) => (typeof iso === "string" && !Number.isNaN(Date.parse(iso)) ? `${iso.slice(0, 16).replace("T", " ")} UTC` : "soon");
const dollars = (cents: unknown) => (typeof cents === "number" ? `$${(cents / 100).toFixed(2)}` : "");

/** The account's mail (no notice): reset, verification, the change of address, a changed password, a sign-up tried with its address. */
function accountContent(deps: RenderDeps, row: MailRow, secret: Record<string, string>): MailContent {
  const portal = `${deps.config.publicUrl}/portal/settings`;
  switch (row.kind) {
    case "password_reset":
      return {
        subject: "Reset your Keyport password",
        paragraphs: ["Someone (we hope you) asked to reset the password of the Keyport account for this address."],
        action: { label: "Choose a new password", url: secret.url ?? "" },
        notes: ["The link works once, for 30 minutes; a newer request replaces it. Setting the new password signs out every session.", "If you did not ask, ignore this mail: your password stays as it is."],
      };
    case "verify_email":
      return {
        subject: "Confirm your email address for Keyport",
        paragraphs: ["Confirm that this address is yours to finish setting up your Keyport account."],
        action: { label: "Confirm this address", url: secret.url ?? "" },
        notes: ["The link works for 24 hours. If you did not sign up, ignore this mail."],
      };
    case "change_email":
      return {
        subject: "Confirm your new email address for Keyport",
        paragraphs: [`The Keyport account of ${text(row.data.oldEmail, "another address")} asked to use this address instead.`],
        action: { label: "Use this address", url: secret.url ?? "" },
        notes: ["The link works for 24 hours. Until it is followed, the account keeps its old address. If you did not ask, ignore this mail."],
      };
    case "email_changed":
      return {
        subject: "Your Keyport account's email address was changed",
        paragraphs: [`The Keyport account that used this address now uses ${text(row.data.newEmail, "another address")}.`, "If you did not make this change, reset your password at once and contact the operators of this service."],
        action: { label: "Open your settings", url: portal },
      };
    case "password_changed":
      return {
        subject: "Your Keyport password was changed",
        paragraphs: ["The password of your Keyport account was just changed, and every other session was signed out.", "If you did not make this change, reset your password at once."],
        action: { label: "Reset the password", url: `${deps.config.publicUrl}/forgot-password` },
      };
    case "signup_attempted":
      // Sign-up answers a taken address as it answers a new one (src/accounts/login.ts), so this mail is where its owner learns of it.
      return {
        subject: "Someone tried to sign up with your address",
        paragraphs: [
          "Someone tried to create a Keyport account with this address, which already has one. No account was made, and nothing about yours changed.",
          "If it was you, log in with your password instead.",
        ],
        action: { label: "Log in", url: `${deps.config.publicUrl}/login` },
        notes: [`Forgot your password? Ask for a reset link at ${deps.config.publicUrl}/forgot-password.`, "If it was not you, ignore this mail: nobody gets into your account without its password."],
      };
    // Two-factor sign-in (src/accounts/twofactor.ts): security notices, sent whatever the preferences.
    case "two_factor_enabled":
      return {
        subject: "Two-factor sign-in is on for your Keyport account",
        paragraphs: ["Signing in to your Keyport account now takes a code from your authenticator app (or one of your recovery codes) after the password.", "If you did not turn it on, reset your password at once and contact the operators of this service."],
        action: { label: "Open your settings", url: portal },
      };
    case "two_factor_disabled":
      return {
        subject: "Two-factor sign-in is off for your Keyport account",
        paragraphs: [
          row.data.byOperator ? "An operator of this service turned off two-factor sign-in for your account (a reset, as asked for when a device and its recovery codes are lost), and signed out every session." : "Two-factor sign-in was turned off for your account: signing in takes only the password now.",
          "If you did not ask for this, reset your password at once and contact the operators of this service.",
        ],
        action: { label: "Open your settings", url: portal },
      };
    case "recovery_code_used":
      return {
        subject: "A recovery code was used to sign in to Keyport",
        paragraphs: [`One of your recovery codes was just used to sign in to your Keyport account; it works no more. ${text(row.data.left, "Some")} unused codes are left.`, "If it was not you, reset your password at once, then make new recovery codes in Settings."],
        action: { label: "Open your settings", url: portal },
      };
    default:
      throw new Error(`no template ${row.kind}`);
  }
}

/** A notice's content, from its notification row and the key it names (masked). */
async function noticeContent(deps: RenderDeps, event: NoticeEvent, notificationId: string): Promise<MailContent | null> {
  const [n] = await deps.db.select().from(notifications).where(eq(notifications.id, notificationId));
  if (!n) return null;
  const data = n.data;
  let keyName = "a key";
  if (n.keyId) {
    const [k] = await deps.db.select({ name: apiKeys.name, environment: apiKeys.environment, start: apiKeys.start, end: apiKeys.end }).from(apiKeys).where(eq(apiKeys.id, n.keyId));
    if (k) keyName = `"${k.name}" (${displayKey(deps.config.keyPrefix, k.environment, k.start, k.end)})`;
  }
  const keyPage = n.keyId ? `${deps.config.publicUrl}/portal/keys/${encodeURIComponent(n.keyId)}` : `${deps.config.publicUrl}/portal/keys`;
  switch (event) {
    case "key.rotation_scheduled":
      return { subject: "A key rotation is scheduled", paragraphs: [`The key ${keyName} will be rotated at ${when(data.at)}: a new key is made then, and the old one keeps working through its grace period.`], action: { label: "See the rotation", url: keyPage } };
    case "key.rotation_started":
      return {
        subject: LEAK_REASON.test(text(data.reason)) ? "A leaked key is being replaced" : "A key rotation started",
        paragraphs: [`The key ${keyName} was rotated${data.reason ? ` (${text(data.reason)})` : ""}. Its replacement is ready to reveal once in the portal; the old key works until ${when(data.graceEndsAt)}.`],
        action: { label: "Reveal the new key", url: keyPage },
      };
    case "key.expiring":
      return { subject: "A replaced key stops working in 24 hours", paragraphs: [`The key ${keyName} was replaced by a rotation and stops working at ${when(data.graceEndsAt)}. Move your programs to its replacement before then.`], action: { label: "Open the key", url: keyPage } };
    case "key.revoked":
      return { subject: "A key was revoked", paragraphs: [`The key ${keyName} was revoked${data.reason ? ` (${text(data.reason)})` : ""}: requests with it are refused from now on.`], action: { label: "Open your keys", url: `${deps.config.publicUrl}/portal/keys` } };
    case "key.leaked":
      return { subject: "One of your keys was found in public", paragraphs: [`The key ${keyName} was found where others can read it${data.location ? ` (${text(data.location)})` : ""}. Keyport acted by your account's leak policy.`], action: { label: "Open the key", url: keyPage } };
    case "plan.usage_80":
    case "plan.usage_100":
      return {
        subject: event === "plan.usage_80" ? "80 % of your plan's calls are used" : "Your plan's included calls are used up",
        paragraphs: [`This month (${text(data.month)}) your account has made ${text(data.used)} of the ${text(data.included)} calls its plan (${text(data.plan)}) includes.`],
        action: { label: "Open billing", url: `${deps.config.publicUrl}/portal/billing` },
      };
    case "invoice.finalized":
      return {
        subject: `Invoice ${text(data.number)} for ${text(data.month)}`,
        paragraphs: [`Your invoice ${text(data.number)} for ${text(data.month)} is final: ${dollars(data.totalCents)} for ${text(data.calls)} calls.`],
        action: { label: "Open the invoice", url: `${deps.config.publicUrl}/portal/billing/invoices/${encodeURIComponent(text(data.invoiceId))}` },
      };
  }
}

/**
 * The message of an outbox row, or null when it is not to be sent: a notice of a category
 * the account turned off (honoured for what is already queued), or one whose notification
 * is gone. Notices that can be turned off carry List-Unsubscribe with one-click POST (RFC 8058).
 */
export async function renderMessage(deps: RenderDeps, row: MailRow, secret: Record<string, string>): Promise<MailMessage | null> {
  const headers: Record<string, string> = {};
  let content: MailContent | null;
  if (row.kind.startsWith("notice:")) {
    const event = row.kind.slice("notice:".length) as NoticeEvent;
    const category = noticeCategory(event, row.data);
    if (category !== "security" && row.accountId) {
      const [account] = await deps.db.select({ optOut: accounts.emailOptOut }).from(accounts).where(eq(accounts.id, row.accountId));
      if (!account || account.optOut.includes(category)) return null;
    }
    content = await noticeContent(deps, event, text(row.data.notificationId));
    if (content && category !== "security" && row.accountId) {
      const url = unsubscribeUrl(deps.config, row.accountId, category);
      content.unsubscribeUrl = url;
      content.notes = [...(content.notes ?? []), `You get this because notices of ${MAIL_CATEGORIES[category].toLowerCase()} are on for your account; turn them off in Settings.`];
      headers["List-Unsubscribe"] = `<${url}>`;
      headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click";
    }
  } else content = accountContent(deps, row, secret);
  if (!content) return null;
  const { subject, text: plain, html } = renderMail(content);
  return { to: row.to, subject, text: plain, html, headers };
}
