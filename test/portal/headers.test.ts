import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { email } from "../support/pages.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const HSTS = "max-age=31536000; includeSubDomains";
const HTTPS = { "x-forwarded-proto": "https" };

/** The session cookie a sign-up sets, as its name and value, and the whole Set-Cookie line. */
async function signUp(h: Harness, headers: Record<string, string> = {}) {
  const address = email();
  const body = new URLSearchParams({ email: address, password: "a long and unusual passphrase" }).toString();
  const res = await h.req("/signup", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "same-origin", ...headers }, body });
  expect(res.status).toBe(303);
  const line = res.headers.getSetCookie().find((c) => c.includes("kp_session="))!;
  const pair = line.split(";")[0]!;
  return { email: address, line, name: pair.slice(0, pair.indexOf("=")), value: pair.slice(pair.indexOf("=") + 1) };
}

/** Issue 21 #8: what answers say about transport and caching — HSTS over https, a `__Host-` cookie, no caching of signed-in pages. */
for (const backend of backends) {
  describe(`portal transport and caching headers [${backend.name}]`, () => {
    let proxied: Harness;
    let direct: Harness;
    beforeAll(async () => {
      [proxied, direct] = await Promise.all([startHarness(backend, { config: { trustProxy: true } }), startHarness(backend)]);
    });
    afterAll(() => Promise.all([proxied.close(), direct.close()]));

    it("sends HSTS on answers over https behind a trusted proxy, pages and API alike, and never over plain http", async () => {
      for (const path of ["/login", "/api/keys", "/docs"]) {
        expect(`${path} ${(await proxied.req(path, { headers: HTTPS })).headers.get("strict-transport-security")}`).toBe(`${path} ${HSTS}`);
        expect(`${path} ${(await proxied.req(path)).headers.get("strict-transport-security")}`).toBe(`${path} null`);
      }
      // An untrusted X-Forwarded-Proto says nothing: anyone can send it.
      expect((await direct.req("/login", { headers: HTTPS })).headers.get("strict-transport-security")).toBeNull();
      // A request that reached us over TLS itself.
      const tls = await direct.app.handle(new Request("https://localhost/login", { headers: { accept: "text/html" } }));
      expect(tls.headers.get("strict-transport-security")).toBe(HSTS);
    });

    it("names the session cookie __Host-kp_session over https, Secure and host-only, and kp_session over http", async () => {
      const secure = await signUp(proxied, HTTPS);
      expect(secure.name).toBe("__Host-kp_session");
      expect(secure.line).toMatch(/; Path=\/(;|$)/);
      expect(secure.line).toContain("Secure");
      expect(secure.line).not.toMatch(/Domain=/i);
      const plain = await signUp(proxied);
      expect(plain.name).toBe("kp_session");
      expect(plain.line).not.toContain("Secure");
      const tls = await direct.app.handle(
        new Request("https://localhost/signup", {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "same-origin" },
          body: new URLSearchParams({ email: email(), password: "a long and unusual passphrase" }).toString(),
        }),
      );
      expect(tls.headers.getSetCookie().some((c) => c.startsWith("__Host-kp_session="))).toBe(true);
    });

    it("opens a session under either name during the transition, and expires the old one once a browser holds both", async () => {
      const fresh = await signUp(proxied, HTTPS);
      const page = (cookie: string) => proxied.req("/portal/keys", { headers: { ...HTTPS, accept: "text/html", cookie } });
      expect((await page(`__Host-kp_session=${fresh.value}`)).status).toBe(200);
      // A cookie set before the prefix existed keeps its browser signed in.
      const old = await signUp(proxied);
      const legacy = await page(`kp_session=${old.value}`);
      expect(legacy.status).toBe(200);
      expect(legacy.headers.getSetCookie()).toEqual([]);
      // Signed in again over https, the browser holds both: the new one counts, the old one goes.
      const both = await page(`kp_session=${old.value}; __Host-kp_session=${fresh.value}`);
      expect(both.status).toBe(200);
      const html = await both.text();
      expect(html).toContain(fresh.email);
      expect(html).not.toContain(old.email);
      const expired = both.headers.getSetCookie().find((c) => c.startsWith("kp_session="));
      expect(expired).toMatch(/^kp_session=;.*Max-Age=0/i);
      // Signing out ends both: the old cookie must not sign the browser back in.
      const csrf = /name="_csrf" value="([^"]+)"/.exec(html)![1]!;
      const out = await proxied.req("/logout", {
        method: "POST",
        headers: { ...HTTPS, "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "same-origin", cookie: `kp_session=${old.value}; __Host-kp_session=${fresh.value}` },
        body: new URLSearchParams({ _csrf: csrf }).toString(),
      });
      expect(out.status).toBe(303);
      const cleared = out.headers.getSetCookie().map((c) => c.split("=")[0]).sort();
      expect(cleared).toEqual(["__Host-kp_session", "kp_session"]);
      expect(out.headers.getSetCookie().every((c) => /Max-Age=0/i.test(c))).toBe(true);
    });

    it("sends Cache-Control: no-store on signed-in pages", async () => {
      const b = new Browser(direct);
      await b.signUp(email());
      for (const path of ["/portal", "/portal/keys", "/portal/settings", "/portal/notifications", "/portal/audit", "/portal/billing"]) {
        const res = await b.get(path);
        expect(`${path} ${res.status} ${res.headers.get("cache-control")}`).toBe(`${path} 200 no-store`);
      }
    });
  });
}
