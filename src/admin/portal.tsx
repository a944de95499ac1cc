/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import { z } from "zod";
import type { Deps } from "../deps.ts";
import type { Session } from "../accounts/sessions.ts";
import { suspendAccount, unsuspendAccount } from "../accounts/service.ts";
import { resetTwoFactor, setTwoFactorRequired, twoFactorRequired, twoFactorStatus } from "../accounts/twofactor.ts";
import { auditRows } from "../audit/pages.ts";
import { listAuditEvents } from "../audit/service.ts";
import { invoicesCsv } from "../billing/csv.ts";
import { monthOf, previousMonth } from "../billing/invoices.ts";
import { PLAN_CHANGE_RULE, invoiceStatusSchema, monthSchema, planChangeSchema } from "../billing/model.ts";
import { changePlan, currentPlan, listInvoices, monthInvoices, setInvoiceStatus } from "../billing/service.ts";
import { DomainError, parseInput } from "../errors.ts";
import { listKeys } from "../keys/service.ts";
import { formFields, formText } from "../portal/form.ts";
import { pageSession } from "../portal/page.ts";
import { authPlugin } from "../portal/plugin.ts";
import { csvResponse, htmlResponse, messagePage, notFoundPage, ownedOr404, redirectAfterPost } from "../portal/respond.ts";
import { complianceCsv } from "../rotation/portal.tsx";
import { complianceReport } from "../rotation/compliance.ts";
import { CompliancePage } from "../../views/rotation/compliance.tsx";
import { AccountPage, type AccountDone, type AccountPageProps } from "../../views/admin/account.tsx";
import { AccountsPage } from "../../views/admin/accounts.tsx";
import { AdminInvoicesPage } from "../../views/admin/invoices.tsx";
import { AdminPlansPage } from "../../views/admin/plans.tsx";
import { AdminUsagePage } from "../../views/admin/usage.tsx";
import { AdminSecurityPage, type AdminSecurityPageProps } from "../../views/admin/security.tsx";
import { twoFactorPaths } from "../../views/accounts/twofactor.tsx";
import { paths } from "../../views/components.tsx";
import { dailyUsageByEnvironment, operatorAccount, planNames, plansWithAccounts, searchAccounts } from "./queries.ts";

/** The days the account and global usage charts cover. */
const USAGE_DAYS = 30;
/** Audit events on an account's page: the latest. */
const RECENT_EVENTS = 20;

const accountsQuery = z.object({
  q: formText.transform((s) => s.trim().slice(0, 254)),
  page: z.coerce.number().int().min(1).catch(1),
});
const accountQuery = z.object({ done: z.enum(["suspended", "unsuspended", "two_factor_reset", "upgrade", "downgrade", "cancel", "same"]).optional().catch(undefined) });
const securityQuery = z.object({ required: z.enum(["true", "false"]).optional().catch(undefined), ended: z.coerce.number().int().min(0).catch(0) });
const requireForm = z.object({ required: formText.pipe(z.enum(["true", "false"], { error: "must be true or false" })) });

/** The first message of a refusal, for people: the fields' messages, or the detail. */
const refusal = (err: DomainError) => err.errors?.map((e) => e.message).join("; ") || err.detail;

/** Everything an operator's page of one account shows; not_found when there is no such account. */
async function accountPageModel(deps: Deps, session: Session, accountId: string, extra: Partial<AccountPageProps> = {}): Promise<AccountPageProps> {
  const now = deps.clock.now();
  const account = await operatorAccount(deps.db, accountId, now);
  const [plan, keys, usage, invoices, audit, layout, twoFactor] = await Promise.all([
    currentPlan(deps, accountId),
    listKeys(deps, accountId),
    dailyUsageByEnvironment(deps.db, now, USAGE_DAYS, accountId),
    listInvoices(deps, accountId),
    listAuditEvents(deps.db, accountId, {}),
    pageSession(deps, session),
    twoFactorStatus(deps, accountId),
  ]);
  const events = await auditRows(deps, audit.data.slice(0, RECENT_EVENTS), keys);
  return { session: layout, account, plan, plans: deps.catalog.plans, rule: PLAN_CHANGE_RULE, keys, usage, invoices, events, now, twoFactor, ...extra };
}

