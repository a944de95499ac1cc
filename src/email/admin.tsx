/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";
import { pageSession } from "../portal/page.ts";
import { authPlugin } from "../portal/plugin.ts";
import { htmlResponse } from "../portal/respond.ts";
import { ADMIN_MAIL_PATH, AdminMailPage } from "../../views/email/admin.tsx";
import { failedMail, queuedMail } from "./outbox.ts";

/** The failed messages the page lists: the latest; older ones stay in the table. */
const FAILED_SHOWN = 50;

/**
 * The operators' view of the outbox (the 404 page for anyone else, by the `operator`
 * macro): how many messages wait, and the ones that failed for good, with their last error.
 */
export const mailAdminPortal = (deps: Deps) =>
  new Elysia({ name: "mail-admin-portal" }).use(authPlugin(deps)).get(
    ADMIN_MAIL_PATH,
    async ({ session }) => {
      const [failed, queued, layout] = await Promise.all([failedMail(deps.db, FAILED_SHOWN), queuedMail(deps.db), pageSession(deps, session)]);
      return htmlResponse(
        AdminMailPage({
          session: layout,
          queued,
          failed: failed.map((m) => ({ ...m, createdAt: m.createdAt.toISOString(), failedAt: m.failedAt?.toISOString() ?? null })),
          limit: FAILED_SHOWN,
          transport: deps.mailer.transport.kind,
        }),
      );
    },
    { operator: true },
  );
