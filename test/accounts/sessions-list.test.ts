import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { eq } from "drizzle-orm";
import { accounts, sessions } from "../../src/db/schema.ts";
import { describeDevice, EXTEND_EVERY_MS } from "../../src/accounts/sessions.ts";
import { listAuditEvents } from "../../src/audit/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends, UNMETERED_PLANS } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { bearer } from "../support/fixtures.ts";
import { email } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const PASSWORD = "a long and unusual passphrase";
const FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
const ANDROID = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36";
const HOSTILE_UA = `<script>alert("ua")</script><img src=x onerror=alert(1)>`;

/** A device: what a browser sends with every request it makes here. */
interface Device {
  ua: string;
  ip: string;
}
const LAPTOP: Device = { ua: FIREFOX, ip: "203.0.113.7" };
const PHONE: Device = { ua: ANDROID, ip: "198.51.100.23" };
const CURL: Device = { ua: "curl/8.5.0", ip: "2001:db8::5" };

/** A browser whose every request carries its device's User-Agent and (behind the trusted proxy) X-Forwarded-For. */
class DeviceBrowser extends Browser {
  constructor(h: Harness, readonly device: Device) {
    super(h);
  }
  private with(headers: Record<string, string> = {}) {
    return { "user-agent": this.device.ua, "x-forwarded-for": this.device.ip, ...headers };
  }
  override get(path: string, headers: Record<string, string> = {}) {
    return super.get(path, this.with(headers));
  }
  override post(path: string, form: Record<string, string | string[]>, opts: Parameters<Browser["post"]>[2] = {}) {
    return super.post(path, form, { ...opts, headers: this.with(opts.headers) });
  }
  /** The session id: the token's first half (the cookie is `kp_session=<id>.<secret>`). */
  get sessionId(): string {
    return this.cookie!.slice("kp_session=".length).split(".")[0]!;
  }
}

/** The Sessions section of a settings page or fragment. */
function sessionsSection(html: string): string {
  const start = html.indexOf('<section class="card" id="sessions">');
  expect(start).toBeGreaterThanOrEqual(0);
  return html.slice(start, html.indexOf("</section>", start) + "</section>".length);
}

/** The section's rows: the device text, IP, times and whether it is marked as this session. */
function rows(html: string) {
  const body = sessionsSection(html).split("<tbody>")[1]!.split("</tbody>")[0]!;
  return body
    .split("<tr")
    .slice(1)
    .map((tr) => ({
      html: tr,
      device: /<summary>([^<]*)<\/summary>|<td><span>([^<]*)<\/span>/.exec(tr)?.slice(1).find((g) => g !== undefined) ?? "",
      ip: [...tr.matchAll(/<td>([^<]*)<\/td>/g)][0]?.[1],
      times: [...tr.matchAll(/<time datetime="([^"]+)"/g)].map((m) => m[1]),
      current: tr.includes("This session"),
      revoke: /action="(\/portal\/settings\/sessions\/[^"]+\/revoke)"/.exec(tr)?.[1],
    }));
}

