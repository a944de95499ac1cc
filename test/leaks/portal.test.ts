import { afterAll, afterEach, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { and, eq } from "drizzle-orm";
import { createAccount, findAccountByEmail } from "../../src/accounts/service.ts";
import { auditEvents } from "../../src/audit/audit.sql.ts";
import { cliActor } from "../../src/audit/service.ts";
import { generateKey } from "../../src/keys/format.ts";
import { getKey } from "../../src/keys/service.ts";
import { leakReports } from "../../src/leaks/leaks.sql.ts";
import { leakPolicyFloor, reportLeaks, setLeakPolicy, setLeakPolicyFloor } from "../../src/leaks/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { listRotations } from "../../src/rotation/service.ts";
import { AdminLeaksPage } from "../../views/leaks/admin.tsx";
import { LeakPolicySection } from "../../views/leaks/policy.tsx";
import { LeakedFacts, ReportLeakForm } from "../../views/leaks/report.tsx";
import { backends, UNMETERED_PLANS } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { bearer, newKey } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { email } from "../support/pages.ts";

const HOSTILE = `"><img src=x onerror=alert(1)><script>alert(2)</script>`;
/** A URL that parses (the browser would percent-encode it) yet holds markup as reported. */
const HOSTILE_URL = `https://example.com/${HOSTILE}`;
const OPERATOR_PASSWORD = "operator passphrase 1";

/** A browser signed up to a fresh account, and the account. */
async function signedIn(h: Harness) {
  const b = new Browser(h);
  const address = email();
  await b.signUp(address);
  return { b, account: (await findAccountByEmail(h.deps, address))! };
}

const checkedPolicy = (html: string, name: string) => [...html.matchAll(new RegExp(`<input type="radio" name="${name}" value="(\\w+)" checked`, "g"))].map((m) => m[1]);
const auditOf = (h: Harness, accountId: string, action: string) =>
  h.deps.db
    .select()
    .from(auditEvents)
    .where(and(eq(auditEvents.accountId, accountId), eq(auditEvents.action, action)));

for (const backend of backends) {
  describe(`leaks in the portal [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    let operator: Browser;
    beforeAll(async () => {
      h = await startHarness(backend, { clock, config: { plansFile: UNMETERED_PLANS } });
      // The first account of a database is an operator.
      const opEmail = `op-${randomBytes(3).toString("hex")}@example.com`;
      await createAccount(h.deps, { email: opEmail, password: OPERATOR_PASSWORD }, cliActor);
      operator = new Browser(h);
      expect((await operator.post("/login", { email: opEmail, password: OPERATOR_PASSWORD })).status).toBe(303);
      await operator.page("/admin/leaks");
    });
    afterAll(() => h.close());
    afterEach(() => setLeakPolicyFloor(h.deps, "notify", cliActor));

    it("takes a report of another account's key from the keys page and answers only \"reported\", whoever's key it is", async () => {
      const victim = await signedIn(h);
      const { key, secret } = await newKey(h, victim.account.id, { name: "payments worker" });
      const reporter = await signedIn(h);
      const keysPage = await reporter.b.page("/portal/keys");
      expect(keysPage).toContain('<form id="report-leak" method="post" action="/portal/leaks"');

      const res = await reporter.b.post("/portal/leaks", { key: secret, url: "https://github.com/acme/app/blob/main/.env" });
      expect(res.status).toBe(200);
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(res.headers.get("hx-push-url")).toBe("/portal/keys");
      const page = await res.text();
      expect(page).toContain("Reported. Thank you");
      // Nothing in the answer says whose key it was, what it was called, or what was done:
      // it is the answer to a key nobody has, to the byte.
      for (const s of [secret, key.display, key.name, victim.account.email]) expect(page).not.toContain(s);
      expect(await (await reporter.b.post("/portal/leaks", { key: generateKey("kp", "live"), url: "https://github.com/acme/app/blob/main/.env" })).text()).toBe(page);

      // The owner's policy (rotate, the default) acted on the owner's key.
      expect(await listRotations(h.deps, victim.account.id, { keyId: key.id })).toMatchObject([{ emergency: true, state: "grace_period" }]);
      const [row] = await h.deps.db.select().from(leakReports).where(eq(leakReports.keyId, key.id));
      expect(row).toMatchObject({ source: "portal", reporter: `account:${reporter.account.id}`, url: "https://github.com/acme/app/blob/main/.env", outcome: "acted", action: "rotated" });

      // An unknown key gets the same answer, through htmx the form alone.
      const unknown = await reporter.b.post("/portal/leaks", { key: generateKey("kp", "live"), url: "" }, { htmx: true });
      expect(unknown.status).toBe(200);
      const fragment = await unknown.text();
      expect(fragment).toStartWith('<form id="report-leak"');
      expect(fragment).toContain("Reported. Thank you");
    });

    it("refuses a paste that is not a key of this server beside its field, keeping the URL and never echoing the paste", async () => {
      const { b } = await signedIn(h);
      const good = generateKey("kp", "live");
      const corrupted = good.slice(0, -1) + (good.endsWith("A") ? "B" : "A");
      const res = await b.post("/portal/leaks", { key: corrupted, url: "https://example.com/seen" }, { htmx: true });
      expect(res.status).toBe(422);
      const html = await res.text();
      expect(html).toContain("is not a key of this server");
      expect(html).toContain('value="https://example.com/seen"');
      expect(html).not.toContain(corrupted);
      const badUrl = await b.post("/portal/leaks", { key: good, url: "ftp://example.com/x" });
      expect(badUrl.status).toBe(422);
      expect(await badUrl.text()).toContain("must be an http or https URL");
      expect(await h.deps.db.select().from(leakReports).where(eq(leakReports.url, "https://example.com/seen"))).toEqual([]);
    });

    it("files an operator's report as the operators'", async () => {
      const owner = await signedIn(h);
      await setLeakPolicy(h.deps, owner.account.id, "notify", cliActor);
      const { key, secret } = await newKey(h, owner.account.id);
      expect((await operator.post("/portal/leaks", { key: secret, url: "https://example.com/op" })).status).toBe(200);
      const [row] = await h.deps.db.select().from(leakReports).where(eq(leakReports.keyId, key.id));
      expect(row).toMatchObject({ source: "operator", outcome: "notified" });
    });

    it("badges a leaked key with when and where on its page and in the list, the place as text", async () => {
      const owner = await signedIn(h);
      await setLeakPolicy(h.deps, owner.account.id, "notify", cliActor);
      const { key, secret } = await newKey(h, owner.account.id, { name: "badge me" });
      const clean = await newKey(h, owner.account.id, { name: "clean" });
      await reportLeaks(h.deps, [{ token: secret, url: HOSTILE_URL, source: "api" }], cliActor);
      const leakedAt = (await getKey(h.deps, owner.account.id, key.id)).leakedAt!;

      const page = await owner.b.page(`/portal/keys/${key.id}`);
      expect(page).toContain('<span class="badge badge-leaked"><span>leaked</span></span>');
      expect(page).toContain(`<time datetime="${leakedAt}"`);
      expect(page).toContain("https://example.com/&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;");
      expect(page).not.toContain("<img src=x");
      expect(page).not.toContain("<script>alert(2)");
      expect(page).not.toContain(`href="${HOSTILE_URL}`);
      expect(await owner.b.page(`/portal/keys/${clean.key.id}`)).not.toContain("badge-leaked");

      const list = await owner.b.page("/portal/keys");
      const row = (id: string) => list.slice(list.indexOf(`<tr id="key-${id}">`), list.indexOf("</tr>", list.indexOf(`<tr id="key-${id}">`)));
      expect(row(key.id)).toContain("badge-leaked");
      expect(row(clean.key.id)).not.toContain("badge-leaked");
      // The owner's API shows it too.
      const apiKey = (await newKey(h, owner.account.id, { scopes: ["keys:manage"] })).secret;
      expect(await (await h.req(`/api/keys/${key.id}`, { headers: bearer(apiKey) })).json()).toMatchObject({ leakedAt, leakedUrl: HOSTILE_URL });
      expect(await (await h.req(`/api/keys/${clean.key.id}`, { headers: bearer(apiKey) })).json()).toMatchObject({ leakedAt: null, leakedUrl: null });
    });

    it("sets the account's leak policy from Settings, audited, and refuses one that is not a policy", async () => {
      const { b, account } = await signedIn(h);
      const settings = await b.page("/portal/settings");
      expect(settings).toContain("<h2>Leaked keys</h2>");
      expect(checkedPolicy(settings, "policy")).toEqual(["rotate"]);
      expect(settings).not.toContain('id="leak-floor"');

      const saved = await b.post("/portal/settings/leaks", { policy: "revoke" });
      expect(saved.status).toBe(200);
      expect(saved.headers.get("hx-push-url")).toBe("/portal/settings");
      const html = await saved.text();
      expect(html).toContain("Leak policy saved.");
      expect(checkedPolicy(html, "policy")).toEqual(["revoke"]);
      expect(await auditOf(h, account.id, "leaks.policy_set")).toMatchObject([{ actor: `account:${account.id}`, changes: { policy: "revoke" } }]);

      const refused = await b.post("/portal/settings/leaks", { policy: "ignore" });
      expect(refused.status).toBe(422);
      expect(await refused.text()).toContain("must be one of notify, rotate, revoke");
      expect(checkedPolicy(await b.page("/portal/settings"), "policy")).toEqual(["revoke"]);
    });

    it("lets an operator set the floor, audited, and shows it on the Settings of an account it overrides", async () => {
      const weak = await signedIn(h);
      await setLeakPolicy(h.deps, weak.account.id, "notify", cliActor);
      const strong = await signedIn(h);
      await setLeakPolicy(h.deps, strong.account.id, "revoke", cliActor);

      const res = await operator.post("/admin/leaks/floor", { floor: "rotate" });
      expect(res.status).toBe(303);
      expect(res.headers.get("location")).toBe("/admin/leaks?done=floor");
      expect(await leakPolicyFloor(h.deps)).toBe("rotate");
      const admin = await operator.page("/admin/leaks?done=floor");
      expect(admin).toContain("Floor saved.");
      expect(checkedPolicy(admin, "floor")).toEqual(["rotate"]);
      const opAccount = (await h.deps.db.query.accounts.findFirst({ where: (a, { eq }) => eq(a.isOperator, true) }))!;
      expect(await auditOf(h, "instance", "leaks.floor_set")).toContainEqual(expect.objectContaining({ actor: `account:${opAccount.id}`, changes: { floor: "rotate" } }));

      const weakSettings = await weak.b.page("/portal/settings");
      expect(checkedPolicy(weakSettings, "policy")).toEqual(["notify"]);
      expect(weakSettings).toContain('id="leak-floor"');
      expect(weakSettings).toContain("require at least <strong>rotate at once</strong>");
      expect(await strong.b.page("/portal/settings")).not.toContain('id="leak-floor"');

      const refused = await operator.post("/admin/leaks/floor", { floor: "nothing" });
      expect(refused.status).toBe(422);
      expect(await refused.text()).toContain("must be one of notify, rotate, revoke");
      expect(await leakPolicyFloor(h.deps)).toBe("rotate");
    });

    it("lists every report for operators, newest first, with source, masked key, place, reporter, outcome and action; 404 for anyone else", async () => {
      const owner = await signedIn(h);
      await setLeakPolicy(h.deps, owner.account.id, "revoke", cliActor);
      const { key, secret } = await newKey(h, owner.account.id);
      const reporter = await signedIn(h);
      await reporter.b.post("/portal/leaks", { key: secret, url: HOSTILE_URL });
      const nobodys = generateKey("kp", "live");
      clock.advance(1000);
      await reportLeaks(h.deps, [{ token: nobodys, url: "https://example.com/later", source: "github" }], { actor: "github" });

      const page = await operator.page("/admin/leaks");
      expect(page).toContain('<a href="/admin/leaks" aria-current="page">Leaks</a>');
      const acted = page.slice(page.indexOf(key.display));
      expect(acted).toContain(`href="/admin/accounts/${owner.account.id}"`);
      expect(acted).toContain(`<code>account:${reporter.account.id}</code>`);
      expect(acted).toContain("badge-leak-acted");
      expect(acted).toContain("<td>revoked</td>");
      expect(page).not.toContain("<img src=x");
      expect(page).not.toContain("<script>alert(2)");
      // Newest first: the GitHub report, then the portal's.
      const masked = `kp_live_${nobodys.slice(8, 12)}…${nobodys.slice(-4)}`;
      expect(page.indexOf(masked)).toBeGreaterThan(0);
      expect(page.indexOf(masked)).toBeLessThan(page.indexOf(key.display));
      expect(page.slice(page.indexOf(masked))).toContain("badge-leak-unknown");
      for (const s of [secret, nobodys]) expect(page).not.toContain(s);

      expect((await reporter.b.get("/admin/leaks")).status).toBe(404);
      expect((await reporter.b.post("/admin/leaks/floor", { floor: "notify" })).status).toBe(404);
    });

    it("renders hostile text as text in every leak view", () => {
      const session = { email: HOSTILE, csrfToken: "t", isOperator: true };
      const views = [
        String(LeakedFacts({ k: { leakedAt: "2026-01-01T00:00:00.000Z", leakedUrl: HOSTILE } })),
        String(ReportLeakForm({ state: { url: HOSTILE, errors: [{ field: "key", message: HOSTILE }, { field: "url", message: HOSTILE }] }, csrf: "t" })),
        String(LeakPolicySection({ policy: "notify", floor: "revoke", effective: "revoke", csrf: "t", errors: [{ field: "policy", message: HOSTILE }] })),
        String(
          AdminLeaksPage({
            session,
            limit: 10,
            floor: "notify",
            floorErrors: [{ field: "floor", message: HOSTILE }],
            reports: [{ id: "leak_1", createdAt: "2026-01-01T00:00:00.000Z", source: "github", display: HOSTILE, url: HOSTILE, reporter: `account:${HOSTILE}`, accountId: HOSTILE, outcome: "acted", action: HOSTILE }],
          }),
        ),
      ];
      for (const html of views) {
        // Markup inside a quoted attribute is inert; breaking out of one needs a bare quote.
        expect(html).not.toContain('"><img');
        const outsideAttributes = html.replace(/="[^"]*"/g, '=""');
        expect(outsideAttributes).not.toContain("<img src=x");
        expect(outsideAttributes).not.toContain("<script>alert");
      }
      // Ids in links are encoded, never raw.
      expect(views[3]).toContain(`href="/admin/accounts/${encodeURIComponent(HOSTILE)}"`);
    });
  });
}
