import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { launchChromium, type Chromium } from "./chromium.ts";
import { startServer, type ServerProcess } from "./server.ts";
import { TestSmtpServer, linkIn, type ReceivedMail } from "../support/smtp.ts";

// "Forgot password?" end to end in a real chromium against a real `keyport serve` that sends
// its mail over SMTP (STARTTLS, AUTH) to a TestSmtpServer in this process: sign up → confirm
// the address from the mailed link (live keys wait for it, since SMTP_URL is set) → log out →
// ask for a reset from the login page → follow the mailed link → set a new password → log in
// with it → the used link no longer works. The steps run in order and share the state below.
// The browser may log no console error, page error or CSP violation, and no answer of 400 or
// more except the used link's.
//
// The server trusts the test server's throwaway certificate through NODE_EXTRA_CA_CERTS (read
// by Bun's TLS, like Node's), so no setting of Keyport's own is needed for it. SMTP_URL names
// `localhost`, which the certificate is made for: Bun refuses an IP address as the TLS server
// name, and the transport sends the URL's host as it.

// A step drives a real browser against a server process (1-2.5 s on 2 cores); mail goes out
// on the server's delivery timer, every 200 ms here.
const STEP_MS = 20_000;
const EMAIL = `e2e-reset-${randomBytes(4).toString("hex")}@example.com`;
const PASSWORD = "a long and unusual passphrase";
const NEW_PASSWORD = "another quite long passphrase";

let smtp: TestSmtpServer;
let caDir: string;
let server: ServerProcess;
let browser: Chromium;
let page: Page;
/** Where the mailed links point: PUBLIC_URL's default, http://localhost:PORT. The whole walk stays on it, so cookies and links agree. */
let site: string;
const walk: { resetLink?: string } = {};

function need<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`no ${what}: an earlier step failed`);
  return value;
}

/** The `count`-th message with `subject` to `address`, once the server's timer has sent it (a bounded wait). */
async function mailFor(address: string, subject: string, count = 1): Promise<ReceivedMail> {
  for (let i = 0; i < 150; i++) {
    const got = smtp.to(address).filter((m) => m.parsed.subject === subject);
    if (got.length >= count) return got[count - 1]!;
    await Bun.sleep(100);
  }
  throw new Error(`no mail "${subject}" #${count} to ${address}; received: ${smtp.received.map((m) => `${m.envelope.to} "${m.parsed.subject}"`).join(", ")}. Server output:\n${server.output()}`);
}

