import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import type { Page, Response as PageResponse } from "playwright-core";
import { launchChromium, type Chromium } from "./chromium.ts";
import { startServer, type ServerProcess } from "./server.ts";

// The API reference (/docs) in a real chromium against a real `keyport serve`, twice:
// with JavaScript (search as one types, htmx swaps; sign up; Send request; the copy button
// puts the whole sandbox key into the clipboard, and that key works from a program until
// logout revokes it), and without JavaScript (the same pages as plain GET and POST forms).
// The steps of a walk run in order and share the state below; each names what an earlier
// failure left it without. Neither browser may log a console error, a page error, a CSP
// violation or an answer of 400 or more.

// A step drives a real browser against a server process: clicks, navigations and a try-it
// request take 1-2.5 s on 2 cores, and starting the server and Chromium about 4 s.
const STEP_MS = 20_000;
const PASSWORD = "a long and unusual passphrase";
const SANDBOX_SECRET = /kp_test_[0-9A-Za-z]{46}/;
const EMAIL_OP = "Check an email address";
const KEYS_OP = "List the account's keys";

let server: ServerProcess;

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`no ${what}: an earlier step failed`);
  return value;
}

/** A call from the user's own program: Bun's fetch, not the browser. */
async function callApi(secret: string) {
  const res = await fetch(`${server.origin}/v1/email/${encodeURIComponent("x@example.com")}`, { headers: { authorization: `Bearer ${secret}` } });
  const text = await res.text();
  let body: Record<string, unknown> = {};
  try {
    body = JSON.parse(text) as Record<string, unknown>;
  } catch {
    body = { unparsable: text };
  }
  return { status: res.status, type: res.headers.get("content-type") ?? "", body, text };
}

/** Clicks (or presses) and waits for the answer to the request that makes. */
async function actFor(page: Page, act: () => Promise<unknown>, matches: (r: PageResponse) => boolean): Promise<PageResponse> {
  const [response] = await Promise.all([page.waitForResponse(matches), act()]);
  return response;
}

const isPost = (path: string) => (r: PageResponse) => new URL(r.url()).pathname === path && r.request().method() === "POST";

/** The names in the operations list of the index. */
const operationSummaries = (page: Page) => page.locator("#operations ul.operations li a > span").allTextContents();

/** The rate-limit rows of the result's headers table, by header name: its value and its note. */
async function rateRows(page: Page): Promise<Record<string, { value: string; note: string }>> {
  const rows = await page.locator("#try-it table.answer-headers tr.rate").evaluateAll((trs) => trs.map((tr) => Array.from(tr.querySelectorAll("td")).map((td) => (td.textContent ?? "").trim())));
  return Object.fromEntries(rows.map(([name = "", value = "", note = ""]) => [name, { value, note }]));
}

/**
 * The result of a first try-it with a fresh sandbox key: 200 OK, the RateLimit rows with
 * their notes in words, the note that the key was made, the email check's answer.
 */
async function expectFirstSandboxResult(page: Page) {
  const heading = page.locator("#try-result");
  await heading.waitFor();
  expect((await heading.locator(".badge").textContent())?.trim()).toBe("200 OK");
  const rates = await rateRows(page);
  expect(Object.keys(rates)).toEqual(expect.arrayContaining(["ratelimit", "ratelimit-policy"]));
  const limit = need(rates.ratelimit, "ratelimit row");
  expect(limit.value).toMatch(/r=\d+;t=\d+/);
  const [, r, t] = /r=(\d+);t=(\d+)/.exec(limit.value)!;
  // The key's policy comes first; a fresh sandbox key is a test key: no "month" policy.
  expect(limit.note).toStartWith(`the key's per-minute limit: ${r} left, full again in ${t} s; the plan's per-second limit: `);
  expect(limit.value).not.toContain('"month"');
  const policy = need(rates["ratelimit-policy"], "ratelimit-policy row");
  expect(policy.value).toMatch(/q=\d+;w=\d+/);
  const [, q, w] = /q=(\d+);w=(\d+)/.exec(policy.value)!;
  expect(policy.note).toStartWith(`the key's per-minute limit: ${q} per ${w} s; the plan's per-second limit: `);
  // A fresh key: its first request leaves one less than the policy allows.
  expect(Number(r)).toBe(Number(q) - 1);
  expect(await page.locator("#try-it p.note").filter({ hasText: "A sandbox key was made for this session" }).count()).toBe(1);
  const body = JSON.parse((await page.locator("#try-it pre.answer-body").textContent()) ?? "") as Record<string, unknown>;
  expect(body).toMatchObject({ input: "x@example.com", valid: true, domain: "example.com" });
}

