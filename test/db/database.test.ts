import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { sql } from "drizzle-orm";
import { createAccount } from "../../src/accounts/service.ts";
import { cliActor } from "../../src/audit/service.ts";
import { auditEvents } from "../../src/db/schema.ts";
import { DomainError } from "../../src/errors.ts";
import { backends } from "../support/backends.ts";
import { startHarness, type Harness } from "../support/harness.ts";

for (const backend of backends) {
  describe(`database [${backend.name}]`, () => {
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend);
    });
    afterAll(() => h.close());

    it("has every table of the schema after the migrations", async () => {
      const rows = await h.deps.db.execute<{ table_name: string }>(
        sql`select table_name from information_schema.tables where table_schema = 'public' order by table_name`,
      );
      const names = (Array.isArray(rows) ? rows : (rows as { rows: { table_name: string }[] }).rows).map((r) => r.table_name);
      expect(names).toEqual(expect.arrayContaining(["accounts", "api_keys", "audit_events", "key_usage", "sessions", "usage_flushes"]));
    });

    it("applies the migrations again as a no-op", async () => {
      await h.deps.database.migrate();
      await h.deps.database.migrate();
    });

    it("makes the first account an operator, later ones not, and audits both", async () => {
      const first = await createAccount(h.deps, { email: "  Owner@Example.COM ", password: "a long enough password" }, cliActor);
      const second = await createAccount(h.deps, { email: "dev@example.com", password: "another long password" }, cliActor);
      expect(first.email).toBe("owner@example.com");
      expect(first.isOperator).toBe(true);
      expect(second.isOperator).toBe(false);
      expect(first.passwordHash.startsWith("$argon2id$")).toBe(true);
      const events = await h.deps.db.select().from(auditEvents);
      expect(events.filter((e) => e.action === "account.created").length).toBe(2);
    });

    it("refuses a bad email, a short password and a taken email, writing nothing", async () => {
      const cases = [
        { email: "not-an-email", password: "a long enough password" },
        { email: "ok@example.com", password: "short" },
        { email: "owner@example.com", password: "a long enough password" },
      ];
      for (const input of cases) {
        const err = await createAccount(h.deps, input, cliActor).catch((e) => e);
        expect(err).toBeInstanceOf(DomainError);
      }
      const events = await h.deps.db.select().from(auditEvents);
      expect(events.length).toBe(2);
    });
  });
}
