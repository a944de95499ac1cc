import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { Locator, Page, Response as PageResponse } from "playwright-core";
import { launchChromium, type Chromium } from "./chromium.ts";
import { startServer, type ServerProcess } from "./server.ts";

// A new user's way through Keyport in a real chromium against a real `keyport serve`:
// sign up → create a key → read its secret once → call /v1 with it → see the request on the
// usage page after a flush → roll with a grace period → revoke → both keys answer 401.
// The steps run in order and share the state below; each names what an earlier failure
// left it without.

const SCREENSHOTS = join(import.meta.dir, "screenshots");
// A step drives a real browser against a server process: clicks, navigations and a flush
// take 1-2.5 s on 2 cores, and starting the server and Chromium about 4 s.
const STEP_MS = 20_000;
const EMAIL = `e2e-${randomBytes(4).toString("hex")}@example.com`;
const PASSWORD = "a long and unusual passphrase";
const SECRET = /^kp_live_[0-9A-Za-z]{46}$/;

let server: ServerProcess;
let browser: Chromium;
let page: Page;
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

async function shoot(name: string, mask: Locator[] = []) {
  // The secret panels are masked: a screenshot on disk must not hold a working key.
  await page.screenshot({ path: join(SCREENSHOTS, name), fullPage: true, mask, maskColor: "#888" });
}

describe("a new user's journey in the browser", () => {
  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    server = await startServer({ USAGE_FLUSH_MS: "200" });
    browser = await launchChromium();
    page = browser.page;
    // The copy button writes to the clipboard; the test reads it back.
    await browser.context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.origin });
    page.setDefaultTimeout(15_000);
    page.on("dialog", (d) => {
      dialogs.push({ type: d.type(), message: d.message() });
      void d.accept();
    });
  }, STEP_MS);

  afterAll(async () => {
    await browser?.close();
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

      await page.goto(`${server.origin}/portal/keys`);
      expect(await page.locator(`#key-${keyId} .badge-revoked`).textContent()).toBe("revoked");
      expect(await page.locator(`#key-${newKeyId} .badge-revoked`).textContent()).toBe("revoked");
      await shoot("5-keys-revoked.png");
    },
    STEP_MS,
  );

  it("went the whole way without a CSP violation or an uncaught error: htmx runs without inline script or eval", () => {
    const r = need(browser?.report, "browser");
    const csp = r.console.filter((m) => /Content Security Policy/i.test(m.text));
    expect({ csp, cspViolations: r.cspViolations, pageErrors: r.pageErrors }).toEqual({ csp: [], cspViolations: [], pageErrors: [] });
  });

  it("went the whole way without a console error", () => {
    const r = need(browser?.report, "browser");
    const errors = r.console.filter((m) => m.type === "error");
    expect({ errors, failedRequests: r.failedRequests }).toEqual({ errors: [], failedRequests: [] });
  });
});
