import type { Deps } from "../deps.ts";
import { mailSettings } from "../email/preferences.ts";
import { getLeakPolicy } from "../leaks/service.ts";
import { getWebhook, listDeliveries } from "../notify/webhooks.ts";
import { pageSession } from "../portal/page.ts";
import { getPolicy } from "../rotation/service.ts";
import type { EmailSectionProps, MailSectionProps, PasswordSectionProps, SettingsProps } from "../../views/accounts/settings.tsx";
import type { WebhookSectionProps } from "../../views/notify/webhook.tsx";
import type { PolicySectionProps } from "../../views/rotation/policy.tsx";
import type { LeakPolicySectionProps } from "../../views/leaks/policy.tsx";
import { listSessions, type Session } from "./sessions.ts";
import { twoFactorStatus } from "./twofactor.ts";
import type { SessionsSectionProps } from "../../views/accounts/sessions.tsx";

/** What a form's POST changes on the settings page: its own section's state, the rest as saved. */
export interface SettingsState {
  policy?: Omit<PolicySectionProps, "policy" | "csrf">;
  leaks?: Omit<LeakPolicySectionProps, "policy" | "floor" | "effective" | "csrf">;
  webhook?: Omit<WebhookSectionProps, "webhook" | "deliveries" | "csrf">;
  password?: Omit<PasswordSectionProps, "csrf">;
  mail?: Omit<MailSectionProps, "optOut" | "csrf">;
  email?: Omit<EmailSectionProps, "current" | "verified" | "pending" | "csrf">;
  newWebhookSecret?: string;
  sessions?: Pick<SessionsSectionProps, "notice" | "message">;
}

/**
 * The settings page's model: the rotation policy, the leak policy, the webhook, the mail
 * preferences, the address, the password form and the sessions list, each section owned by
 * its capability (rotation, leaks, notify, email, accounts), whose routes render the page again
 * with their section's outcome.
 */
export async function settingsModel(deps: Deps, s: Session, state: SettingsState = {}): Promise<SettingsProps> {
  const [session, policy, leaks, webhook, deliveries, mail] = await Promise.all([
    pageSession(deps, s),
    getPolicy(deps, s.accountId),
    getLeakPolicy(deps, s.accountId),
    getWebhook(deps, s.accountId),
    listDeliveries(deps, s.accountId),
    mailSettings(deps, s.accountId),
  ]);
  const signedIn = await listSessions(deps, s.accountId, s.id);
  const twoFactor = await twoFactorStatus(deps, s.accountId);
  const csrf = s.csrfToken;
  return {
    session,
    policy: { policy, csrf, ...state.policy },
    leaks: { ...leaks, csrf, ...state.leaks },
    webhook: { webhook, deliveries, csrf, ...state.webhook },
    mail: { optOut: mail.optOut, csrf, ...state.mail },
    email: { current: mail.email, verified: mail.verified, pending: mail.pending, csrf, ...state.email },
    password: { csrf, ...state.password },
    twoFactor,
    sessions: { ...signedIn, csrf, ...state.sessions },
    newWebhookSecret: state.newWebhookSecret,
  };
}
