import { stringify } from "csv-stringify/sync";
import type { InvoiceView } from "./model.ts";

export const INVOICE_CSV_COLUMNS = ["number", "account", "email", "month", "status", "calls", "included_calls", "total_cents", "currency", "finalized_at"] as const;

/**
 * Invoices as CSV (RFC 4180 quoting, a header row even when there are none), for a team's
 * own billing or accounting tools. Amounts stay integer cents. No cell needs defusing
 * against spreadsheet formulas: numbers, statuses and dates are ours, and an email passed
 * zod's check at sign-up (src/accounts/service.ts emailSchema): letters, digits and
 * `_ ' + - .` before the @, so no `=`, `|`, `!` or parenthesis a formula would need.
 */
export function invoicesCsv(invoices: readonly (InvoiceView & { email?: string })[]): string {
  return stringify(
    invoices.map((i) => [i.number, i.accountId, i.email ?? "", i.month, i.status, i.calls, i.includedCalls, i.totalCents, i.currency, i.finalizedAt]),
    { header: true, columns: [...INVOICE_CSV_COLUMNS] },
  );
}
