/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import { z } from "zod";
import { settingsModel, type SettingsState } from "../accounts/settings.ts";
import type { Deps } from "../deps.ts";
import { listKeys } from "../keys/service.ts";
import { DomainError, parseInput } from "../errors.ts";
import { STATUS } from "../plugins/problem.ts";
import { formFields, formList, formText } from "../portal/form.ts";
import { pageSession } from "../portal/page.ts";
import { authPlugin } from "../portal/plugin.ts";
import { htmlResponse, messagePage, ownedOr404, redirectAfterPost } from "../portal/respond.ts";
import type { Session } from "../accounts/sessions.ts";
import { SettingsPage } from "../../views/accounts/settings.tsx";
import { paths } from "../../views/components.tsx";
import { NotificationsPage } from "../../views/notify/notifications.tsx";
import { webhookSchema } from "./model.ts";
import { listNotificationViews, markAllRead } from "./service.ts";
import { deleteWebhook, resendDelivery, rotateWebhookSecret, sendTestEvent, setWebhook } from "./webhooks.ts";

/**
 * The webhook form: the URL, the checked events and (operators) the private-target box.
 * `chooseEvents` comes with the form's event list, so no box checked is "none" (refused),
 * and a form without the list (a script's POST) keeps the default of every event.
 */
const webhookForm = z
  .object({ url: formText, allowPrivate: z.preprocess((v) => v !== undefined && v !== "", z.boolean()), events: formList, chooseEvents: formText })
  .transform(({ chooseEvents, events, ...rest }): Record<string, unknown> => (chooseEvents ? { ...rest, events } : rest))
  .pipe(webhookSchema);

/** The notifications page, and the webhook section of the settings page. */
export const notifyPortal = (deps: Deps) =>
  new Elysia({ name: "notify-portal" })
    .use(authPlugin(deps))
    .get("/portal/notifications", async ({ session }) => {
      const [layout, items, keys] = await Promise.all([pageSession(deps, session), listNotificationViews(deps.db, session.accountId), listKeys(deps, session.accountId)]);
      const byId = new Map(keys.map((k) => [k.id, k]));
      return htmlResponse(NotificationsPage({ session: layout, items: items.map(({ keyId, ...n }) => ({ ...n, key: keyId ? (byId.get(keyId) ?? null) : null })) }));
    }, { page: true })
    .post("/portal/notifications/read", async ({ session, request }) => {
      await markAllRead(deps.db, session.accountId, new Date(deps.clock.now()));
      return redirectAfterPost(request, paths.notifications);
    }, { page: true })
    .post("/portal/settings/webhook", async ({ session, actor, body }) => {
      const f = formFields(body);
      const submitted = { url: formText.parse(f.url), events: f.chooseEvents === undefined ? undefined : formList.parse(f.events), allowPrivate: f.allowPrivate !== undefined };
      try {
        const { secret } = await setWebhook(deps, session.accountId, parseInput(webhookForm, f, "webhook"), actor, session.isOperator);
        if (secret) return settingsPage(deps, session, { newWebhookSecret: secret }, 200, { "cache-control": "no-store" });
        return settingsPage(deps, session, { webhook: { notice: "Endpoint saved; its signing secret is unchanged." } });
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        return settingsPage(deps, session, { webhook: { errors: err.errors ?? [{ field: "url", message: err.detail }], ...submitted } }, 422);
      }
    }, { page: true })
    .post("/portal/settings/webhook/test", async ({ session }) => {
      const queued = await withWebhook(() => sendTestEvent(deps, session.accountId), session);
      return queued instanceof Response ? queued : settingsPage(deps, session, { webhook: { notice: "Test event queued: it is sent like any event, see Deliveries." } });
    }, { page: true })
    .post("/portal/settings/webhook/rotate-secret", async ({ session, actor }) => {
      const rotated = await withWebhook(() => rotateWebhookSecret(deps, session.accountId, actor), session);
      if (rotated instanceof Response) return rotated;
      return settingsPage(deps, session, { newWebhookSecret: rotated.secret }, 200, { "cache-control": "no-store" });
    }, { page: true })
    .post("/portal/settings/webhook/delete", async ({ session, actor }) => {
      await deleteWebhook(deps, session.accountId, actor);
      return settingsPage(deps, session, { webhook: { notice: "Endpoint removed; its pending deliveries are given up." } });
    }, { page: true })
    .post("/portal/settings/webhook/deliveries/:id/resend", async ({ session, params, request }) => {
      const done = await ownedOr404(session, () => withWebhook(() => resendDelivery(deps, session.accountId, params.id), session));
      return done instanceof Response ? done : redirectAfterPost(request, paths.settings);
    }, { page: true });

/** The settings page again, with the webhook section's outcome; it names the GET address for htmx's history. */
async function settingsPage(deps: Deps, session: Session, state: SettingsState, status = 200, headers: Record<string, string> = {}): Promise<Response> {
  return htmlResponse(SettingsPage(await settingsModel(deps, session, state)), status, { "hx-push-url": paths.settings, ...headers });
}

/** Runs an action on the account's endpoint; none answers the message page (409 no_webhook), and so does the throttle of manual sends (429). */
async function withWebhook<T>(fn: () => Promise<T>, session: Session): Promise<T | Response> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof DomainError && err.code === "no_webhook") return messagePage(STATUS[err.code], "No webhook", err.detail, session);
    if (err instanceof DomainError && err.code === "too_many_attempts") {
      const page = messagePage(STATUS[err.code], "Too many sends", err.detail, session);
      if (err.retryAfterSeconds !== undefined) page.headers.set("retry-after", String(err.retryAfterSeconds));
      return page;
    }
    throw err;
  }
}
