/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import { z } from "zod";
import { settingsModel } from "../accounts/settings.ts";
import type { Deps } from "../deps.ts";
import { DomainError, parseInput } from "../errors.ts";
import { formFields, formOptionalText, formText } from "../portal/form.ts";
import { pageSession } from "../portal/page.ts";
import { authPlugin } from "../portal/plugin.ts";
import { htmlResponse, redirectAfterPost, wantsFragment } from "../portal/respond.ts";
import { SettingsPage } from "../../views/accounts/settings.tsx";
import { paths } from "../../views/components.tsx";
import { AdminLeaksPage } from "../../views/leaks/admin.tsx";
import { ReportLeakForm, ReportLeakPage, type ReportLeakFormState } from "../../views/leaks/report.tsx";
import { LEAK_POLICIES } from "./leaks.sql.ts";
import { leakPolicySchema, reportLeakSchema } from "./routes.ts";
import { leakPolicyFloor, listLeakReports, reportLeaks, setLeakPolicy, setLeakPolicyFloor } from "./service.ts";
import type { Session } from "../accounts/sessions.ts";

/** Reports on the operators' page: the latest; older ones stay in the table. */
const REPORTS_SHOWN = 200;

const policyForm = z.object({ policy: formText }).pipe(leakPolicySchema);
const floorForm = z.object({ floor: formText.pipe(z.enum(LEAK_POLICIES, { error: `must be one of ${LEAK_POLICIES.join(", ")}` })) });
const adminLeaksQuery = z.object({ done: z.enum(["floor"]).optional().catch(undefined) });

/**
 * Leaks in the portal: anyone signed in reports a key by pasting it (the keys page's form),
 * the account chooses its leak policy (the Settings page's "Leaked keys" card), and operators
 * read every report and set the floor (the 404 page for anyone else).
 */
export const leaksPortal = (deps: Deps) => {
  const reportSchema = reportLeakSchema(deps.config.keyPrefix);
  const reportFields = z.object({ key: formText, url: formOptionalText(null) });

  /**
   * The report form's answer: its fragment to htmx, else its page. The pasted key is in the
   * request, never in the answer; nothing in it says whose key it was or what was done.
   */
  async function reportAnswer(request: Request, session: Session, state: ReportLeakFormState, status: number): Promise<Response> {
    const headers = { "cache-control": "no-store", vary: "HX-Request" };
    if (wantsFragment(request)) return htmlResponse(ReportLeakForm({ state, csrf: session.csrfToken }), status, headers);
    // The keys page holds the form: a reload there shows it again, not this POST-only address.
    return htmlResponse(ReportLeakPage({ session: await pageSession(deps, session), state }), status, { ...headers, "hx-push-url": paths.keys });
  }

  async function adminPage(session: Session, extra: { saved?: boolean; floorErrors?: { field: string; message: string }[] } = {}) {
    const [reports, floor, layout] = await Promise.all([listLeakReports(deps, { limit: REPORTS_SHOWN }), leakPolicyFloor(deps), pageSession(deps, session)]);
    return AdminLeaksPage({
      session: layout,
      floor,
      limit: REPORTS_SHOWN,
      reports: reports.map((r) => ({ id: r.id, createdAt: r.createdAt.toISOString(), source: r.source, display: r.display, url: r.url, reporter: r.reporter, accountId: r.accountId, outcome: r.outcome, action: r.action })),
      ...extra,
    });
  }

  return new Elysia({ name: "leaks-portal" })
    .use(authPlugin(deps))
    .post("/portal/leaks", async ({ session, actor, body, request }) => {
      const f = formFields(body);
      let input: z.output<typeof reportSchema>;
      try {
        input = parseInput(reportSchema, reportFields.parse(f), "report");
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        return reportAnswer(request, session, { url: formText.parse(f.url), errors: err.errors }, 422);
      }
      // An operator's report is the operators' word, and says so in the list.
      await reportLeaks(deps, [{ token: input.key, url: input.url ?? null, source: session.isOperator ? "operator" : "portal" }], actor);
      return reportAnswer(request, session, { reported: true }, 200);
    }, { page: true })
    .post("/portal/settings/leaks", async ({ session, actor, body }) => {
      try {
        await setLeakPolicy(deps, session.accountId, parseInput(policyForm, formFields(body), "leak policy").policy, actor);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        return htmlResponse(SettingsPage(await settingsModel(deps, session, { leaks: { errors: err.errors } })), 422, { "hx-push-url": paths.settings });
      }
      return htmlResponse(SettingsPage(await settingsModel(deps, session, { leaks: { saved: true } })), 200, { "hx-push-url": paths.settings });
    }, { page: true })
    .get("/admin/leaks", async ({ session, query }) => htmlResponse(await adminPage(session, { saved: adminLeaksQuery.parse(query).done === "floor" })), { operator: true })
    .post("/admin/leaks/floor", async ({ session, actor, body, request }) => {
      try {
        await setLeakPolicyFloor(deps, parseInput(floorForm, formFields(body), "floor").floor, actor);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        return htmlResponse(await adminPage(session, { floorErrors: err.errors }), 422, { "hx-push-url": paths.adminLeaks });
      }
      return redirectAfterPost(request, paths.adminLeaksFloorSaved);
    }, { operator: true });
};