/** The account's page again after a refused form (422), its address the account's page. */
async function refusedAccountPage(deps: Deps, session: Session, accountId: string, extra: Partial<AccountPageProps>): Promise<Response> {
  const data = await ownedOr404(session, () => accountPageModel(deps, session, accountId, extra));
  return data instanceof Response ? data : htmlResponse(AccountPage(data), 422, { "hx-push-url": paths.adminAccount(accountId) });
}

/** The month an invoices page or CSV asks for: `month=YYYY-MM`, or the last month closed. */
function askedMonth(deps: Deps, query: Record<string, unknown>): { month: string; error?: string } {
  const fallback = previousMonth(monthOf(deps.clock.now()));
  const raw = formText.parse(query.month).trim();
  if (raw === "") return { month: fallback };
  const r = monthSchema.safeParse(raw);
  return r.success ? { month: r.data } : { month: fallback, error: `The month ${r.error.issues[0]!.message}; showing ${fallback}.` };
}

/**
 * Operators' pages (the 404 page for anyone else): accounts with search, an account's page
 * with suspend / unsuspend and plan change, the plans, a month's invoices (mark paid / void,
 * CSV), global usage, and every account's key compliance. Every action goes through the
 * owning service with the operator as the audit actor (the `operator` macro's).
 */