for (const backend of backends) {
  describe(`the sessions list in Settings [${backend.name}]`, () => {
    const clock = new ManualClock(Date.UTC(2026, 11, 1, 9, 0, 0));
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock, config: { trustProxy: true, plansFile: UNMETERED_PLANS } });
    });
    afterAll(() => h.close());

    /** One account signed in on each device (the first signs up), each browser holding its settings page's CSRF token. */
    async function signedIn(...devices: Device[]) {
      const address = email();
      const browsers: DeviceBrowser[] = [];
      for (const [i, device] of devices.entries()) {
        const b = new DeviceBrowser(h, device);
        const res = i === 0 ? await b.post("/signup", { email: address, password: PASSWORD }) : await b.post("/login", { email: address, password: PASSWORD });
        expect(res.status).toBe(303);
        await b.page("/portal/settings");
        browsers.push(b);
      }
      const [account] = await h.deps.db.select({ id: accounts.id }).from(accounts).where(eq(accounts.email, address));
      return { browsers, accountId: account!.id, address };
    }

    const signedOut = async (b: Browser) => {
      const res = await b.get("/portal");
      return res.status === 303 && (res.headers.get("location") ?? "").startsWith("/login");
    };
    const events = async (accountId: string, action: string) => (await listAuditEvents(h.deps.db, accountId, { action })).data;
    const liveSessions = async (accountId: string) => (await h.deps.db.select({ id: sessions.id }).from(sessions).where(eq(sessions.accountId, accountId))).map((s) => s.id).sort();

    it("lists every session with its device, IP, sign-in and last-seen times, and marks this browser's", async () => {
      const { browsers } = await signedIn(LAPTOP, PHONE, CURL);
      const [laptop, phone] = browsers as [DeviceBrowser, DeviceBrowser, DeviceBrowser];
      const signIn = new Date(clock.now()).toISOString();
      const listed = rows(await laptop.page("/portal/settings"));
      expect(listed.map((r) => ({ device: r.device, ip: r.ip, current: r.current })).sort((a, b) => a.device.localeCompare(b.device))).toEqual([
        { device: "Chrome 131 on Android 14", ip: "198.51.100.23", current: false },
        { device: "curl 8.5.0", ip: "2001:db8::5", current: false },
        { device: "Firefox 140 on Linux", ip: "203.0.113.7", current: true },
      ]);
      for (const r of listed) expect(r.times).toEqual([signIn, signIn]);
      // The raw user agent is there too, for whoever wants to read it.
      expect(listed.find((r) => r.current)!.html).toContain(`<code>${FIREFOX}</code>`);
      // This browser signs out with the usual Sign out; the others each have their own button.
      expect(listed.find((r) => r.current)!.html).toContain('action="/logout"');
      expect(listed.filter((r) => r.revoke).length).toBe(2);
      expect(sessionsSection(await laptop.page("/portal/settings"))).toContain("Sign out everywhere else");
      // From the phone, the phone is this session.
      expect(rows(await phone.page("/portal/settings")).find((r) => r.current)!.device).toBe("Chrome 131 on Android 14");
    });

    it("keeps last seen to within a few minutes, and lists this browser first, then the most recently seen", async () => {
      const { browsers } = await signedIn(LAPTOP, CURL, PHONE);
      const [laptop, , phone] = browsers as [DeviceBrowser, DeviceBrowser, DeviceBrowser];
      const signIn = new Date(clock.now()).toISOString();
      clock.advance(EXTEND_EVERY_MS + 60_000);
      expect((await laptop.get("/portal")).status).toBe(200);
      const laptopSeen = new Date(clock.now()).toISOString();
      clock.advance(EXTEND_EVERY_MS / 2);
      expect((await phone.get("/portal")).status).toBe(200);
      const phoneSeen = new Date(clock.now()).toISOString();
      // The laptop's request now comes within the interval of its last write: its time stays.
      const listed = rows(await laptop.page("/portal/settings"));
      expect(listed.map((r) => [r.device, ...r.times, r.current])).toEqual([
        ["Firefox 140 on Linux", signIn, laptopSeen, true],
        ["Chrome 131 on Android 14", signIn, phoneSeen, false],
        ["curl 8.5.0", signIn, signIn, false],
      ]);
    });

    it("escapes a hostile user agent and address in the list", async () => {
      const { browsers } = await signedIn(LAPTOP, { ua: HOSTILE_UA, ip: "192.0.2.200" });
      // A forwarded hop that is no address is never taken for one (src/gateway/chain.ts
      // clientIp), so the hostile address is written as a row of an older version could hold it.
      await h.deps.db.update(sessions).set({ ip: `<b onmouseover="x">` }).where(eq(sessions.id, browsers[1]!.sessionId));
      const section = sessionsSection(await browsers[0]!.page("/portal/settings"));
      expect(section).not.toContain("<script>");
      expect(section).not.toContain("<img");
      expect(section).not.toContain("<b ");
      expect(section).toContain("&lt;script&gt;alert(&quot;ua&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;");
      expect(section).toContain("&lt;b onmouseover=&quot;x&quot;&gt;");
    });

    it("signs out another session (htmx): its cookie stops working on its next request, its try-it key is revoked, and it is audited", async () => {
      const { browsers, accountId } = await signedIn(LAPTOP, PHONE);
      const [laptop, phone] = browsers as [DeviceBrowser, DeviceBrowser];
      await (await phone.post("/docs/analyzeEmail/try", { param_address: "a@example.com", credential: "sandbox" }, { htmx: true })).arrayBuffer();
      const sandbox = ((await (await phone.post("/docs/sandbox-key", {}, { htmx: true })).json()) as { key: string }).key;
      expect((await h.req("/v1/email/a@example.com", { headers: bearer(sandbox) })).status).toBe(200);
      const revoke = rows(await laptop.page("/portal/settings")).find((r) => !r.current)!.revoke!;
      expect(revoke).toBe(`/portal/settings/sessions/${phone.sessionId}/revoke`);

      const res = await laptop.post(revoke, {}, { htmx: true });
      expect(res.status).toBe(200);
      const html = await res.text();
      expect(html).toStartWith('<section class="card" id="sessions">');
      expect(html).toContain("Signed out: Chrome 131 on Android 14 from 198.51.100.23.");
      expect(rows(html).map((r) => r.device)).toEqual(["Firefox 140 on Linux"]);
      expect(html).toContain("No other session is signed in.");

      expect(await signedOut(phone)).toBe(true);
      expect(await signedOut(laptop)).toBe(false);
      const key = await h.req("/v1/email/a@example.com", { headers: bearer(sandbox) });
      expect(key.status).toBe(401);
      expect(((await key.json()) as { code: string }).code).toBe("key_revoked");
      const [event] = await events(accountId, "account.session_revoked");
      expect(event).toMatchObject({ actor: `account:${accountId}`, ip: LAPTOP.ip, changes: { session: phone.sessionId, device: "Chrome 131 on Android 14", ip: PHONE.ip } });
      expect(await laptop.page("/portal/audit")).toContain("Signed out a session: Chrome 131 on Android 14 from 198.51.100.23");
    });

    it("signs out another session with a plain form too (no JavaScript): the settings page comes back with the outcome", async () => {
      const { browsers } = await signedIn(LAPTOP, PHONE);
      const [laptop, phone] = browsers as [DeviceBrowser, DeviceBrowser];
      const res = await laptop.post(`/portal/settings/sessions/${phone.sessionId}/revoke`, {});
      expect(res.status).toBe(200);
      expect(res.headers.get("cache-control")).toBe("no-store");
      const html = await res.text();
      expect(html).toStartWith("<!doctype html>");
      expect(html).toContain("<h1>Settings</h1>");
      expect(html).toContain("Signed out: Chrome 131 on Android 14 from 198.51.100.23.");
      expect(rows(html).map((r) => r.device)).toEqual(["Firefox 140 on Linux"]);
      expect(await signedOut(phone)).toBe(true);
      expect(await signedOut(laptop)).toBe(false);
    });

    it("answers another account's session id, and one that does not exist, with 404, ending nothing", async () => {
      const victim = await signedIn(LAPTOP, PHONE);
      const intruder = await signedIn(CURL);
      const before = await liveSessions(victim.accountId);
      const [, phone] = victim.browsers as [DeviceBrowser, DeviceBrowser];
      const attacker = intruder.browsers[0]!;
      for (const id of [phone.sessionId, "sess_doesnotexist00"]) {
        const plain = await attacker.post(`/portal/settings/sessions/${id}/revoke`, {});
        expect(plain.status).toBe(404);
        expect(await plain.text()).toContain("nothing was signed out");
        const htmx = await attacker.post(`/portal/settings/sessions/${id}/revoke`, {}, { htmx: true });
        expect(htmx.status).toBe(404);
        expect(await htmx.text()).toStartWith('<section class="card" id="sessions">');
      }
      expect(await liveSessions(victim.accountId)).toEqual(before);
      expect(await signedOut(phone)).toBe(false);
      expect(await events(victim.accountId, "account.session_revoked")).toEqual([]);
      expect(await events(intruder.accountId, "account.session_revoked")).toEqual([]);
      // The intruder's own "sign out everywhere else" reaches no other account either.
      expect((await attacker.post("/portal/settings/sessions/revoke-others", {})).status).toBe(200);
      expect(await liveSessions(victim.accountId)).toEqual(before);
    });

    it("signs out everywhere else: every other session ends, this one stays, audited with the count", async () => {
      const { browsers, accountId } = await signedIn(LAPTOP, PHONE, CURL);
      const [laptop, phone, curl] = browsers as [DeviceBrowser, DeviceBrowser, DeviceBrowser];
      const res = await laptop.post("/portal/settings/sessions/revoke-others", {}, { htmx: true });
      expect(res.status).toBe(200);
      const html = await res.text();
      expect(html).toStartWith('<section class="card" id="sessions">');
      expect(html).toContain("Signed out 2 other sessions. This browser stays signed in.");
      expect(rows(html).map((r) => [r.device, r.current])).toEqual([["Firefox 140 on Linux", true]]);
      expect(await signedOut(phone)).toBe(true);
      expect(await signedOut(curl)).toBe(true);
      expect(await signedOut(laptop)).toBe(false);
      expect(await liveSessions(accountId)).toEqual([laptop.sessionId]);
      const audited = await events(accountId, "account.other_sessions_revoked");
      expect(audited.map((e) => e.changes)).toEqual([{ count: 2 }]);
      expect(await laptop.page("/portal/audit")).toContain("Signed out everywhere else: 2 other sessions ended");
      // Again, with nothing left to end: said so, and nothing more is recorded.
      const again = await laptop.post("/portal/settings/sessions/revoke-others", {});
      expect(again.status).toBe(200);
      expect(await again.text()).toContain("No other session was signed in.");
      expect(await events(accountId, "account.other_sessions_revoked")).toHaveLength(1);
      expect(await signedOut(laptop)).toBe(false);
    });

    it("signs this browser out when its own row is posted: the cookie is cleared and the session ends", async () => {
      const { browsers, accountId } = await signedIn(LAPTOP, PHONE);
      const [laptop, phone] = browsers as [DeviceBrowser, DeviceBrowser];
      const cookie = laptop.cookie!;
      const res = await laptop.post(`/portal/settings/sessions/${laptop.sessionId}/revoke`, {});
      expect(res.status).toBe(303);
      expect(res.headers.get("location")).toBe("/login");
      expect(res.headers.get("set-cookie")).toContain("Max-Age=0");
      expect((await h.req("/portal", { headers: { cookie } })).status).toBe(303);
      expect(await signedOut(phone)).toBe(false);
      expect((await events(accountId, "account.session_revoked")).map((e) => e.changes.device)).toEqual(["Firefox 140 on Linux"]);
    });

    it("refuses a sign-out without the CSRF token, with a wrong one, or from another site (403), ending nothing", async () => {
      const { browsers, accountId } = await signedIn(LAPTOP, PHONE);
      const [laptop, phone] = browsers as [DeviceBrowser, DeviceBrowser];
      const before = await liveSessions(accountId);
      const wrong = "x".repeat(laptop.csrf!.length);
      for (const path of [`/portal/settings/sessions/${phone.sessionId}/revoke`, "/portal/settings/sessions/revoke-others"]) {
        for (const htmx of [false, true]) {
          expect((await laptop.post(path, {}, { htmx, csrf: null })).status).toBe(403);
          expect((await laptop.post(path, {}, { htmx, csrf: wrong })).status).toBe(403);
          expect((await laptop.post(path, {}, { htmx, headers: { "sec-fetch-site": "cross-site" } })).status).toBe(403);
        }
      }
      expect(await liveSessions(accountId)).toEqual(before);
      expect(await signedOut(phone)).toBe(false);
      expect(await events(accountId, "account.session_revoked")).toEqual([]);
      expect(await events(accountId, "account.other_sessions_revoked")).toEqual([]);
    });

    if (backend.name === "service") {
      it("ends the session on every instance: the next request to another instance is signed out", async () => {
        const second = await startHarness(backend, { clock, share: h, config: { trustProxy: true, plansFile: UNMETERED_PLANS } });
        try {
          const { browsers } = await signedIn(LAPTOP, PHONE);
          const [laptop, phone] = browsers as [DeviceBrowser, DeviceBrowser];
          const onSecond = () => second.req("/portal", { headers: { cookie: phone.cookie!, accept: "text/html" } });
          expect((await onSecond()).status).toBe(200);
          expect((await laptop.post(`/portal/settings/sessions/${phone.sessionId}/revoke`, {}, { htmx: true })).status).toBe(200);
          const after = await onSecond();
          expect(after.status).toBe(303);
          expect(after.headers.get("location")).toStartWith("/login");
        } finally {
          await second.close();
        }
      });
    }
  });
}

describe("describeDevice", () => {
  it.each([
    [FIREFOX, "Firefox 140 on Linux"],
    [ANDROID, "Chrome 131 on Android 14"],
    ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", "Microsoft Edge 131 on Windows 10"],
    ["Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15", "Safari 17 on macOS"],
    ["Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1", "Safari 17 on iOS 17"],
    ["curl/8.5.0", "curl 8.5.0"],
    ["python-requests/2.31.0", "python-requests 2.31.0"],
    ["Mozilla/5.0", "Unknown browser"],
    [HOSTILE_UA, "Unknown browser"],
    ["", "Unknown device"],
    [null, "Unknown device"],
  ])("reads %p as %p", (ua, expected) => {
    expect(describeDevice(ua)).toBe(expected);
  });
});