describe("forgot password, in the browser, with mail over SMTP", () => {
  beforeAll(async () => {
    smtp = await new TestSmtpServer().start();
    caDir = mkdtempSync(join(tmpdir(), "kp-e2e-smtp-ca-"));
    writeFileSync(join(caDir, "ca.pem"), smtp.cert);
    server = await startServer({
      SMTP_URL: smtp.url().replace("@127.0.0.1:", "@localhost:"),
      NODE_EXTRA_CA_CERTS: join(caDir, "ca.pem"),
      MAIL_FROM: "Keyport <keys@example.com>",
      MAIL_DELIVERY_MS: "200",
    });
    site = `http://localhost:${new URL(server.origin).port}`;
    browser = await launchChromium();
    page = browser.page;
    page.setDefaultTimeout(15_000);
  }, STEP_MS);

  afterAll(async () => {
    await browser?.close();
    const code = await server?.stop();
    if (code !== undefined && code !== 0) console.error(`keyport serve exited ${code}. Its output:\n${server.output()}`);
    await smtp?.stop();
    if (caDir) rmSync(caDir, { recursive: true, force: true });
  }, STEP_MS);

  it(
    "signs up, and the verification mail arrives over STARTTLS with AUTH",
    async () => {
      await page.goto(`${site}/signup`);
      await page.getByLabel("Email").fill(EMAIL);
      await page.getByLabel("Password").fill(PASSWORD);
      await page.getByRole("button", { name: "Sign up" }).click();
      // With mail verification on, sign-up answers "check your mail" (a taken address gets the same) and signs no one in.
      await page.getByRole("heading", { name: "Check your mail" }).waitFor();
      const mail = await mailFor(EMAIL, "Confirm your email address for Keyport");
      expect(mail.secure).toBe(true);
      expect(mail.user).toBe(smtp.user);
      expect(mail.envelope.from).toBe("keys@example.com");
      await page.getByRole("link", { name: "Go to log in" }).click();
      await page.getByLabel("Email").fill(EMAIL);
      await page.getByLabel("Password").fill(PASSWORD);
      await page.getByRole("button", { name: "Log in" }).click();
      await page.waitForURL(`${site}/portal`);
    },
    STEP_MS,
  );

  it(
    "keeps live keys until the address is confirmed, by the button on the mailed link's page",
    async () => {
      await page.goto(`${site}/portal/keys`);
      await page.getByText("Confirm your address to create live keys.").waitFor();
      expect(await page.getByRole("button", { name: "Send a new link" }).isVisible()).toBe(true);

      const link = linkIn(await mailFor(EMAIL, "Confirm your email address for Keyport"), `${site}/verify-email?token=`);
      const opened = await page.goto(link);
      expect(opened!.status()).toBe(200);
      expect(await opened!.headerValue("referrer-policy")).toBe("no-referrer");
      await page.getByRole("button", { name: "Confirm this address" }).click();
      await page.getByRole("heading", { name: "Address confirmed" }).waitFor();

      await page.getByRole("link", { name: "Go to your keys" }).click();
      await page.waitForURL(`${site}/portal/keys`);
      await page.getByRole("heading", { name: "Create a key" }).waitFor();
      expect(await page.getByText("Confirm your address to create live keys.").count()).toBe(0);
    },
    STEP_MS,
  );

  it(
    "logs out, and asks for a reset from the login page's link",
    async () => {
      await page.getByRole("button", { name: "Log out" }).click();
      await page.waitForURL(`${site}/login`);
      await page.getByRole("link", { name: "Forgot password?" }).click();
      await page.waitForURL(`${site}/forgot-password`);
      await page.getByLabel("Email").fill(EMAIL);
      await page.getByRole("button", { name: "Send the link" }).click();
      await page.getByRole("heading", { name: "Check your mail" }).waitFor();
      expect(await page.locator("main").textContent()).not.toContain(EMAIL);
    },
    STEP_MS,
  );

  it(
    "follows the mailed link, sets a new password, and is sent to log in",
    async () => {
      const mail = await mailFor(EMAIL, "Reset your Keyport password");
      const link = linkIn(mail, `${site}/reset-password?token=`);
      walk.resetLink = link;
      const opened = await page.goto(link);
      expect(opened!.status()).toBe(200);
      expect(await opened!.headerValue("referrer-policy")).toBe("no-referrer");
      expect(await opened!.headerValue("cache-control")).toBe("no-store");
      await page.getByRole("heading", { name: "Choose a new password" }).waitFor();
      await page.getByLabel("New password").fill(NEW_PASSWORD);
      await page.getByRole("button", { name: "Set the password" }).click();
      await page.waitForURL(`${site}/login?reset=done`);
      await page.getByText("Your password was changed and every session signed out.").waitFor();
    },
    STEP_MS,
  );

  it(
    "logs in with the new password, and the account is told its password changed",
    async () => {
      await page.getByLabel("Email").fill(EMAIL);
      await page.getByLabel("Password").fill(NEW_PASSWORD);
      await page.getByRole("button", { name: "Log in" }).click();
      await page.waitForURL(`${site}/portal`);
      expect(await page.locator("header .who").textContent()).toBe(EMAIL);
      await mailFor(EMAIL, "Your Keyport password was changed");
    },
    STEP_MS,
  );

  it(
    "answers the used link with a page that offers a new one",
    async () => {
      const link = need(walk.resetLink, "reset link");
      const opened = await page.goto(link);
      expect(opened!.status()).toBe(400);
      await page.getByRole("heading", { name: "This link does not work" }).waitFor();
      expect(await page.getByRole("link", { name: "Ask for a new link" }).getAttribute("href")).toBe("/forgot-password");
    },
    STEP_MS,
  );

  it("logged no console error, page error or CSP violation, and no failed request but the used link's", () => {
    const r = browser.report;
    expect(r.pageErrors).toEqual([]);
    expect(r.cspViolations).toEqual([]);
    expect(r.console.filter((m) => m.type === "error" && !m.page.includes("/reset-password"))).toEqual([]);
    expect(r.failedRequests).toEqual([`400 GET ${need(walk.resetLink, "reset link")}`]);
  });
});
