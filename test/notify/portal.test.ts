import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { createAccount } from "../../src/accounts/service.ts";
import { cliActor } from "../../src/audit/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { NOTIFICATION_EVENTS } from "../../src/notify/notify.sql.ts";
import { WebhookSection } from "../../views/notify/webhook.tsx";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { email, signUpWithKey } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

for (const backend of backends) {
  describe(`notify portal: notifications, webhook [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    const operatorLogin = { email: `first-${randomBytes(3).toString("hex")}@example.com`, password: "operator passphrase 1" };
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
      // The first account of a database is an operator; take that place here (an operator
      // may set a private webhook target, which the webhook test expects refused).
      await createAccount(h.deps, operatorLogin, cliActor);
    });
    afterAll(() => h.close());

    it("counts unread notifications in the navigation and lists them", async () => {
      const { b } = await signUpWithKey(h);
      const page = await b.page("/portal/keys");
      expect(page).toMatch(/Notifications<span class="count" aria-label="1 unread">1<\/span>/);
      const list = await b.page("/portal/notifications");
      expect(list).toContain("Key created");
      // The key by its name and masked form, not its id.
      expect(list).toMatch(/<span>svc<\/span> <code>kp_live_\w{4}…\w{4}<\/code>/);
      expect(list).not.toMatch(/>key_\w+</);
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
      expect(await internal.text()).toContain("is not a public address");
      const ok = await b.post("/portal/settings/webhook", { url: "https://93.184.216.34/hook" });
      expect(ok.status).toBe(200);
      expect(ok.headers.get("cache-control")).toBe("no-store");
      const secret = /whsec_[0-9A-Za-z]{32}/.exec(await ok.text())?.[0];
      expect(secret).toBeDefined();
      expect(await b.page("/portal/settings")).not.toContain(secret!);
    });

    it("shows operators the private-target switch and sets a loopback receiver with it; other accounts get neither", async () => {
      const server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("ok") });
      try {
        const url = `http://127.0.0.1:${server.port}/hook`;
        const op = new Browser(h);
        expect((await op.post("/login", operatorLogin)).status).toBe(303);
        const settings = await op.page("/portal/settings");
        expect(settings).toContain("Allow private and loopback targets");
        expect(settings).toContain("plain http only for localhost, with private and loopback targets allowed below");
        const set = await op.post("/portal/settings/webhook", { url, allowPrivate: "true", chooseEvents: "1", events: [...NOTIFICATION_EVENTS] });
        expect(set.status).toBe(200);
        expect(await set.text()).toMatch(/whsec_[0-9A-Za-z]{32}/);
        expect(await op.page("/portal/settings")).toMatch(/name="allowPrivate" value="true" checked/);

        const b = new Browser(h);
        await b.signUp(email());
        const page = await b.page("/portal/settings");
        expect(page).not.toContain('name="allowPrivate"');
        expect(page).toContain("private and loopback targets (localhost too) are refused; only an operator&#x27;s account may allow them");
        const refused = await b.post("/portal/settings/webhook", { url, allowPrivate: "true" });
        expect(refused.status).toBe(422);
        expect(await refused.text()).toContain("is not a public address");
      } finally {
        server.stop(true);
      }
    });

    it("saves the chosen events keeping the secret, queues a test event, rotates the secret once and removes the endpoint", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const url = "https://93.184.216.34/hook";
      const first = /whsec_[0-9A-Za-z]{32}/.exec(await (await b.post("/portal/settings/webhook", { url })).text())![0];
      const none = await b.post("/portal/settings/webhook", { url, chooseEvents: "1" });
      expect(none.status).toBe(422);
      expect(await none.text()).toContain("choose at least one event");

      const saved = await b.post("/portal/settings/webhook", { url, chooseEvents: "1", events: ["key.revoked", "key.leaked"] });
      expect(saved.status).toBe(200);
      const savedPage = await saved.text();
      expect(savedPage).toContain("Endpoint saved; its signing secret is unchanged.");
      expect(savedPage).not.toContain("whsec_");
      const checked = [...savedPage.matchAll(/name="events" value="([a-z._]+)" checked/g)].map((m) => m[1]);
      expect(checked).toEqual(["key.revoked", "key.leaked"]);

      const test = await b.post("/portal/settings/webhook/test", {});
      expect(test.status).toBe(200);
      const testPage = await test.text();
      expect(testPage).toContain("Test event queued");
      expect(testPage).toContain("<code>webhook.test</code>");

      const rotated = await b.post("/portal/settings/webhook/rotate-secret", {});
      expect(rotated.status).toBe(200);
      expect(rotated.headers.get("cache-control")).toBe("no-store");
      const rotatedPage = await rotated.text();
      const fresh = /whsec_[0-9A-Za-z]{32}/.exec(rotatedPage)![0];
      expect(fresh).not.toBe(first);
      expect(rotatedPage).toContain('The previous signing secret also signs deliveries until <time datetime="2026-01-16T12:00:00.000Z">2026-01-16 12:00 UTC</time>');
      expect(await b.page("/portal/settings")).not.toContain(fresh);

      const removed = await b.post("/portal/settings/webhook/delete", {});
      expect(removed.status).toBe(200);
      const removedPage = await removed.text();
      expect(removedPage).toContain("Endpoint removed");
      expect(removedPage).toContain("Set endpoint");
      expect(removedPage).not.toContain("Rotate signing secret");
      expect((await b.post("/portal/settings/webhook/test", {})).status).toBe(409);
    });

    it("renders hostile text in the webhook section escaped", () => {
      const hostile = "<img src=x onerror=alert(1)>";
      const html = String(
        WebhookSection({
          webhook: { endpoint: { url: hostile, allowPrivate: true, events: [hostile], previousSecretExpiresAt: hostile, createdAt: hostile }, mayAllowPrivate: true },
          deliveries: [{ id: hostile, event: hostile, url: hostile, state: "gave_up", attempts: 1, lastStatus: null, lastError: hostile, nextAttemptAt: hostile, createdAt: hostile, deliveredAt: null }],
          csrf: hostile,
          errors: [{ field: "url", message: hostile }, { field: "events", message: hostile }],
          url: hostile,
          notice: hostile,
        }),
      );
      // Inside a quoted attribute (the URL field's value, the CSRF fields) "<" is inert text; anywhere else it must be escaped.
      expect(html.replaceAll(`value="${hostile}"`, "")).not.toContain(hostile);
      expect(html).toContain("&lt;img src=x onerror=alert(1)&gt;");
      expect(html).toContain("<code>Keyport-Signature: t=&lt;unix&gt;,v1=&lt;HMAC-SHA256 hex&gt;</code>");
    });
  });
}
