import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { createAccount } from "../../src/accounts/service.ts";
import { cliActor } from "../../src/audit/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { signUpWithKey } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

for (const backend of backends) {
  describe(`admin portal: compliance [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
      // The first account of a database is an operator; take that place here.
      await createAccount(h.deps, { email: `first-${randomBytes(3).toString("hex")}@example.com`, password: "operator passphrase 1" }, cliActor);
    });
    afterAll(() => h.close());

    it("reports compliance for the account, with CSV, and the operator page only for operators", async () => {
      const { b, id, address } = await signUpWithKey(h);
      clock.advance(100 * 86_400_000);
      // The session lapsed in 100 idle days (30-day sliding expiry): log in again.
      expect((await b.get("/portal")).status).toBe(303);
      expect((await b.post("/login", { email: address, password: "a long and unusual passphrase" })).status).toBe(303);
      const page = await b.page("/portal/compliance");
      expect(page).toContain("over 90 d");
      expect(page).toMatch(/<dt>Within policy<\/dt><dd>0 %<\/dd>/);
      const csv = await (await b.get("/portal/compliance.csv")).text();
      expect(csv.split("\n")[0]).toBe("key_id,name,account,environment,created_at,age_days,max_age_days,over_policy,rotation_state,rotation_due_at");
      expect(csv).toContain(`${id},svc,`);
      expect((await b.get("/admin/compliance")).status).toBe(404);

      const op = new Browser(h);
      const res = await op.post("/login", { email: (await h.deps.db.query.accounts.findFirst({ where: (a, { eq }) => eq(a.isOperator, true) }))!.email, password: "operator passphrase 1" });
      expect(res.status).toBe(303);
      const admin = await op.page("/admin/compliance");
      expect(admin).toContain("Compliance across all accounts");
      expect(admin).toContain("svc");
    });
  });
}
