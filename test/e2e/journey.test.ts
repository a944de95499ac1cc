import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { Locator, Page, Response as PageResponse } from "playwright-core";
import { launchChromium, type Chromium } from "./chromium.ts";
import { startServer, type ServerProcess } from "./server.ts";
import { PAGE_HEADERS } from "../../src/portal/respond.ts";
import { Time } from "../../views/components.tsx";
import { Layout } from "../../views/layout.tsx";

// A new user's way through Keyport in a real chromium against a real `keyport serve`:
// sign up → create a key → read its secret once → call /v1 with it → see the request on the
// usage page after a flush → roll with a grace period → the other pages → the same pages on
// a phone-sized screen (a second chromium at 390 × 844) → revoke → both keys answer 401.
// The steps run in order and share the state below; each names what an earlier failure
// left it without. Neither browser may log a console error, a CSP violation or a page error.

const SCREENSHOTS = join(import.meta.dir, "screenshots");
// A step drives a real browser against a server process: clicks, navigations and a flush
// take 1-2.5 s on 2 cores, and starting the server and Chromium about 4 s.
const STEP_MS = 20_000;
const EMAIL = `e2e-${randomBytes(4).toString("hex")}@example.com`;
const PASSWORD = "a long and unusual passphrase";
const SECRET = /^kp_live_[0-9A-Za-z]{46}$/;

/** The phone-sized browser: its own profile (so its own session), in a zone east of UTC. */
const NARROW = { viewport: { width: 390, height: 844 }, timezoneId: "Asia/Kolkata", locale: "en-US" };

let server: ServerProcess;
let browser: Chromium;
let page: Page;
let narrow: Chromium;
let phone: Page;
const dialogs: { type: string; message: string }[] = [];
const journey: { secret?: string; keyId?: string; newSecret?: string; newKeyId?: string; addressAfterRoll?: string } = {};

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`no ${what}: an earlier step failed`);
  return value;
}

/** A call from the user's own program: Bun's fetch, not the browser. */
async function callApi(secret: string, header: "bearer" | "x-api-key" = "bearer") {
  const res = await fetch(`${server.origin}/v1/email/${encodeURIComponent("someone@gmial.com")}`, {
    headers: header === "bearer" ? { authorization: `Bearer ${secret}` } : { "x-api-key": secret },
  });
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { unparsable: text };
  }
  return { status: res.status, type: res.headers.get("content-type") ?? "", body, text };
}

/** Clicks and waits for the answer to the request the click makes. */
async function clickFor(target: Locator, matches: (r: PageResponse) => boolean): Promise<PageResponse> {
  const [response] = await Promise.all([page.waitForResponse(matches), target.click()]);
  return response;
}

const statOf = (name: string) => page.locator("#usage-panel .stats div").filter({ has: page.locator("dt", { hasText: name }) }).locator("dd");

/** On a key's page: Revoke, accept the confirm dialog, and wait for the page to say revoked. */
async function revokeOnItsPage(keyId: string) {
  const before = dialogs.length;
  const res = await clickFor(page.getByRole("button", { name: "Revoke key" }), (r) => r.url().endsWith(`/portal/keys/${keyId}/revoke`) && r.request().method() === "POST");
  expect(dialogs.slice(before)).toEqual([{ type: "confirm", message: expect.stringContaining("Revoke this key?") }]);
  expect(await res.headerValue("hx-redirect")).toBe(`/portal/keys/${keyId}`);
  await page.locator(".facts .badge-revoked").waitFor();
  expect(page.url()).toBe(`${server.origin}/portal/keys/${keyId}`);
}

async function shoot(name: string, mask: Locator[] = [], on: Page = page) {
  // The secret panels are masked: a screenshot on disk must not hold a working key.
  await on.screenshot({ path: join(SCREENSHOTS, name), fullPage: true, mask, maskColor: "#888" });
}

/**
 * On the phone: the page is no wider than the window at 390 px, nor at 360 px (nothing
 * scrolls sideways), every link and button of the header is inside the window, and no
 * navigation label breaks across lines. Leaves the window at 390 × 844.
 */