/** Signs up on the page the "Sign up" link of the header leads to; resolves with the answer to the POST. */
async function signUp(page: Page, email: string): Promise<PageResponse> {
  await page.getByRole("navigation", { name: "Account" }).getByRole("link", { name: "Sign up" }).click();
  await page.getByRole("heading", { name: "Create your account" }).waitFor();
  expect(new URL(page.url()).pathname).toBe("/signup");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  const signup = await actFor(page, () => page.getByRole("button", { name: "Sign up" }).click(), isPost("/signup"));
  await page.waitForURL(`${server.origin}/portal`);
  await page.getByRole("heading", { name: "Dashboard" }).waitFor();
  expect(await page.locator("header .who").textContent()).toBe(email);
  return signup;
}

function expectCleanReport(b: Chromium | undefined, which: string) {
  const r = need(b?.report, `${which} browser`);
  const errors = r.console.filter((m) => m.type === "error");
  const csp = r.console.filter((m) => /Content Security Policy|Refused to|inline style/i.test(m.text));
  expect({ which, errors, csp, cspViolations: r.cspViolations, pageErrors: r.pageErrors, failedRequests: r.failedRequests }).toEqual({
    which,
    errors: [],
    csp: [],
    cspViolations: [],
    pageErrors: [],
    failedRequests: [],
  });
}

