import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { eq } from "drizzle-orm";
import { auditEvents, sessions } from "../../src/db/schema.ts";
import { LOGIN_LIMITS } from "../../src/accounts/login.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { email } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

for (const backend of backends) {
  describe(`accounts portal: sign-up, log-in, sessions, password [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    it("signs up, sets an HttpOnly SameSite=Lax session cookie and stores only its hash", async () => {
      const b = new Browser(h);
      const res = await b.post("/signup", { email: email(), password: "a long and unusual passphrase" });
      expect(res.status).toBe(303);
      expect(res.headers.get("location")).toBe("/portal");
      const cookie = res.headers.get("set-cookie")!;
      expect(cookie).toMatch(/^kp_session=sess_\w+\.[\w-]{43};/);
      expect(cookie).toContain("HttpOnly");
      expect(cookie).toContain("SameSite=Lax");
      expect(cookie).not.toContain("Secure");
      const [id, secret] = b.cookie!.slice("kp_session=".length).split(".");
      const [row] = await h.deps.db.select().from(sessions).where(eq(sessions.id, id!));
      expect(row!.secretHash).toBe(new Bun.CryptoHasher("sha256").update(secret!).digest("hex"));
      expect(JSON.stringify(row)).not.toContain(secret!);
      expect((await b.get("/portal")).status).toBe(200);
    });

    it("marks the cookie Secure behind an https proxy", async () => {
      const other = await startHarness(backend, { config: { trustProxy: true } });
      const res = await other.req("/signup", {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", "x-forwarded-proto": "https" },
        body: new URLSearchParams({ email: email(), password: "a long and unusual passphrase" }).toString(),
      });
      expect(res.headers.get("set-cookie")).toContain("Secure");
      await other.close();
    });

    it.each([
      ["a short password", { password: "short" }, "password", "at least 12 characters"],
      ["a common password", { password: "qwerty123456" }, "password", "commonly used"],
      ["an invalid email", { email: "nope" }, "email", "not a valid email"],
    ])("re-renders the form with the message beside the field for %s, keeping the email", async (_, change, field, message) => {
      const b = new Browser(h);
      const input = { email: "keep-me@example.com", password: "a long and unusual passphrase", ...change };
      const res = await b.post("/signup", input, { htmx: true });
      expect(res.status).toBe(422);
      const html = await res.text();
      expect(html).toStartWith('<form id="signup-form"');
      expect(html).toMatch(new RegExp(`id="f-${field}-error"[^>]*>[^<]*${message}`));
      expect(html).toContain(`value="${input.email}"`);
      expect(b.cookie).toBeUndefined();
    });

    it("shows every sign-up error at once: the email's and the password's", async () => {
      const res = await new Browser(h).post("/signup", { email: "a@b", password: "short" }, { htmx: true });
      expect(res.status).toBe(422);
      const html = await res.text();
      expect(html).toMatch(/id="f-email-error"[^>]*>[^<]*not a valid email/);
      expect(html).toMatch(/id="f-password-error"[^>]*>[^<]*at least 12 characters/);
    });

    it("refuses a taken email", async () => {
      const address = email();
      await new Browser(h).signUp(address);
      const res = await new Browser(h).post("/signup", { email: address, password: "another long passphrase" });
      expect(res.status).toBe(422);
      expect(await res.text()).toContain("already registered");
    });

    it("logs in, and answers an unknown email exactly like a wrong password", async () => {
      const address = email();
      await new Browser(h).signUp(address);
      const ok = await new Browser(h).post("/login", { email: address, password: "a long and unusual passphrase" });
      expect(ok.status).toBe(303);
      const wrong = await new Browser(h).post("/login", { email: address, password: "not the password!" }, { htmx: true });
      const unknown = await new Browser(h).post("/login", { email: email(), password: "not the password!" }, { htmx: true });
      expect(wrong.status).toBe(422);
      expect(unknown.status).toBe(422);
      const strip = (s: string) => s.replace(/value="[^"]*@example\.com"/, "");
      expect(strip(await wrong.text())).toBe(strip(await unknown.text()));
    });

    it(`throttles after ${LOGIN_LIMITS.perEmail15m} failures for one email with a readable 429`, async () => {
      const address = email();
      await new Browser(h).signUp(address);
      for (let i = 0; i < LOGIN_LIMITS.perEmail15m; i++) {
        const r = await new Browser(h).post("/login", { email: address, password: `wrong guess ${i}!` }, { htmx: true, headers: { "x-forwarded-for": `203.0.113.${i}` } });
        expect(r.status).toBe(422);
      }
      const blocked = await new Browser(h).post("/login", { email: address, password: "a long and unusual passphrase" }, { htmx: true });
      expect(blocked.status).toBe(429);
      expect(await blocked.text()).toContain("Too many failed sign-in attempts");
    });

    it("logs out: the session ends and the cookie is cleared", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const cookie = b.cookie!;
      const res = await b.post("/logout", {});
      expect(res.status).toBe(303);
      expect(res.headers.get("set-cookie")).toContain("Max-Age=0");
      const after = await h.req("/portal", { headers: { cookie } });
      expect(after.status).toBe(303);
      expect(after.headers.get("location")).toStartWith("/login");
      // Audited, by the account that signed out.
      const id = cookie.split("=")[1]!.split(".")[0]!;
      const logouts = await h.deps.db.select().from(auditEvents).where(eq(auditEvents.action, "account.logout"));
      expect(logouts.filter((e) => (e.changes as { session?: string } | null)?.session === id)).toHaveLength(1);
    });

    it("ends the other sessions when the password changes", async () => {
      const address = email();
      const a = new Browser(h);
      await a.signUp(address);
      const b = new Browser(h);
      await b.post("/login", { email: address, password: "a long and unusual passphrase" });
      await a.page("/portal/settings");
      const bad = await a.post("/portal/settings", { current: "wrong", next: "short" });
      expect(bad.status).toBe(422);
      const badHtml = await bad.text();
      expect(badHtml).toContain("is not your current password");
      expect(badHtml).toContain("at least 12 characters");
      const ok = await a.post("/portal/settings", { current: "a long and unusual passphrase", next: "a brand new long passphrase" });
      expect(ok.status).toBe(200);
      expect((await a.get("/portal")).status).toBe(200);
      expect((await b.get("/portal")).status).toBe(303);
    });
  });
}
