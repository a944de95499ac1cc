import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { ManualClock } from "../../src/ops/clock.ts";
import { runSweep } from "../../src/rotation/service.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { bearer, schedule } from "../support/fixtures.ts";
import { email, secretIn, signUpWithKey } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

for (const backend of backends) {
  describe(`rotation portal: rotations, policy [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    it("shows a banner for a rotation nobody watched, reveals the secret once, then the banner goes", async () => {
      const { b, id } = await signUpWithKey(h);
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
      const { b, id, secret } = await signUpWithKey(h);
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
      const { b, id } = await signUpWithKey(h);
      const past = await b.post(`/portal/keys/${id}/rotations`, { at: "2001-01-01T10:00", gracePeriodHours: "24", reason: "x" });
      expect(past.status).toBe(422);
      // Beside its field, in words, with what was typed kept.
      const refusedPage = await past.text();
      expect(refusedPage).toMatch(/<small class="error" id="f-at-error">must not be in the past<\/small>/);
      expect(refusedPage).toContain('value="2001-01-01T10:00"');
      expect(refusedPage).not.toContain("at must not");
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
  });
}
