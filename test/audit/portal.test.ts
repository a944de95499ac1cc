import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { email } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

for (const backend of backends) {
  describe(`audit portal [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    it("lists the account's events newest first, filters by action and key, and pages", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      for (let i = 0; i < 3; i++) {
        clock.advance(1000);
        await b.post("/portal/keys", { name: `k${i}`, scopes: "email:read", rateLimit: "60" });
      }
      const all = await b.page("/portal/audit");
      const actions = [...all.matchAll(/<td><code>([a-z._]+)<\/code><\/td>/g)].map((m) => m[1]);
      expect(actions.slice(0, 3)).toEqual(["key.created", "key.created", "key.created"]);
      expect(actions).toContain("account.created");
      const filtered = await b.page("/portal/audit?action=account.created");
      expect([...filtered.matchAll(/<td><code>([a-z._]+)<\/code><\/td>/g)].map((m) => m[1])).toEqual(["account.created"]);
      const other = new Browser(h);
      await other.signUp(email());
      expect(await other.page("/portal/audit")).not.toContain("key.created");
    });
  });
}