async function fitsThePhone(name: string) {
  const problems: string[] = [];
  for (const width of [390, 360]) {
    await phone.setViewportSize({ width, height: 844 });
    const found = await phone.evaluate(() => {
      const out: string[] = [];
      const { scrollWidth } = document.documentElement;
      if (scrollWidth > window.innerWidth) {
        // Name the widest element that sticks out, so a failure says where to look.
        const scrolls = (el: Element) => {
          for (let p = el.parentElement; p; p = p.parentElement) if (["auto", "scroll", "hidden"].includes(getComputedStyle(p).overflowX)) return true;
          return false;
        };
        const wide = Array.from(document.querySelectorAll("body *"))
          .map((el) => ({ el, right: el.getBoundingClientRect().right }))
          .filter((x) => x.right > window.innerWidth + 0.5 && !scrolls(x.el))
          .sort((a, b) => b.right - a.right)[0];
        const name = (el: Element) => `${el.tagName.toLowerCase()}${el.id ? "#" + el.id : ""}${typeof el.className === "string" && el.className ? "." + el.className.split(" ").join(".") : ""}`;
        const where = wide ? ` (${name(wide.el)} in ${wide.el.parentElement ? name(wide.el.parentElement) : "?"} reaches ${Math.round(wide.right)} px)` : "";
        out.push(`the page is ${scrollWidth} px wide${where}`);
      }
      for (const el of Array.from(document.querySelectorAll("header.top a, header.top button, header.top .who"))) {
        const r = el.getBoundingClientRect();
        if (r.left < 0 || r.right > window.innerWidth + 0.5) out.push(`"${el.textContent?.trim()}" is outside the window (${Math.round(r.left)}-${Math.round(r.right)} px)`);
      }
      for (const a of Array.from(document.querySelectorAll("header.top nav a"))) {
        const label = a.firstChild;
        if (!label || label.nodeType !== Node.TEXT_NODE) continue;
        const range = document.createRange();
        range.selectNodeContents(label);
        if (range.getClientRects().length > 1) out.push(`the label "${label.textContent?.trim()}" breaks across lines`);
      }
      return out;
    });
    problems.push(...found.map((f) => `${width} px: ${f}`));
  }
  await phone.setViewportSize(NARROW.viewport);
  expect({ name, problems }).toEqual({ name, problems: [] });
}

/** On the phone: goes to a portal page by its link in the main navigation (a boosted htmx navigation). */
async function phoneNav(label: string | RegExp, path: string) {
  await phone.getByRole("navigation", { name: "Main" }).getByRole("link", { name: label, exact: typeof label === "string" }).click();
  await phone.waitForURL(`${server.origin}${path}`);
}

