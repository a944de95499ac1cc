import { z } from "zod";

/**
 * Coercers from an HTML form's fields (strings, a list when a name repeats, absent when
 * unchecked) to the values a capability's schema checks. A portal form schema is an object
 * of these piped into that schema, so a form and the JSON API refuse the same input with the
 * same messages:
 *
 * @example
 * const keyForm = z.object({ name: formText, rateLimit: formNumber(60) }).pipe(createKeySchema);
 */

/** The field's text (the first, when a name repeats); none is "". */
export const formText = z.preprocess((v) => (typeof v === "string" ? v : Array.isArray(v) ? String(v[0] ?? "") : ""), z.string());

/** The field's text trimmed, or `empty` when there is none. */
export const formOptionalText = <E>(empty: E) => formText.transform((s) => (s.trim() === "" ? empty : s.trim()));

/** Every value of a repeated field (checkboxes); none is []. */
export const formList = z.preprocess((v) => (Array.isArray(v) ? v.map(String) : typeof v === "string" && v !== "" ? [v] : []), z.array(z.string()));

/** Entries separated by commas, spaces or lines (an IP allowlist textarea). */
export const formEntries = formText.transform((s) =>
  s
    .split(/[\s,]+/)
    .map((e) => e.trim())
    .filter(Boolean),
);

/**
 * A number field: empty → `empty`; a number → that number; anything else stays text, so the
 * schema's number check refuses it with its own message beside the field.
 */
export const formNumber = <E>(empty: E) =>
  formText.transform((raw): number | string | E => {
    const s = raw.trim();
    if (s === "") return empty;
    return /^-?\d+(\.\d+)?$/.test(s) ? Number(s) : s;
  });

/** A form body as an object of fields (a body that is not one is an empty form). */
export function formFields(body: unknown): Record<string, unknown> {
  return body && typeof body === "object" && !Array.isArray(body) ? (body as Record<string, unknown>) : {};
}
