/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import { settingsModel } from "../accounts/settings.ts";
import type { Deps } from "../deps.ts";
import { DomainError } from "../errors.ts";
import { formFields, formText } from "../portal/form.ts";
import { pageSession } from "../portal/page.ts";
import { authPlugin } from "../portal/plugin.ts";
import { htmlResponse, ownedOr404, redirectAfterPost } from "../portal/respond.ts";
import { SettingsPage } from "../../views/accounts/settings.tsx";
import { paths } from "../../views/components.tsx";
import { NotificationsPage } from "../../views/notify/notifications.tsx";
import { listNotificationViews, markAllRead } from "./service.ts";
import { resendDelivery, setWebhook } from "./webhooks.ts";

/** The notifications page, and the webhook section of the settings page. */
export const notifyPortal = (deps: Deps) =>
  new Elysia({ name: "notify-portal" })
    .use(authPlugin(deps))
    .get("/portal/notifications", async ({ session }) => {
      const [layout, items] = await Promise.all([pageSession(deps, session), listNotificationViews(deps.db, session.accountId)]);
      return htmlResponse(NotificationsPage({ session: layout, items }));
    }, { page: true })
    .post("/portal/notifications/read", async ({ session, request }) => {
      await markAllRead(deps.db, session.accountId, new Date(deps.clock.now()));
      return redirectAfterPost(request, paths.notifications);
    }, { page: true })
    .post("/portal/settings/webhook", async ({ session, actor, body }) => {
      const url = formText.parse(formFields(body).url);
      try {
        const { secret } = await setWebhook(deps, session.accountId, { url }, actor, session.isOperator);
        return htmlResponse(SettingsPage(await settingsModel(deps, session, { newWebhookSecret: secret })), 200, { "cache-control": "no-store", "hx-push-url": paths.settings });
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        return htmlResponse(SettingsPage(await settingsModel(deps, session, { webhook: { errors: err.errors ?? [{ field: "url", message: err.detail }], url } })), 422, { "hx-push-url": paths.settings });
      }
    }, { page: true })
    .post("/portal/settings/webhook/deliveries/:id/resend", async ({ session, params, request }) => {
      const done = await ownedOr404(() => resendDelivery(deps, session.accountId, params.id));
      return done instanceof Response ? done : redirectAfterPost(request, paths.settings);
    }, { page: true });
