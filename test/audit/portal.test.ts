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
      const address = email();
      await b.signUp(address);
      for (let i = 0; i < 3; i++) {
        clock.advance(1000);
        await b.post("/portal/keys", { name: `k${i}`, scopes: "email:read", rateLimit: "60" });
      }
      const all = await b.page("/portal/audit");
      const actionsOf = (html: string) => [...html.matchAll(/<summary>([a-z._]+)<\/summary>/g)].map((m) => m[1]);
      const actions = actionsOf(all);
      expect(actions.slice(0, 3)).toEqual(["key.created", "key.created", "key.created"]);
      expect(actions).toContain("account.created");
      const filtered = await b.page("/portal/audit?action=account.created");
      expect(actionsOf(filtered)).toEqual(["account.created"]);
      // In words and names: the sentence, the key's name with its masked form, the actor's email.
      expect(all).toContain("Key “k2” created");
      expect(all).toMatch(/<span>k2<\/span> <code>kp_live_\w{4}…\w{4}<\/code>/);
      expect(all).toContain(`<td>${address}</td>`);
      expect(all).not.toMatch(/<td>account:acct_/);
      const other = new Browser(h);
      await other.signUp(email());
      expect(await other.page("/portal/audit")).not.toContain("key.created");
    });
  });
}
