import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";

/** Debian's chromium; .ci/run installs it with apt-get. Playwright never downloads a browser here. */
export const CHROMIUM = "/usr/bin/chromium";

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** What the page said that a user does not see: console messages, uncaught errors, CSP reports. */
export interface PageReport {
  /** `page` is where the browser was, `source` the script or resource the message is about. */
  console: { type: string; text: string; page: string; source: string }[];
  /** Every answer of 400 or more to a request the page made, as `status method url`. */
  failedRequests: string[];
  pageErrors: string[];
  cspViolations: string[];
}

export interface Chromium {
  context: BrowserContext;
  page: Page;
  report: PageReport;
  close(): Promise<void>;
}

export interface ChromiumOptions {
  /** 1280 × 900 unless told: the desktop size the journey runs at. */
  viewport?: { width: number; height: number };
  /** An IANA zone such as "Asia/Kolkata" (no daylight saving: a stable offset); the machine's own otherwise. */
  timezoneId?: string;
  locale?: string;
  /** false: a browser with scripts off (the pages must work as plain HTML); its report then has no CSP violations, which only a script sees. */
  javaScriptEnabled?: boolean;
}

/**
 * One headless chromium with a fresh profile and one page whose console, uncaught errors and
 * `securitypolicyviolation` events are collected into `report` across navigations (pages
 * opened later in the context report there too).
 * Throws, naming the fix, when chromium is not installed: the test fails, it never skips.
 */
export async function launchChromium(options: ChromiumOptions = {}): Promise<Chromium> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: install Debian's chromium (apt-get update && apt-get install -y chromium), as .ci/run does. Never \`npx playwright install\`.`);
  }
  const profile = mkdtempSync(join(tmpdir(), "kp-e2e-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: options.viewport ?? { width: 1280, height: 900 },
    ...(options.timezoneId ? { timezoneId: options.timezoneId } : {}),
    ...(options.locale ? { locale: options.locale } : {}),
    ...(options.javaScriptEnabled === false ? { javaScriptEnabled: false } : {}),
  });
  const report: PageReport = { console: [], failedRequests: [], pageErrors: [], cspViolations: [] };
  // The binding and the listener are installed through the DevTools protocol, outside the
  // page's CSP, so they see violations without weakening the policy under test.
  await context.exposeBinding("__keyportCspViolation", (_source, line: string) => void report.cspViolations.push(line));
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      const report = (window as unknown as { __keyportCspViolation: (line: string) => void }).__keyportCspViolation;
      report(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  const watch = (page: Page) => {
    page.on("console", (m) => void report.console.push({ type: m.type(), text: m.text(), page: page.url(), source: m.location().url }));
    page.on("response", (r) => void (r.status() >= 400 && report.failedRequests.push(`${r.status()} ${r.request().method()} ${r.url()}`)));
    page.on("pageerror", (err) => void report.pageErrors.push(`${err.name}: ${err.message} (on ${page.url()})`));
  };
  const page = context.pages()[0] ?? (await context.newPage());
  watch(page);
  context.on("page", watch);
  return {
    context,
    page,
    report,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
