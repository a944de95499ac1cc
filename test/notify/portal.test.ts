import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { createAccount } from "../../src/accounts/service.ts";
import { cliActor } from "../../src/audit/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { email, signUpWithKey } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

for (const backend of backends) {
  describe(`notify portal: notifications, webhook [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
      // The first account of a database is an operator; take that place here (an operator
      // may set a private webhook target, which the webhook test expects refused).
      await createAccount(h.deps, { email: `first-${randomBytes(3).toString("hex")}@example.com`, password: "operator passphrase 1" }, cliActor);
    });
    afterAll(() => h.close());

    it("counts unread notifications in the navigation and lists them", async () => {
      const { b } = await signUpWithKey(h);
      const page = await b.page("/portal/keys");
      expect(page).toMatch(/Notifications<span class="count" aria-label="1 unread">1<\/span>/);
      const list = await b.page("/portal/notifications");
      expect(list).toContain("Key created");
      expect((await b.post("/portal/notifications/read", {})).status).toBe(303);
      expect(await b.page("/portal/keys")).not.toContain('class="count"');
    });

    it("sets a webhook showing its signing secret once, and refuses unsafe targets beside the field", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const bad = await b.post("/portal/settings/webhook", { url: "http://example.com/hook" });
      expect(bad.status).toBe(422);
      expect(await bad.text()).toContain("must use https");
      const internal = await b.post("/portal/settings/webhook", { url: "https://169.254.169.254/hook" });
      expect(internal.status).toBe(422);
      expect(await internal.text()).toContain("resolves to a private");
      const ok = await b.post("/portal/settings/webhook", { url: "https://93.184.216.34/hook" });
      expect(ok.status).toBe(200);
      expect(ok.headers.get("cache-control")).toBe("no-store");
      const secret = /whsec_[0-9A-Za-z]{32}/.exec(await ok.text())?.[0];
      expect(secret).toBeDefined();
      expect(await b.page("/portal/settings")).not.toContain(secret!);
    });
  });
}
