/** @jsxImportSource @kitajs/html */
import type { Plan } from "../../src/billing/model.ts";
import { TableScroll, formatCents, formatCount, paths } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";

/** A product on the pricing page: one of Keyport's own (the plans file's) or a registered one. */
export interface PricingProduct {
  id: string;
  name: string;
  description: string;
  /** A registered product's `beta` or `deprecated` shows as a badge. */
  status: "active" | "beta" | "deprecated";
}

/** The reference's section of a product: its tag on /docs. */
const productDocs = (id: string) => `/docs#tag-${encodeURIComponent(id)}`;

const STATUS_CLASSES: Record<PricingProduct["status"], string> = { active: "badge", beta: "badge badge-beta", deprecated: "badge badge-deprecated" };

/** Whether a plan includes a product: a plan absent from `includes` includes every product. */
export function planIncludes(includes: ReadonlyMap<string, ReadonlySet<string>>, planId: string, productId: string): boolean {
  const listed = includes.get(planId);
  return listed === undefined || listed.has(productId);
}

/** "$3.00 per 1,000 over" or "hard cap": what calls past the included ones do on a plan. */
export function overageText(p: Pick<Plan, "overageCentsPer1000">): string {
  return p.overageCentsPer1000 === null ? "hard cap" : `${formatCents(p.overageCentsPer1000)} per started 1,000`;
}

/** "$49.00 a month, 10,000 calls included, $3.00 per started 1,000 over, 20 requests/s". */
export function planSummary(p: Plan): string {
  const over = p.overageCentsPer1000 === null ? "a hard cap" : `${formatCents(p.overageCentsPer1000)} per started 1,000 over`;
  return `${formatCents(p.priceCents)} a month, ${formatCount(p.includedCalls)} calls included, ${over}, ${formatCount(p.requestsPerSecond)} requests/s`;
}

/**
 * The plans side by side, one column each (a table that scrolls sideways on a narrow screen);
 * given products and some plan that lists its own, a row per product says which plans include it.
 */
export function PlanComparison(props: { plans: Plan[]; current?: string; products?: PricingProduct[]; includes?: ReadonlyMap<string, ReadonlySet<string>> }) {
  const includes = props.includes ?? new Map<string, ReadonlySet<string>>();
  const products = props.products ?? [];
  return (
    <TableScroll>
      <table class="plans">
        <caption class="visually-hidden">The plans compared</caption>
        <thead>
          <tr>
            <td></td>
            {props.plans.map((p) => (
              <th scope="col" aria-current={props.current === p.id ? "true" : undefined}>
                <span safe>{p.name}</span>
                {props.current === p.id ? <span class="badge badge-active">your plan</span> : ""}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          <tr>
            <th scope="row">Price per month</th>
            {props.plans.map((p) => (
              <td class="price" safe>
                {formatCents(p.priceCents)}
              </td>
            ))}
          </tr>
          <tr>
            <th scope="row">Included calls per month</th>
            {props.plans.map((p) => (
              <td safe>{formatCount(p.includedCalls)}</td>
            ))}
          </tr>
          <tr>
            <th scope="row">Over the included calls</th>
            {props.plans.map((p) => (
              <td safe>{overageText(p)}</td>
            ))}
          </tr>
          <tr>
            <th scope="row">Requests per second (all keys together)</th>
            {props.plans.map((p) => (
              <td safe>{formatCount(p.requestsPerSecond)}</td>
            ))}
          </tr>
          <tr>
            <th scope="row">About</th>
            {props.plans.map((p) => (
              <td safe>{p.description}</td>
            ))}
          </tr>
          {products.map((product) => (
            <tr class="plan-product">
              <th scope="row" safe>
                {product.name}
              </th>
              {props.plans.map((p) =>
                planIncludes(includes, p.id, product.id) ? (
                  <td class="included">
                    <span aria-hidden="true">✓</span>
                    <span class="visually-hidden">included</span>
                  </td>
                ) : (
                  <td class="not-included">
                    <span aria-hidden="true">—</span>
                    <span class="visually-hidden">not included</span>
                  </td>
                ),
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </TableScroll>
  );
}

/** The billing rules in words: what counts, what a change of plan does, when a month closes. */
export function BillingRules() {
  return (
    <ul class="rules">
      <li>
        <strong>What counts:</strong> successful answers (2xx) to calls made with <em>live</em> keys, one per item for a batch. Refusals (401, 403, 429) and server errors never
        count. Test keys, the API reference's sandbox key included, are never billed.
      </li>
      <li>
        <strong>Over the included calls:</strong> a plan with an overage price keeps serving and bills each started 1,000 calls over the included ones at that price; a plan with a
        hard cap answers 429 <code>quota_exceeded</code> until the month turns.
      </li>
      <li>
        <strong>Upgrade:</strong> applies at once. This month's base fee and included calls are split by the fraction of the month, in seconds, spent on each plan; the calls already
        made still count (the counter is not reset), and calls over the included ones are priced at the new plan's rate.
      </li>
      <li>
        <strong>Downgrade:</strong> takes effect at the start of next month; until then the current plan stays in force.
      </li>
      <li>
        <strong>Invoices:</strong> one per calendar month (UTC), in US dollars, finalized when the month closes.
      </li>
    </ul>
  );
}

export function PricingPage(props: { session?: PageSession; products: PricingProduct[]; plans: Plan[]; includes: ReadonlyMap<string, ReadonlySet<string>>; current?: string }) {
  // Only when some plan lists its products does the comparison need a row per product.
  const everyPlanEveryProduct = props.plans.every((p) => !props.includes.has(p.id));
  return (
    <Layout title="Pricing" session={props.session} active="pricing">
      <h1>Pricing</h1>
      <section class="card">
        <h2>Plans</h2>
        <PlanComparison plans={props.plans} current={props.current} products={everyPlanEveryProduct ? [] : props.products} includes={props.includes} />
        <p>
          {props.session ? (
            <>
              Change your plan on the <a href={paths.billing}>Billing page</a>, with a preview of the effect before you confirm.
            </>
          ) : (
            <>
              <a class="button" href={paths.signup}>
                Sign up
              </a>{" "}
              to start on the free plan; change plans at any time from the Billing page.
            </>
          )}
        </p>
      </section>
      <section class="card">
        <h2>APIs</h2>
        <p>
          {everyPlanEveryProduct
            ? "Every plan includes every API; the included calls are shared by all of them."
            : "The table above shows which plans include each API (✓ included, — not included); a plan's included calls are shared by the APIs it includes."}
        </p>
        <dl class="facts">
          {props.products.map((p) => (
            <>
              <dt id={`product-${p.id}`}>
                <a href={productDocs(p.id)} safe>
                  {p.name}
                </a>
                {p.status === "active" ? (
                  ""
                ) : (
                  <>
                    {" "}
                    <span class={STATUS_CLASSES[p.status]}>
                      {p.status}
                    </span>
                  </>
                )}
              </dt>
              <dd safe>{p.description}</dd>
            </>
          ))}
        </dl>
      </section>
      <section class="card">
        <h2>How billing works</h2>
        <BillingRules />
      </section>
    </Layout>
  );
}
