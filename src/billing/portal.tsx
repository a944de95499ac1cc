/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import { z } from "zod";
import type { Deps } from "../deps.ts";
import { validateSession } from "../accounts/sessions.ts";
import { DomainError, parseInput } from "../errors.ts";
import { sessionToken } from "../portal/http.ts";
import { formFields, formText } from "../portal/form.ts";
import { pageSession } from "../portal/page.ts";
import { authPlugin } from "../portal/plugin.ts";
import { csvResponse, htmlResponse, messagePage, ownedOr404, redirectAfterPost, wantsFragment } from "../portal/respond.ts";
import { BillingPage, InvoicePage, PlanPreview, PlanPreviewError, PlanPreviewPage } from "../../views/billing/billing.tsx";
import { PricingPage, type PricingProduct } from "../../views/billing/pricing.tsx";
import { paths } from "../../views/components.tsx";
import { csvText } from "../ops/csv.ts";
import { PLAN_CHANGE_RULE, planChangeSchema, type InvoiceView, type PlanChangePreview } from "./model.ts";
import { changePlan, currentPlan, getInvoice, listInvoices, monthMeter, previewPlanChange } from "./service.ts";

/** The confirmation the Billing page shows after a change (only these words select it; the text comes from the state). */
const billingQuery = z.object({ changed: z.enum(["upgrade", "downgrade", "cancel", "same"]).optional().catch(undefined) });

/** The plan a form or query names, checked as the API checks it. */
const planField = (fields: Record<string, unknown>) => parseInput(planChangeSchema, { plan: formText.parse(fields.plan) }, "plan change");

/** The first message of a refused plan change, for people. */
const refusal = (err: DomainError) => err.errors?.map((e) => `The plan ${e.message}.`).join(" ") || err.detail;

/** What an invoice address asks for: `inv_….csv` is the CSV of `inv_…` (one route: the router cannot tell `:id` from `:id.csv`). */
function invoiceAddress(param: string): { id: string; csv: boolean } {
  return param.endsWith(".csv") ? { id: param.slice(0, -4), csv: true } : { id: param, csv: false };
}

/**
 * One invoice as CSV: a row per line as the printable page lists them, then the total
 * (amounts in integer cents), through the shared writer that defuses formula cells. The
 * month's export of every invoice is invoicesCsv's.
 */
export function invoiceLinesCsv(i: InvoiceView): string {
  const rows = i.lines.map((l) => [i.number, i.month, i.status, l.kind, l.planId, l.description, l.quantity, l.amountCents, i.currency]);
  rows.push([i.number, i.month, i.status, "total", "", `Total (${i.calls} calls, ${i.includedCalls} included)`, i.calls, i.totalCents, i.currency]);
  return csvText(["number", "month", "status", "line", "plan", "description", "quantity", "amount_cents", "currency"], rows);
}

/** Keyport's own products (the plans file's), then the registered ones as the registry serves them now. */
function pricingProducts(deps: Pick<Deps, "catalog" | "products">): PricingProduct[] {
  const own = deps.catalog.products.map((p) => ({ id: p.id, name: p.name, description: p.description, status: "active" as const }));
  const registered = deps.products.list().map((p) => ({ id: p.id, name: p.name, description: p.description, status: p.status }));
  return [...own, ...registered];
}

/**
 * The public pricing page and the account's Billing page: the month's meter, the plan with a
 * preview of a change before it is confirmed, and the invoices (a printable page and CSV each).
 */
export const billingPortal = (deps: Deps) =>
  new Elysia({ name: "billing-portal" })
    .use(authPlugin(deps))
    .get("/pricing", async ({ request }) => {
      // Public; signed in, it keeps the signed-in navigation and marks the account's plan.
      const session = await validateSession(deps, sessionToken(request));
      const [layout, current] = session ? await Promise.all([pageSession(deps, session), currentPlan(deps, session.accountId)]) : [undefined, undefined];
      // Signed in, the page is the account's (kept by no cache, like every signed-in page).
      const headers: Record<string, string> = session ? { "cache-control": "no-store" } : {};
      return htmlResponse(PricingPage({ session: layout, products: pricingProducts(deps), plans: deps.catalog.plans, includes: deps.catalog.includes, current: current?.plan.id }), 200, headers);
    })
    .get("/portal/billing", async ({ session, query }) => {
      const [meter, invoices, layout] = await Promise.all([monthMeter(deps, session.accountId), listInvoices(deps, session.accountId), pageSession(deps, session)]);
      return htmlResponse(BillingPage({ session: layout, meter, plans: deps.catalog.plans, invoices, rule: PLAN_CHANGE_RULE, changed: billingQuery.parse(query).changed }));
    }, { page: true })
    .get("/portal/billing/change", async ({ session, query, request }) => {
      const headers = { vary: "HX-Request" };
      let preview: PlanChangePreview | { error: string };
      let selected = "";
      try {
        selected = planField(formFields(query)).plan;
        preview = await previewPlanChange(deps, session.accountId, selected);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        preview = { error: refusal(err) };
      }
      const status = "error" in preview ? 422 : 200;
      if (wantsFragment(request)) {
        return htmlResponse("error" in preview ? PlanPreviewError({ message: preview.error }) : PlanPreview({ preview, csrfToken: session.csrfToken }), status, headers);
      }
      const [current, layout] = await Promise.all([currentPlan(deps, session.accountId), pageSession(deps, session)]);
      return htmlResponse(PlanPreviewPage({ session: layout, plans: deps.catalog.plans, current: current.plan.id, selected, rule: PLAN_CHANGE_RULE, preview }), status, headers);
    }, { page: true })
    .post("/portal/billing/plan", async ({ session, actor, body, request }) => {
      let kind: string;
      try {
        kind = (await changePlan(deps, session.accountId, planField(formFields(body)).plan, actor)).kind;
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        return messagePage(422, "Plan not changed", refusal(err), session);
      }
      return redirectAfterPost(request, `${paths.billing}?changed=${kind}`);
    }, { page: true })
    .get("/portal/billing/invoices/:id", async ({ session, params }) => {
      const at = invoiceAddress(params.id);
      const invoice = await ownedOr404(session, () => getInvoice(deps, session.accountId, at.id));
      if (invoice instanceof Response) return invoice;
      if (at.csv) return csvResponse(invoiceLinesCsv(invoice), `${invoice.number}.csv`);
      return htmlResponse(InvoicePage({ session: await pageSession(deps, session), invoice, email: session.email, csv: paths.invoiceCsv(invoice.id) }));
    }, { page: true });
