import { csvText } from "../ops/csv.ts";
import type { InvoiceView } from "./model.ts";

export const INVOICE_CSV_COLUMNS = ["number", "account", "email", "month", "status", "calls", "included_calls", "total_cents", "currency", "finalized_at"] as const;

/**
 * Invoices as CSV (the shared writer: RFC 4180 quoting, a header row even when there are
 * none, formula cells defused), for a team's own billing or accounting tools. Amounts stay
 * integer cents. An email may begin with `+` or `-` (zod's check allows both before the @),
 * which a spreadsheet reads as the start of a formula.
 */
export function invoicesCsv(invoices: readonly (InvoiceView & { email?: string })[]): string {
  return csvText(
    INVOICE_CSV_COLUMNS,
    invoices.map((i) => [i.number, i.accountId, i.email ?? "", i.month, i.status, i.calls, i.includedCalls, i.totalCents, i.currency, i.finalizedAt]),
  );
}
