import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { createAccount } from "../../src/accounts/service.ts";
import { cliActor } from "../../src/audit/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { runSweep } from "../../src/rotation/service.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { bearer, schedule } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const email = () => `r-${randomBytes(4).toString("hex")}@example.com`;
const secretIn = (html: string) => /kp_(live|test)_[0-9A-Za-z]{46}/.exec(html)?.[0];
const keyIdIn = (html: string) => /\/portal\/keys\/(key_\w+)/.exec(html)![1]!;

for (const backend of backends) {
  describe(`portal rotation, notifications, settings, compliance [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
      // The first account of a database is an operator; take that place here.
      await createAccount(h.deps, { email: `first-${randomBytes(3).toString("hex")}@example.com`, password: "operator passphrase 1" }, cliActor);
    });
    afterAll(() => h.close());

    async function withKey() {
      const b = new Browser(h);
      const address = email();
      await b.signUp(address);
      const created = secretIn(await (await b.post("/portal/keys", { name: "svc", scopes: "email:read", rateLimit: "600" })).text())!;
      const id = keyIdIn(await b.page("/portal/keys"));
      return { b, id, secret: created, address };
    }

    it("shows a banner for a rotation nobody watched, reveals the secret once, then the banner goes", async () => {
      const { b, id } = await withKey();
      const accountId = (await h.deps.db.query.apiKeys.findFirst({ where: (k, { eq }) => eq(k.id, id) }))!.accountId;
      const r = await schedule(h, accountId, id, { at: new Date(clock.now()).toISOString() });
      await runSweep(h.deps);
      const dash = await b.page("/portal");
      expect(dash).toContain("new secret is waiting");
      const res = await b.post(`/portal/rotations/${r.id}/reveal`, {});
      expect(res.status).toBe(200);
      expect(res.headers.get("cache-control")).toBe("no-store");
      const secret = secretIn(await res.text())!;
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(secret) })).status).toBe(200);
      expect(await b.page("/portal")).not.toContain("new secret is waiting");
      expect((await b.post(`/portal/rotations/${r.id}/reveal`, {})).status).toBe(410);
    });

    it("rotates in an emergency from the key page, showing the new secret; the old key works through the grace", async () => {
      const { b, id, secret } = await withKey();
      const page = await b.post(`/portal/keys/${id}/rotations/emergency`, { reason: "pasted in chat" });
      expect(page.status).toBe(200);
      const next = secretIn(await page.text())!;
      expect(next).not.toBe(secret);
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(secret) })).status).toBe(200);
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(next) })).status).toBe(200);
      const detail = await b.page(`/portal/keys/${id}`);
      expect(detail).toContain("emergency: pasted in chat");
      expect(detail).toContain("grace: 4 h");
      expect(await b.page("/portal")).not.toContain("new secret is waiting");
    });

    it("schedules from the form (UTC), refuses a past time beside the form, and cancels", async () => {
      const { b, id } = await withKey();
      const past = await b.post(`/portal/keys/${id}/rotations`, { at: "2001-01-01T10:00", gracePeriodHours: "24", reason: "x" });
      expect(past.status).toBe(422);
      expect(await past.text()).toContain("at must not be in the past");
      const at = new Date(clock.now() + 3 * 3_600_000).toISOString().slice(0, 16);
      expect((await b.post(`/portal/keys/${id}/rotations`, { at, gracePeriodHours: "24", reason: "quarterly" })).status).toBe(303);
      const detail = await b.page(`/portal/keys/${id}`);
      expect(detail).toContain("quarterly");
      const rotationId = /\/portal\/rotations\/(rot_\w+)\/cancel/.exec(detail)![1]!;
      expect((await b.post(`/portal/rotations/${rotationId}/cancel`, {})).status).toBe(303);
      expect(await b.page(`/portal/keys/${id}`)).toContain("cancelled");
      const intruder = new Browser(h);
      await intruder.signUp(email());
      expect((await intruder.post(`/portal/rotations/${rotationId}/cancel`, {})).status).toBe(404);
      expect((await intruder.post(`/portal/rotations/${rotationId}/reveal`, {})).status).toBe(404);
    });

    it("counts unread notifications in the navigation and lists them", async () => {
      const { b } = await withKey();
      const page = await b.page("/portal/keys");
      expect(page).toMatch(/Notifications<span class="count" aria-label="1 unread">1<\/span>/);
      const list = await b.page("/portal/notifications");
      expect(list).toContain("Key created");
      expect((await b.post("/portal/notifications/read", {})).status).toBe(303);
      expect(await b.page("/portal/keys")).not.toContain('class="count"');
    });

    it("saves the rotation policy and shows field errors", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const bad = await b.post("/portal/settings/policy", { maxKeyAgeDays: "-1", defaultGraceHours: "200", emergencyGraceHours: "1" });
      expect(bad.status).toBe(422);
      const html = await bad.text();
      expect(html).toMatch(/id="f-maxKeyAgeDays-error"[^>]*>must be at least 0/);
      expect(html).toMatch(/id="f-defaultGraceHours-error"[^>]*>must be at most 168/);
      expect((await b.post("/portal/settings/policy", { maxKeyAgeDays: "30", defaultGraceHours: "12", emergencyGraceHours: "0" })).status).toBe(200);
      expect(await b.page("/portal/settings")).toMatch(/name="maxKeyAgeDays" type="number" value="30"/);
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

    it("reports compliance for the account, with CSV, and the operator page only for operators", async () => {
      const { b, id, address } = await withKey();
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
