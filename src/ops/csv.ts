import { stringify } from "csv-stringify/sync";

/** What a CSV cell may hold: text, a number, or nothing (an empty cell). */
export type CsvCell = string | number | null | undefined;

/**
 * The one CSV writer of the product (compliance, usage, invoices, exports): RFC 4180 quoting
 * by csv-stringify, a header row even when there are no rows, and every text cell a
 * spreadsheet would run as a formula defused. OWASP's rule (CSV Injection): a cell beginning
 * with `=`, `+`, `-`, `@`, tab or CR starts with a single quote instead, so Excel, LibreOffice
 * and Google Sheets show it as text; csv-stringify's `escape_formulas` applies it (and to the
 * full-width `＝ ＋ － ＠` Apple Numbers normalises), to strings only: a negative number
 * stays a number. Cells come from other tenants (key names, emails) and reach an operator's
 * spreadsheet, so no writer may opt out.
 *
 * @example
 * csvText(["name", "calls"], [["=HYPERLINK(\"http://x\")", -3]])
 * // 'name,calls\n"\'=HYPERLINK(""http://x"")",-3\n'
 */
export function csvText(columns: readonly string[], rows: Iterable<readonly CsvCell[]>): string {
  return stringify(Array.from(rows, (r) => [...r]), { header: true, columns: [...columns], escape_formulas: true });
}