export const adminPortal = (deps: Deps) => {
  const accountsPage = async (session: Session, query: unknown) => {
    const { q, page } = accountsQuery.parse(query);
    const [found, names, layout] = await Promise.all([searchAccounts(deps.db, { q, page }, deps.clock.now()), planNames(deps.db), pageSession(deps, session)]);
    return htmlResponse(AccountsPage({ session: layout, accounts: found.accounts, planNames: names, q, total: found.total, page: found.page, pages: found.pages }));
  };
  const securityPage = async (session: Session, extra: Pick<AdminSecurityPageProps, "done" | "errors"> = {}, status = 200) => {
    const [required, self, layout] = await Promise.all([twoFactorRequired(deps), twoFactorStatus(deps, session.accountId), pageSession(deps, session)]);
    return htmlResponse(AdminSecurityPage({ session: layout, required, selfEnrolled: self.enabled, ...extra }), status, status === 200 ? {} : { "hx-push-url": twoFactorPaths.adminSecurity });
  };
  return (
  new Elysia({ name: "admin-portal" })
    .use(authPlugin(deps))
    // The operator's home is the accounts list.
    .get("/admin", ({ session, query }) => accountsPage(session, query), { operator: true })
    .get("/admin/accounts", ({ session, query }) => accountsPage(session, query), { operator: true })
    .get("/admin/accounts/:id", async ({ session, params, query }) => {
      const data = await ownedOr404(session, () => accountPageModel(deps, session, params.id, { done: accountQuery.parse(query).done }));
      return data instanceof Response ? data : htmlResponse(AccountPage(data));
    }, { operator: true })
    .post("/admin/accounts/:id/suspend", async ({ session, actor, params, body, request }) => {
      const fields = formFields(body);
      try {
        // The service checks the reason (required: the account's users are shown it).
        await suspendAccount(deps, params.id, formText.parse(fields.reason), actor);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        if (err.code === "not_found") return refusedAccountPage(deps, session, params.id, {});
        return refusedAccountPage(deps, session, params.id, { suspendForm: { reason: formText.parse(fields.reason), error: refusal(err) } });
      }
      return redirectAfterPost(request, `${paths.adminAccount(params.id)}?done=${"suspended" satisfies AccountDone}`);
    }, { operator: true })
    .post("/admin/accounts/:id/unsuspend", async ({ session, actor, params, request }) => {
      const done = await ownedOr404(session, () => unsuspendAccount(deps, params.id, actor));
      return done instanceof Response ? done : redirectAfterPost(request, `${paths.adminAccount(params.id)}?done=${"unsuspended" satisfies AccountDone}`);
    }, { operator: true })
    .post("/admin/accounts/:id/plan", async ({ session, actor, params, body, request }) => {
      let kind: AccountDone;
      try {
        const { plan } = parseInput(planChangeSchema, { plan: formText.parse(formFields(body).plan) }, "plan change");
        kind = (await changePlan(deps, params.id, plan, actor)).kind;
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        return refusedAccountPage(deps, session, params.id, err.code === "not_found" ? {} : { planError: refusal(err) });
      }
      return redirectAfterPost(request, `${paths.adminAccount(params.id)}?done=${kind}`);
    }, { operator: true })
    .post("/admin/accounts/:id/two-factor/reset", async ({ session, actor, params, request }) => {
      const done = await ownedOr404(session, () => resetTwoFactor(deps, params.id, actor));
      if (done instanceof Response) return done;
      // The operator's own account: its sessions, this one too, just ended.
      return redirectAfterPost(request, params.id === session.accountId ? paths.login : `${paths.adminAccount(params.id)}?done=${"two_factor_reset" satisfies AccountDone}`);
    }, { operator: true })
    .get(twoFactorPaths.adminSecurity, ({ session, query }) => {
      const q = securityQuery.parse(query);
      return securityPage(session, q.required ? { done: { required: q.required === "true", sessionsEnded: q.ended } } : {});
    }, { operator: true })
    .post(twoFactorPaths.adminRequire, async ({ session, actor, body, request }) => {
      let ended: number;
      let required: boolean;
      try {
        required = parseInput(requireForm, formFields(body), "setting").required === "true";
        ended = (await setTwoFactorRequired(deps, required, session.accountId, actor)).sessionsEnded;
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        return securityPage(session, { errors: err.errors }, 422);
      }
      return redirectAfterPost(request, `${twoFactorPaths.adminSecurity}?required=${required}&ended=${ended}`);
    }, { operator: true })
    .get("/admin/plans", async ({ session }) => {
      const [plans, layout] = await Promise.all([plansWithAccounts(deps.db, deps.clock.now()), pageSession(deps, session)]);
      return htmlResponse(AdminPlansPage({ session: layout, plans }));
    }, { operator: true })
    .get("/admin/invoices", async ({ session, query }) => {
      const { month, error } = askedMonth(deps, query);
      const [invoices, layout] = await Promise.all([monthInvoices(deps, month), pageSession(deps, session)]);
      const updated = typeof query.updated === "string" ? invoices.find((i) => i.id === query.updated) : undefined;
      return htmlResponse(AdminInvoicesPage({ session: layout, month, invoices, error, done: updated && { number: updated.number, status: updated.status } }), error ? 422 : 200);
    }, { operator: true })
    .post("/admin/invoices/:id/status", async ({ session, actor, params, body, request }) => {
      let month: string;
      try {
        const { status } = parseInput(invoiceStatusSchema, { status: formText.parse(formFields(body).status) }, "status");
        month = (await setInvoiceStatus(deps, params.id, status, actor)).month;
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        if (err.code === "not_found") return notFoundPage(session);
        const layout = await pageSession(deps, session);
        const fallback = previousMonth(monthOf(deps.clock.now()));
        return htmlResponse(AdminInvoicesPage({ session: layout, month: fallback, invoices: await monthInvoices(deps, fallback), error: refusal(err) }), 422, { "hx-push-url": paths.adminInvoices });
      }
      return redirectAfterPost(request, `${paths.adminInvoicesMonth(month)}&updated=${encodeURIComponent(params.id)}`);
    }, { operator: true })
    .get("/admin/invoices.csv", async ({ session, query }) => {
      const { month, error } = askedMonth(deps, query);
      if (error) return messagePage(400, "Bad request", error.replace(/; showing .*$/, "."), session);
      return csvResponse(invoicesCsv(await monthInvoices(deps, month)), `invoices-${month}.csv`);
    }, { operator: true })
    .get("/admin/usage", async ({ session }) => {
      const now = deps.clock.now();
      const [days, compliance, layout] = await Promise.all([dailyUsageByEnvironment(deps.db, now, USAGE_DAYS), complianceReport(deps.db, now), pageSession(deps, session)]);
      return htmlResponse(AdminUsagePage({ session: layout, days, compliance }));
    }, { operator: true })
    .get("/admin/compliance", async ({ session }) => {
      const report = await complianceReport(deps.db, deps.clock.now());
      return htmlResponse(CompliancePage({ session: await pageSession(deps, session), report, now: deps.clock.now(), operator: true }));
    }, { operator: true })
    .get("/admin/compliance.csv", async () => complianceCsv(await complianceReport(deps.db, deps.clock.now())), { operator: true }));
};
