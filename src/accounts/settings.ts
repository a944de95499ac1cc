import type { Deps } from "../deps.ts";
import { getWebhook, listDeliveries } from "../notify/webhooks.ts";
import { pageSession } from "../portal/page.ts";
import { getPolicy } from "../rotation/service.ts";
import type { PasswordSectionProps, SettingsProps } from "../../views/accounts/settings.tsx";
import type { WebhookSectionProps } from "../../views/notify/webhook.tsx";
import type { PolicySectionProps } from "../../views/rotation/policy.tsx";
import type { Session } from "./sessions.ts";

/** What a form's POST changes on the settings page: its own section's state, the rest as saved. */
export interface SettingsState {
  policy?: Omit<PolicySectionProps, "policy" | "csrf">;
  webhook?: Omit<WebhookSectionProps, "webhook" | "deliveries" | "csrf">;
  password?: Omit<PasswordSectionProps, "csrf">;
  newWebhookSecret?: string;
}

/**
 * The settings page's model: the rotation policy, the webhook and the password form, each
 * section owned by its capability (rotation, notify, accounts), whose routes render the page
 * again with their section's outcome.
 */
export async function settingsModel(deps: Deps, s: Session, state: SettingsState = {}): Promise<SettingsProps> {
  const [session, policy, webhook, deliveries] = await Promise.all([pageSession(deps, s), getPolicy(deps, s.accountId), getWebhook(deps, s.accountId), listDeliveries(deps, s.accountId)]);
  const csrf = s.csrfToken;
  return {
    session,
    policy: { policy, csrf, ...state.policy },
    webhook: { webhook, deliveries, csrf, ...state.webhook },
    password: { csrf, ...state.password },
    newWebhookSecret: state.newWebhookSecret,
  };
}
