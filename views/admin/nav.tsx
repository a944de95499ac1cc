/** @jsxImportSource @kitajs/html */
import { paths } from "../components.tsx";

export type AdminSection = "accounts" | "products" | "plans" | "invoices" | "usage" | "mail" | "compliance" | "leaks";

const SECTIONS = [
  ["accounts", paths.adminAccounts, "Accounts"],
  ["products", paths.adminProducts, "Products"],
  ["plans", paths.adminPlans, "Plans"],
  ["invoices", paths.adminInvoices, "Invoices"],
  ["usage", paths.adminUsage, "Usage"],
  ["mail", paths.adminMail, "Mail"],
  ["compliance", paths.adminCompliance, "Compliance"],
  ["leaks", paths.adminLeaks, "Leaks"],
] as const satisfies readonly (readonly [AdminSection, string, string])[];

/** The operator's pages, linked from each of them (the header's "Operator" opens Accounts). */
export function AdminNav(props: { active: AdminSection }) {
  return (
    <nav class="subnav" aria-label="Operator">
      {SECTIONS.map(([id, href, label]) => (
        <a href={href} aria-current={props.active === id ? "page" : undefined}>
          {label}
        </a>
      ))}
    </nav>
  );
}
