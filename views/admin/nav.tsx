/** @jsxImportSource @kitajs/html */
import { paths } from "../components.tsx";
import { twoFactorPaths } from "../accounts/twofactor.tsx";

export type AdminSection = "accounts" | "products" | "plans" | "invoices" | "usage" | "mail" | "compliance" | "leaks" | "security";

const SECTIONS = [
  ["accounts", paths.adminAccounts, "Accounts"],
  ["products", paths.adminProducts, "Products"],
  ["plans", paths.adminPlans, "Plans"],
  ["invoices", paths.adminInvoices, "Invoices"],
  ["usage", paths.adminUsage, "Usage"],
  ["mail", paths.adminMail, "Mail"],
  ["compliance", paths.adminCompliance, "Compliance"],
  ["leaks", paths.adminLeaks, "Leaks"],
  ["security", twoFactorPaths.adminSecurity, "Sign-in"],
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
