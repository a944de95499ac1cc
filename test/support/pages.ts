/** What the portal tests read off pages, and the account with one key several of them start from. */
import { randomBytes } from "node:crypto";
import { Browser } from "./browser.ts";
import type { Harness } from "./harness.ts";

/** A fresh address: every test signs up its own account. */
export const email = () => `p-${randomBytes(4).toString("hex")}@example.com`;

/** The key secret a page shows (once), if it shows one. */
export const secretIn = (html: string) => /kp_(live|test)_[0-9A-Za-z]{46}/.exec(html)?.[0];

/** The id of the first key a page links to. */
const keyIdIn = (html: string) => /\/portal\/keys\/(key_\w+)/.exec(html)![1]!;

/** Signs up through the portal and creates a key "svc" there: the browser, its key and secret, the address. */
export async function signUpWithKey(h: Harness) {
  const b = new Browser(h);
  const address = email();
  await b.signUp(address);
  const created = secretIn(await (await b.post("/portal/keys", { name: "svc", scopes: "email:read", rateLimit: "600" })).text())!;
  const id = keyIdIn(await b.page("/portal/keys"));
  return { b, id, secret: created, address };
}