describe("a new user's journey in the browser", () => {
  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    server = await startServer({ USAGE_FLUSH_MS: "200" });
    [browser, narrow] = await Promise.all([launchChromium(), launchChromium(NARROW)]);
    page = browser.page;
    phone = narrow.page;
    phone.setDefaultTimeout(15_000);
    // The copy button writes to the clipboard; the test reads it back.
    await browser.context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.origin });
    page.setDefaultTimeout(15_000);
    page.on("dialog", (d) => {
      dialogs.push({ type: d.type(), message: d.message() });
      void d.accept();
    });
  }, STEP_MS);

  afterAll(async () => {
    await Promise.all([browser?.close(), narrow?.close()]);
    const code = await server?.stop();
    if (code !== undefined && code !== 0) console.error(`keyport serve exited ${code}. Its output:\n${server.output()}`);
  }, STEP_MS);

  it(
    "signs up through the form, served under a CSP without inline script or eval, and lands on the dashboard",
    async () => {
      const home = await page.goto(`${server.origin}/`);
      const csp = (await home!.allHeaders())["content-security-policy"] ?? "";
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain("unsafe-inline");
      expect(csp).not.toContain("unsafe-eval");
      expect(await page.evaluate(() => (window as unknown as { htmx?: { version: string } }).htmx?.version)).toBe("4.0.1");

      await page.getByRole("link", { name: "Sign up" }).first().click();
      await page.getByRole("heading", { name: "Create your account" }).waitFor();
      await page.getByLabel("Email").fill(EMAIL);
      await page.getByLabel("Password").pressSequentially(PASSWORD);
      const signup = await clickFor(page.getByRole("button", { name: "Sign up" }), (r) => r.url().endsWith("/signup") && r.request().method() === "POST");
      expect(signup.status()).toBe(200);
      expect(await signup.headerValue("hx-redirect")).toBe("/portal");
      await page.waitForURL(`${server.origin}/portal`);
      await page.getByRole("heading", { name: "Dashboard" }).waitFor();
      expect(await page.locator("header .who").textContent()).toBe(EMAIL);
    },
    STEP_MS,
  );

  it(
    "creates a key with the form and shows its secret once, with a copy button",
    async () => {
      await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Keys" }).click();
      await page.waitForURL(`${server.origin}/portal/keys`);
      await page.getByRole("heading", { name: "Create a key" }).waitFor();
      await page.getByLabel("Name").fill("journey key");
      expect(await page.getByRole("checkbox", { name: /email:read/ }).isChecked()).toBe(true);
      const created = await clickFor(page.getByRole("button", { name: "Create key" }), (r) => r.url().endsWith("/portal/keys") && r.request().method() === "POST");
      expect(created.status()).toBe(201);
      expect(await created.request().headerValue("hx-request")).toBe("true");
      expect(await created.headerValue("cache-control")).toBe("no-store");

      const panel = page.locator("section.secret");
      await panel.getByRole("heading", { name: 'Key "journey key" created' }).waitFor();
      const secret = ((await panel.locator("#new-secret").textContent()) ?? "").trim();
      expect(secret).toMatch(SECRET);
      journey.secret = secret;
      const copy = panel.getByRole("button", { name: "Copy" });
      expect(await copy.getAttribute("data-copy-target")).toBe("new-secret");

      const row = page.locator("table.keys tbody tr").filter({ hasText: "journey key" });
      expect(await row.count()).toBe(1);
      expect(await row.locator("code").textContent()).toBe(`kp_live_${secret.slice(8, 12)}…${secret.slice(-4)}`);
      expect(await row.locator(".badge-active").textContent()).toBe("active");
      journey.keyId = (await row.getAttribute("id"))?.replace(/^key-/, "");
      expect(journey.keyId).toMatch(/^key_/);

      await shoot("1-keys-created.png", [panel.locator("#new-secret")]);

      await copy.click();
      await panel.getByRole("button", { name: "Copied" }).waitFor();
      expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(secret);

      await page.reload();
      await page.getByRole("heading", { name: "Create a key" }).waitFor();
      expect(await page.locator("section.secret").count()).toBe(0);
      expect(await page.content()).not.toContain(secret);
    },
    STEP_MS,
  );

  it(
    "answers the key's first calls to /v1/email/…",
    async () => {
      const secret = need(journey.secret, "secret");
      const first = await callApi(secret, "bearer");
      expect(first.status, first.text).toBe(200);
      expect(first.type).toContain("application/json");
      expect(first.body).toMatchObject({ valid: true, domain: "gmial.com", suggestion: "someone@gmail.com" });
      const second = await callApi(secret, "x-api-key");
      expect(second.status, second.text).toBe(200);
    },
    STEP_MS,
  );

  it(
    "shows both requests on the key's usage page once the meter has flushed",
    async () => {
      const keyId = need(journey.keyId, "key id");
      await page.goto(`${server.origin}/portal/keys`);
      await page.locator(`#key-${keyId}`).getByRole("link", { name: "journey key" }).click();
      await page.waitForURL(`${server.origin}/portal/keys/${keyId}`);

      // The meter flushes every 200 ms; reload until the page shows what was flushed.
      let requests = "";
      for (let attempt = 0; attempt < 50; attempt++) {
        requests = ((await statOf("Requests").textContent()) ?? "").trim();
        if (requests === "2") break;
        await Bun.sleep(200);
        await page.reload();
      }
      expect(requests).toBe("2");
      expect((await statOf("Error rate").textContent())?.trim()).toBe("0.0 %");
      const endpoint = page.locator("#usage-panel table tbody tr").filter({ hasText: "GET /v1/email/:address" });
      expect(await endpoint.locator("td").allTextContents()).toEqual(["GET /v1/email/:address", "2", "0"]);
      expect(await page.locator("#usage-panel svg.usage-chart desc").textContent()).toStartWith("2 requests from");
      const bars = await page.locator("#usage-panel svg.usage-chart rect.bar-ok").evaluateAll((rects) => rects.map((r) => Number(r.getAttribute("height"))));
      expect(bars.at(-1)).toBeGreaterThan(0);
      expect(bars.slice(0, -1).every((h) => h === 0)).toBe(true);

      // The range links swap the usage panel alone (an htmx fragment) and push the URL.
      const thirty = await clickFor(page.getByRole("link", { name: "30 days" }), (r) => r.url().includes("/usage?days=30"));
      expect(await thirty.request().headerValue("hx-request")).toBe("true");
      await page.locator('#usage-panel .ranges a[aria-current="true"]', { hasText: "30 days" }).waitFor();
      await page.waitForURL(`${server.origin}/portal/keys/${keyId}?days=30`);
      expect((await statOf("Requests").textContent())?.trim()).toBe("2");
      expect(await page.locator("#usage-panel svg.usage-chart rect.bar-ok").count()).toBe(30);

      await shoot("2-key-usage.png");
    },
    STEP_MS,
  );

  it(
    "rolls the key with a one-hour grace period: a new secret once, and both keys work meanwhile",
    async () => {
      const secret = need(journey.secret, "secret");
      const keyId = need(journey.keyId, "key id");
      await page.goto(`${server.origin}/portal/keys/${keyId}`);
      await page.getByLabel("Grace period for the current key").selectOption("1");
      const before = dialogs.length;
      const rolled = await clickFor(page.getByRole("button", { name: "Roll key" }), (r) => r.url().endsWith(`/portal/keys/${keyId}/roll`) && r.request().method() === "POST");
      expect(rolled.status()).toBe(200);
      expect(await rolled.headerValue("cache-control")).toBe("no-store");
      expect(dialogs.slice(before)).toEqual([{ type: "confirm", message: expect.stringContaining("Roll this key?") }]);

      const panel = page.locator("section.secret");
      await panel.getByRole("heading", { name: "New key after the roll" }).waitFor();
      const newSecret = ((await panel.locator("#new-secret").textContent()) ?? "").trim();
      expect(newSecret).toMatch(SECRET);
      expect(newSecret).not.toBe(secret);
      journey.newSecret = newSecret;
      expect(await panel.getByRole("button", { name: "Copy" }).count()).toBe(1);
      const revokeAction = await page.locator('form[action$="/revoke"]').getAttribute("action");
      journey.newKeyId = /\/portal\/keys\/([^/]+)\/revoke$/.exec(revokeAction ?? "")?.[1];
      expect(journey.newKeyId).toMatch(/^key_/);
      expect(journey.newKeyId).not.toBe(keyId);
      expect(await page.locator(".facts .badge-active").textContent()).toBe("active");

      await shoot("3-key-rolled.png", [panel.locator("#new-secret")]);
      journey.addressAfterRoll = page.url();

      const old = await callApi(secret);
      expect(old.status, old.text).toBe(200);
      const fresh = await callApi(newSecret);
      expect(fresh.status, fresh.text).toBe(200);

      await page.goto(`${server.origin}/portal/keys`);
      const oldBadge = page.locator(`#key-${keyId} .badge-expiring`);
      expect(await oldBadge.textContent()).toBe("expiring in 1 h");
      expect(await page.locator(`#key-${journey.newKeyId} .badge-active`).textContent()).toBe("active");
    },
    STEP_MS,
  );

  it(
    "leaves the browser at an address that shows the rolled key again, without its secret",
    async () => {
      const newSecret = need(journey.newSecret, "rolled secret");
      const newKeyId = need(journey.newKeyId, "rolled key id");
      // htmx swapped the roll's answer in (a boosted form) and pushed an address; a reload,
      // or Back then Forward, loads that address with GET.
      const address = need(journey.addressAfterRoll, "address after the roll");
      const again = await page.goto(address);
      expect({ address, status: again?.status() }).toEqual({ address: expect.stringContaining(newKeyId), status: 200 });
      await page.locator(".facts .badge-active").waitFor();
      expect(await page.locator("section.secret").count()).toBe(0);
      expect(await page.content()).not.toContain(newSecret);
    },
    STEP_MS,
  );

  it(
    "shows the audit log, notifications, settings and compliance pages",
    async () => {
      const newKeyId = need(journey.newKeyId, "rolled key id");
      const main = page.getByRole("navigation", { name: "Main" });
      await main.getByRole("link", { name: "Audit log" }).click();
      await page.getByRole("heading", { name: "Audit log" }).waitFor();
      expect(await page.locator("table.audit tbody tr").count()).toBeGreaterThanOrEqual(3);
      await page.locator("table.audit details.raw summary").first().click();
      await shoot("6-audit.png");
      await main.getByRole("link", { name: "Notifications" }).click();
      await page.getByRole("heading", { name: "Notifications" }).waitFor();
      await main.getByRole("link", { name: "Settings" }).click();
      await page.getByRole("heading", { name: "Settings" }).waitFor();
      // Settings mixes forms of every capability: its cards are all the same width.
      const cards = await page.locator("main > .card").evaluateAll((els) => els.map((e) => Math.round(e.getBoundingClientRect().width)));
      expect(cards.length).toBeGreaterThanOrEqual(3);
      expect(new Set(cards).size).toBe(1);
      await shoot("7-settings.png");
      await main.getByRole("link", { name: "Compliance" }).click();
      await page.getByRole("heading", { name: /Compliance/ }).first().waitFor();
      // The key page sets revoking apart from rolling: a card of its own, the last one.
      await page.goto(`${server.origin}/portal/keys/${newKeyId}`);
      const last = page.locator("main > section.card").last();
      expect(await last.getAttribute("class")).toContain("danger-zone");
      expect(await last.getByRole("button", { name: "Revoke key" }).count()).toBe(1);
      expect(await last.getByRole("button", { name: "Roll key" }).count()).toBe(0);
      await page.locator("#usage-panel .chart-legend").getByText("Errors").waitFor();
    },
    STEP_MS,
  );

  it(
    "at 390 × 844, shows the home, sign-up and login pages without sideways scrolling, and logs in",
    async () => {
      await phone.goto(`${server.origin}/`);
      await fitsThePhone("home");
      await shoot("m-1-home.png", [], phone);
      await phone.getByRole("navigation", { name: "Account" }).getByRole("link", { name: "Sign up" }).click();
      await phone.getByRole("heading", { name: "Create your account" }).waitFor();
      await fitsThePhone("signup");
      await phone.getByRole("navigation", { name: "Account" }).getByRole("link", { name: "Log in" }).click();
      await phone.getByRole("heading", { name: "Log in" }).waitFor();
      await fitsThePhone("login");
      await shoot("m-2-login.png", [], phone);
      await phone.getByLabel("Email").fill(EMAIL);
      await phone.getByLabel("Password").fill(PASSWORD);
      await phone.getByRole("button", { name: "Log in" }).click();
      await phone.waitForURL(`${server.origin}/portal`);
      await phone.getByRole("heading", { name: "Dashboard" }).waitFor();
      expect(await phone.locator("header .who").textContent()).toBe(EMAIL);
      expect(await phone.getByRole("button", { name: "Log out" }).isVisible()).toBe(true);
      await fitsThePhone("dashboard");
      await shoot("m-3-dashboard.png", [], phone);
    },
    STEP_MS,
  );

  it(
    "at 390 × 844, shows every portal page without sideways scrolling: tables and the chart scroll in their own box",
    async () => {
      const keyId = need(journey.keyId, "key id");
      const newKeyId = need(journey.newKeyId, "rolled key id");
      await phoneNav("Keys", "/portal/keys");
      await phone.locator(`#key-${newKeyId}`).waitFor();
      await fitsThePhone("keys");
      await shoot("m-4-keys.png", [], phone);

      await phone.goto(`${server.origin}/portal/keys/${newKeyId}`);
      await fitsThePhone("key detail");
      // The chart keeps a readable width and scrolls inside its box; the legend names both series.
      const chart = await phone.locator("#usage-panel .chart-scroll").evaluate((box) => ({ svg: Math.round(box.querySelector("svg")!.getBoundingClientRect().width), box: box.clientWidth }));
      expect(chart.svg).toBeGreaterThanOrEqual(540);
      expect(chart.svg).toBeGreaterThan(chart.box);
      expect(await phone.locator("#usage-panel .chart-legend .legend-item").allTextContents()).toEqual(["Successes", "Errors"]);
      expect(await phone.locator("main > section.card").last().getAttribute("class")).toContain("danger-zone");
      await shoot("m-5-key-detail.png", [], phone);
      await phone.goto(`${server.origin}/portal/keys/${keyId}`);
      await phone.locator(".facts .badge-expiring").waitFor();
      await fitsThePhone("key detail in its grace period");

      await phoneNav("Audit log", "/portal/audit");
      await phone.locator("table.audit details.raw summary").first().click();
      await fitsThePhone("audit log");
      // The raw record wraps at a readable width, not one character a line.
      expect(await phone.locator("table.audit pre.changes").first().evaluate((pre) => pre.getBoundingClientRect().width)).toBeGreaterThan(150);
      await shoot("m-6-audit.png", [], phone);

      await phoneNav(/^Notifications/, "/portal/notifications");
      await fitsThePhone("notifications");
      await phoneNav("Settings", "/portal/settings");
      await fitsThePhone("settings");
      await shoot("m-7-settings.png", [], phone);
      await phoneNav("Compliance", "/portal/compliance");
      await fitsThePhone("compliance");
      await shoot("m-8-compliance.png", [], phone);
    },
    STEP_MS,
  );

  it(
    "shows times in the reader's own zone once app.js ran, in UTC without it, also in content htmx swaps in",
    async () => {
      // No page renders <Time> yet: a probe page at the server's origin does, under the
      // portal's CSP, with the real htmx and app.js from /static.
      const at = "2026-03-01T09:05:00.000Z";
      const later = "2026-07-04T18:30:00+00:00";
      const probe = String(
        await Layout({
          title: "Times",
          children: [
            `<p id="probe-inner">${await Time({ iso: at })}</p>`,
            `<div id="probe-outer"><button type="button" hx-get="/e2e-probe/outer" hx-target="#probe-outer" hx-swap="outerHTML">Outer</button></div>`,
            `<button type="button" hx-get="/e2e-probe/inner" hx-target="#probe-inner">Inner</button>`,
          ].join(""),
        }),
      );
      // Without JavaScript: readable UTC, labelled, with the instant in the attribute.
      expect(probe).toContain(`<time datetime="${at}">2026-03-01 09:05 UTC</time>`);
      const html = (body: string) => ({ status: 200, headers: { ...PAGE_HEADERS, "content-type": "text/html; charset=utf-8" }, body });
      await narrow.context.route(`${server.origin}/e2e-probe/**`, async (route) => {
        const path = new URL(route.request().url()).pathname;
        if (path === "/e2e-probe/times") return route.fulfill(html(probe));
        const time = String(await Time({ iso: later }));
        return route.fulfill(html(path.endsWith("/outer") ? `<div id="probe-outer">${time}</div>` : time));
      });
      try {
        await phone.goto(`${server.origin}/e2e-probe/times`);
        const first = phone.locator("#probe-inner time");
        await phone.waitForFunction(() => document.querySelector("#probe-inner time")?.hasAttribute("data-local"));
        // Asia/Kolkata is UTC+5:30 all year.
        expect(await first.textContent()).toBe("2026-03-01 14:35 GMT+5:30");
        expect(await first.getAttribute("title")).toBe("2026-03-01 09:05 UTC");

        // A fragment swapped into a target (htmx:after:swap), and one that replaced the element
        // that asked for it (outerHTML: the event reaches the document from the new content).
        await phone.getByRole("button", { name: "Inner" }).click();
        await phone.waitForFunction(() => document.querySelector('#probe-inner time[datetime="2026-07-04T18:30:00.000Z"]')?.hasAttribute("data-local"));
        expect(await first.textContent()).toBe("2026-07-05 00:00 GMT+5:30");
        await phone.getByRole("button", { name: "Outer" }).click();
        await phone.waitForFunction(() => document.querySelector("#probe-outer time")?.hasAttribute("data-local"));
        expect(await phone.locator("#probe-outer time").textContent()).toBe("2026-07-05 00:00 GMT+5:30");
      } finally {
        await narrow.context.unroute(`${server.origin}/e2e-probe/**`);
      }
    },
    STEP_MS,
  );

  it(
    "revokes the new key and the old one in its grace period after confirming; both answer 401 key_revoked",
    async () => {
      const secret = need(journey.secret, "secret");
      const keyId = need(journey.keyId, "key id");
      const newSecret = need(journey.newSecret, "rolled secret");
      const newKeyId = need(journey.newKeyId, "rolled key id");

      await page.goto(`${server.origin}/portal/keys/${newKeyId}`);
      await revokeOnItsPage(newKeyId);
      const revokedNew = await callApi(newSecret);
      expect(revokedNew.status, revokedNew.text).toBe(401);
      expect(revokedNew.type).toContain("application/problem+json");
      expect(revokedNew.body.code).toBe("key_revoked");
      // Revoking the successor leaves the predecessor's grace period running.
      const stillGrace = await callApi(secret);
      expect(stillGrace.status, stillGrace.text).toBe(200);

      await page.goto(`${server.origin}/portal/keys`);
      await page.locator(`#key-${keyId}`).getByRole("link", { name: "journey key" }).click();
      await page.waitForURL(`${server.origin}/portal/keys/${keyId}`);
      await page.locator(".facts .badge-expiring").waitFor();
      await shoot("4-old-key-in-grace.png");
      await revokeOnItsPage(keyId);

      for (const [which, key] of [["old", secret], ["new", newSecret]] as const) {
        const res = await callApi(key);
        expect({ which, status: res.status, code: res.body.code }).toEqual({ which, status: 401, code: "key_revoked" });
      }

      // Revoked keys are listed only when asked for.
      await page.goto(`${server.origin}/portal/keys?revoked=1`);
      expect(await page.locator(`#key-${keyId} .badge-revoked`).textContent()).toBe("revoked");
      expect(await page.locator(`#key-${newKeyId} .badge-revoked`).textContent()).toBe("revoked");
      await shoot("5-keys-revoked.png");
    },
    STEP_MS,
  );

  it("went the whole way, at both widths, without a CSP violation or an uncaught error: htmx runs without inline script, inline style or eval", () => {
    for (const [width, b] of [["1280", browser], ["390", narrow]] as const) {
      const r = need(b?.report, `browser at ${width} px`);
      const csp = r.console.filter((m) => /Content Security Policy|Refused to|inline style/i.test(m.text));
      expect({ width, csp, cspViolations: r.cspViolations, pageErrors: r.pageErrors }).toEqual({ width, csp: [], cspViolations: [], pageErrors: [] });
    }
  });

  it("went the whole way, at both widths, without a console error", () => {
    for (const [width, b] of [["1280", browser], ["390", narrow]] as const) {
      const r = need(b?.report, `browser at ${width} px`);
      const errors = r.console.filter((m) => m.type === "error");
      expect({ width, errors, failedRequests: r.failedRequests }).toEqual({ width, errors: [], failedRequests: [] });
    }
  });
});