describe("the API reference in the browser", () => {
  beforeAll(async () => {
    server = await startServer();
  }, STEP_MS);

  afterAll(async () => {
    const code = await server?.stop();
    if (code !== undefined && code !== 0) console.error(`keyport serve exited ${code}. Its output:\n${server.output()}`);
  }, STEP_MS);

  describe("with JavaScript, at 1280 × 900", () => {
    let browser: Chromium;
    let page: Page;
    const walk: { copied?: string; secret?: string } = {};

    beforeAll(async () => {
      browser = await launchChromium();
      page = browser.page;
      page.setDefaultTimeout(15_000);
      // The copy button writes to the clipboard; the test reads it back.
      await browser.context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.origin });
    }, STEP_MS);

    afterAll(async () => {
      await browser?.close();
    }, STEP_MS);

    it(
      "filters the operations as one types into the search box: htmx swaps the list, the page stays",
      async () => {
        await page.goto(`${server.origin}/docs`);
        await page.getByRole("heading", { level: 1 }).waitFor();
        expect(await operationSummaries(page)).toEqual(expect.arrayContaining([EMAIL_OP, KEYS_OP]));
        // A navigation would make a new window object: the mark would be gone.
        await page.evaluate(() => ((window as unknown as { __stayed?: boolean }).__stayed = true));

        const search = page.locator("#docs-q");
        const filtered = await actFor(
          page,
          () => search.pressSequentially("email"),
          (r) => new URL(r.url()).pathname === "/docs" && new URL(r.url()).searchParams.get("q") === "email",
        );
        expect(filtered.status()).toBe(200);
        expect(await filtered.request().headerValue("hx-request")).toBe("true");
        await page.locator("#operations").getByText(KEYS_OP).waitFor({ state: "detached" });
        const shown = await operationSummaries(page);
        expect(shown).toContain(EMAIL_OP);
        expect(shown).not.toContain(KEYS_OP);
        // The address follows the search (HX-Replace-Url), without a navigation.
        await page.waitForURL(`${server.origin}/docs?q=email`);
        expect(await page.evaluate(() => (window as unknown as { __stayed?: boolean }).__stayed)).toBe(true);
      },
      STEP_MS,
    );

    it(
      "opens the email check by its link: signed out, try-it can only take a pasted key",
      async () => {
        await page.locator("#operations").getByRole("link", { name: new RegExp(EMAIL_OP) }).click();
        await page.waitForURL(`${server.origin}/docs/analyzeEmail`);
        await page.getByRole("heading", { level: 1, name: EMAIL_OP }).waitFor();
        const tryIt = page.locator("#try-it");
        expect(await tryIt.getByRole("radio").evaluateAll((radios) => radios.map((r) => (r as HTMLInputElement).value))).toEqual(["pasted"]);
        expect(await tryIt.getByRole("button", { name: "Send request" }).count()).toBe(1);
      },
      STEP_MS,
    );

    it(
      "signs up from the reference's header and comes back to the operation, the sandbox key chosen",
      async () => {
        const signup = await signUp(page, `e2e-docs-${randomBytes(4).toString("hex")}@example.com`);
        expect(signup.status()).toBe(200);
        expect(await signup.headerValue("hx-redirect")).toBe("/portal");

        await page.goto(`${server.origin}/docs/analyzeEmail`);
        await page.getByRole("heading", { level: 1, name: EMAIL_OP }).waitFor();
        const sandbox = page.locator('#try-it input[name="credential"][value="sandbox"]');
        expect(await sandbox.isChecked()).toBe(true);
        expect(await page.locator("#f-param_address").inputValue()).not.toBe("");
        // No key yet: the samples read it from the environment.
        expect(await page.locator("#sample-curl").textContent()).toContain("$KEYPORT_KEY");
      },
      STEP_MS,
    );

    it(
      "sends the request with a sandbox key made for the session: 200 OK, the RateLimit rows, a masked key in the samples",
      async () => {
        await page.locator("#f-param_address").fill("x@example.com");
        const tried = await actFor(page, () => page.getByRole("button", { name: "Send request" }).click(), isPost("/docs/analyzeEmail/try"));
        expect(tried.status()).toBe(200);
        expect(await tried.request().headerValue("hx-request")).toBe("true");
        await expectFirstSandboxResult(page);
        expect(page.url()).toBe(`${server.origin}/docs/analyzeEmail`);

        const curl = (await page.locator("#sample-curl").textContent()) ?? "";
        expect(curl).toContain("…");
        expect(curl).not.toMatch(SANDBOX_SECRET);
        expect(curl).toContain(`${server.origin}/v1/email/`);
        const mask = (await page.locator("figure.sample").filter({ has: page.locator("#sample-curl") }).locator("button.copy").getAttribute("data-sandbox-mask")) ?? "";
        expect(mask).toMatch(/^kp_test_[0-9A-Za-z]{4}…[0-9A-Za-z]{4}$/);
        expect(curl).toContain(mask);
        for (const lang of ["javascript", "python"]) {
          const text = (await page.locator(`#sample-${lang}`).textContent()) ?? "";
          expect({ lang, masked: text.includes(mask), whole: SANDBOX_SECRET.test(text) }).toEqual({ lang, masked: true, whole: false });
        }
        expect(await page.content()).not.toMatch(SANDBOX_SECRET);
      },
      STEP_MS,
    );

    it(
      "copies the curl sample with the whole sandbox key in it",
      async () => {
        const figure = page.locator("figure.sample").filter({ has: page.locator("#sample-curl") });
        const copy = figure.locator("button.copy");
        expect(await copy.getAttribute("data-copy-target")).toBe("sample-curl");
        const shown = (await page.locator("#sample-curl").textContent()) ?? "";
        const mask = (await copy.getAttribute("data-sandbox-mask")) ?? "";

        const asked = await actFor(page, () => copy.click(), isPost("/docs/sandbox-key"));
        expect(asked.status()).toBe(200);
        expect(await asked.headerValue("cache-control")).toBe("no-store");
        await figure.getByRole("button", { name: "Copied" }).waitFor();

        const copied = await page.evaluate(() => navigator.clipboard.readText());
        walk.copied = copied;
        expect(copied).toMatch(SANDBOX_SECRET);
        expect(copied).toContain(`${server.origin}/v1/email/`);
        const secret = SANDBOX_SECRET.exec(copied)![0];
        walk.secret = secret;
        // The copy is the sample on screen with the masked key replaced by the whole one.
        expect(`kp_test_${secret.slice(8, 12)}…${secret.slice(-4)}`).toBe(mask);
        expect(copied).toBe(shown.split(mask).join(secret));
        // The page itself still shows only the masked key.
        expect(await page.content()).not.toContain(secret);
      },
      STEP_MS,
    );

    it(
      "answers the copied key from a program: it works",
      async () => {
        const secret = need(walk.secret, "copied sandbox key");
        const res = await callApi(secret);
        expect(res.status, res.text).toBe(200);
        expect(res.type).toContain("application/json");
        expect(res.body).toMatchObject({ input: "x@example.com", valid: true, domain: "example.com" });
      },
      STEP_MS,
    );

    it(
      "logs out with the header's button; the copied sandbox key then answers 401 key_revoked",
      async () => {
        const secret = need(walk.secret, "copied sandbox key");
        await actFor(page, () => page.getByRole("button", { name: "Log out" }).click(), isPost("/logout"));
        await page.waitForURL(`${server.origin}/login`);
        await page.getByRole("heading", { name: "Log in" }).waitFor();

        // Revocation is immediate in one process; a few tries allow for the key cache's announcement.
        let res = await callApi(secret);
        for (let attempt = 0; attempt < 25 && res.status !== 401; attempt++) {
          await Bun.sleep(200);
          res = await callApi(secret);
        }
        expect({ status: res.status, type: res.type, code: res.body.code }).toEqual({ status: 401, type: expect.stringContaining("application/problem+json"), code: "key_revoked" });
      },
      STEP_MS,
    );

    it("went the whole way without a console error, a page error, a CSP violation or a failed request", () => {
      expectCleanReport(browser, "JavaScript");
    });
  });

  describe("without JavaScript", () => {
    let browser: Chromium;
    let page: Page;

    beforeAll(async () => {
      browser = await launchChromium({ javaScriptEnabled: false });
      page = browser.page;
      page.setDefaultTimeout(15_000);
    }, STEP_MS);

    afterAll(async () => {
      await browser?.close();
    }, STEP_MS);

    it(
      "searches with the plain GET form: Enter loads /docs?q=email with the filtered list",
      async () => {
        await page.goto(`${server.origin}/docs`);
        await page.getByRole("heading", { level: 1 }).waitFor();
        // No script runs: htmx never loaded.
        expect(await page.evaluate(() => typeof (window as unknown as { htmx?: unknown }).htmx)).toBe("undefined");
        expect(await operationSummaries(page)).toEqual(expect.arrayContaining([EMAIL_OP, KEYS_OP]));

        await page.locator("#docs-q").fill("email");
        const loaded = await actFor(
          page,
          () => page.locator("#docs-q").press("Enter"),
          (r) => new URL(r.url()).pathname === "/docs" && r.request().resourceType() === "document",
        );
        expect(loaded.status()).toBe(200);
        expect(await loaded.request().headerValue("hx-request")).toBeNull();
        await page.waitForURL(`${server.origin}/docs?q=email`);
        await page.getByRole("heading", { level: 1 }).waitFor();
        expect(await page.locator("#docs-q").inputValue()).toBe("email");
        const shown = await operationSummaries(page);
        expect(shown).toContain(EMAIL_OP);
        expect(shown).not.toContain(KEYS_OP);
      },
      STEP_MS,
    );

    it(
      "opens the email check by its link",
      async () => {
        await page.locator("#operations").getByRole("link", { name: new RegExp(EMAIL_OP) }).click();
        await page.waitForURL(`${server.origin}/docs/analyzeEmail`);
        await page.getByRole("heading", { level: 1, name: EMAIL_OP }).waitFor();
      },
      STEP_MS,
    );

    it(
      "signs up with the plain form: a 303 to the dashboard",
      async () => {
        const signup = await signUp(page, `e2e-docs-nojs-${randomBytes(4).toString("hex")}@example.com`);
        expect(signup.status()).toBe(303);
        expect(await signup.headerValue("location")).toBe("/portal");
        expect(await signup.request().headerValue("hx-request")).toBeNull();
      },
      STEP_MS,
    );

    it(
      "sends the request as a plain POST: the whole page comes back with 200 OK and the RateLimit rows",
      async () => {
        await page.goto(`${server.origin}/docs/analyzeEmail`);
        await page.getByRole("heading", { level: 1, name: EMAIL_OP }).waitFor();
        expect(await page.locator('#try-it input[name="credential"][value="sandbox"]').isChecked()).toBe(true);
        await page.locator("#f-param_address").fill("x@example.com");
        const tried = await actFor(page, () => page.getByRole("button", { name: "Send request" }).click(), isPost("/docs/analyzeEmail/try"));
        expect(tried.status()).toBe(200);
        expect(await tried.request().headerValue("hx-request")).toBeNull();
        expect(tried.request().resourceType()).toBe("document");
        await page.waitForLoadState("load");
        // The whole page: the layout, the operation's heading and the other sections around try-it.
        await page.getByRole("heading", { level: 1, name: EMAIL_OP }).waitFor();
        expect(await page.locator("header .who").count()).toBe(1);
        expect(await page.locator("#answers").count()).toBe(1);
        await expectFirstSandboxResult(page);
        const curl = (await page.locator("#sample-curl").textContent()) ?? "";
        expect(curl).toContain("…");
        expect(curl).not.toMatch(SANDBOX_SECRET);
        expect(await page.content()).not.toMatch(SANDBOX_SECRET);
      },
      STEP_MS,
    );

    it("went the whole way without a console error, a page error or a failed request", () => {
      expectCleanReport(browser, "no JavaScript");
    });
  });
});

