import { afterAll, afterEach, beforeAll, describe, expect, it } from "bun:test";
import { and, eq } from "drizzle-orm";
import { auditEvents } from "../../src/audit/audit.sql.ts";
import { cliActor } from "../../src/audit/service.ts";
import { accountMail, deliverMail } from "../../src/email/outbox.ts";
import { generateKey } from "../../src/keys/format.ts";
import { getKey, revokeKey } from "../../src/keys/service.ts";
import { leakReports } from "../../src/leaks/leaks.sql.ts";
import { getLeakPolicy, listLeakReports, reportLeaks, setLeakPolicy, setLeakPolicyFloor } from "../../src/leaks/service.ts";
import { notifications } from "../../src/notify/notify.sql.ts";
import { listDeliveries, setWebhook } from "../../src/notify/webhooks.ts";
import { keyRotations } from "../../src/rotation/rotation.sql.ts";
import { listRotations } from "../../src/rotation/service.ts";
import { backends, UNMETERED_PLANS } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { bearer, newAccount, newKey, problem } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { email } from "../support/pages.ts";
import { TestSmtpServer } from "../support/smtp.ts";

const EMAIL = "/v1/email/a@example.com";
const HOUR = 3_600_000;

/** An account that reports leaks through the API, with its keys:manage key. */
async function reporter(h: Harness) {
  const account = await newAccount(h);
  const { key, secret } = await newKey(h, account.id, { name: "reporter", scopes: ["keys:manage"], rateLimit: 10_000 });
  return { account, keyId: key.id, headers: bearer(secret) };
}

/** POST /api/leaks as `by`: the answer's status and body. */
async function reportByApi(h: Harness, by: { headers: Record<string, string> }, key: string, url?: string | null) {
  const res = await h.req("/api/leaks", { method: "POST", headers: by.headers, json: url === undefined ? { key } : { key, url } });
  return { status: res.status, body: (await res.json()) as unknown };
}

/** An account with the given leak policy and one live key (warm in the gateway's cache: it answered once). */
async function owner(h: Harness, policy?: "notify" | "rotate" | "revoke", keyInput: Parameters<typeof newKey>[2] = {}) {
  const account = await newAccount(h);
  if (policy) await setLeakPolicy(h.deps, account.id, policy, cliActor);
  const { key, secret } = await newKey(h, account.id, { name: "leaky", ...keyInput });
  expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
  return { account, key, secret };
}

const reportsOf = (h: Harness, keyHashOrId: { keyId: string }) => h.deps.db.select().from(leakReports).where(eq(leakReports.keyId, keyHashOrId.keyId));
const auditOf = (h: Harness, accountId: string, action: string) =>
  h.deps.db
    .select()
    .from(auditEvents)
    .where(and(eq(auditEvents.accountId, accountId), eq(auditEvents.action, action)));
const notificationsOf = (h: Harness, keyId: string, event: string) =>
  h.deps.db
    .select()
    .from(notifications)
    .where(and(eq(notifications.keyId, keyId), eq(notifications.event, event)));
const keyRow = (h: Harness, id: string) => h.deps.db.query.apiKeys.findFirst({ where: (k, { eq }) => eq(k.id, id) });

for (const backend of backends) {
  describe(`leak response [${backend.name}]`, () => {
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { config: { plansFile: UNMETERED_PLANS } });
    });
    afterAll(() => h?.close());
    // The floor is the instance's: a test that sets it leaves it as it found it.
    afterEach(() => setLeakPolicyFloor(h.deps, "notify", cliActor));

    it("revokes the key under policy revoke: the gateway refuses it on the very next request", async () => {
      const o = await owner(h, "revoke");
      const by = await reporter(h);
      expect(await reportByApi(h, by, o.secret, "https://github.com/acme/app/blob/1a2b3c/.env")).toEqual({ status: 202, body: { reported: true } });
      expect((await problem(await h.req(EMAIL, { headers: bearer(o.secret) }))).code).toBe("key_revoked");
      const row = (await keyRow(h, o.key.id))!;
      expect(row.revokedAt).not.toBeNull();
      expect(row).toMatchObject({ leakedUrl: "https://github.com/acme/app/blob/1a2b3c/.env", leakedBy: `key:${by.keyId}` });
      expect(row.leakedAt).not.toBeNull();
      expect(await reportsOf(h, { keyId: o.key.id })).toMatchObject([{ source: "api", outcome: "acted", action: "revoked", accountId: o.account.id, display: o.key.display }]);
      expect(await listRotations(h.deps, o.account.id, { keyId: o.key.id })).toEqual([]);
    });

    it("starts an emergency rotation under policy rotate, the default: the old key in its grace, the new key revealable once", async () => {
      const o = await owner(h);
      expect((await getLeakPolicy(h.deps, o.account.id)).effective).toBe("rotate");
      const { headers: ownerHeaders } = { headers: bearer((await newKey(h, o.account.id, { name: "ops", scopes: ["keys:manage"], rateLimit: 10_000 })).secret) };
      const before = h.deps.clock.now();
      expect(await reportByApi(h, await reporter(h), o.secret, "https://gist.github.com/someone/abc")).toEqual({ status: 202, body: { reported: true } });

      const [rotation, ...more] = await listRotations(h.deps, o.account.id, { keyId: o.key.id });
      expect(more).toEqual([]);
      expect(rotation).toMatchObject({ keyId: o.key.id, emergency: true, state: "grace_period", gracePeriodHours: 4, secretAvailable: true, revealedAt: null });
      expect(rotation!.reason).toContain("https://gist.github.com/someone/abc");
      const old = await getKey(h.deps, o.account.id, o.key.id);
      expect(old.status).toBe("expiring");
      expect(Date.parse(old.graceEndsAt!)).toBeGreaterThanOrEqual(before + 4 * HOUR);
      expect(old.leakedUrl).toBe("https://gist.github.com/someone/abc");
      // In its grace the old key still answers, so the owner's programs have time to switch.
      expect((await h.req(EMAIL, { headers: bearer(o.secret) })).status).toBe(200);

      const revealed = await h.req(`/api/rotations/${rotation!.id}/reveal`, { method: "POST", headers: ownerHeaders });
      expect(revealed.status).toBe(200);
      const { secret } = (await revealed.json()) as { secret: string };
      expect(secret).not.toBe(o.secret);
      expect((await h.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
      const again = await h.req(`/api/rotations/${rotation!.id}/reveal`, { method: "POST", headers: ownerHeaders });
      expect((await problem(again)).code).toBe("secret_gone");
      expect(await reportsOf(h, { keyId: o.key.id })).toMatchObject([{ outcome: "acted", action: "rotated" }]);
    });

    it("only notifies under policy notify: the key keeps working", async () => {
      const o = await owner(h, "notify");
      await reportByApi(h, await reporter(h), o.secret, "https://pastebin.com/raw/x1");
      expect((await h.req(EMAIL, { headers: bearer(o.secret) })).status).toBe(200);
      const key = await getKey(h.deps, o.account.id, o.key.id);
      expect(key).toMatchObject({ status: "active", leakedUrl: "https://pastebin.com/raw/x1" });
      expect(key.leakedAt).not.toBeNull();
      expect(await listRotations(h.deps, o.account.id, { keyId: o.key.id })).toEqual([]);
      expect(await notificationsOf(h, o.key.id, "key.leaked")).toHaveLength(1);
      expect(await notificationsOf(h, o.key.id, "key.revoked")).toHaveLength(0);
      expect(await reportsOf(h, { keyId: o.key.id })).toMatchObject([{ outcome: "notified", action: "notified" }]);
    });

    it("lets the operators' floor override a weaker account policy, and shows it in the account's policy", async () => {
      const o = await owner(h, "notify");
      await setLeakPolicyFloor(h.deps, "revoke", cliActor);
      expect(await getLeakPolicy(h.deps, o.account.id)).toEqual({ policy: "notify", floor: "revoke", effective: "revoke" });
      await reportByApi(h, await reporter(h), o.secret, "https://example.com/floor");
      expect((await problem(await h.req(EMAIL, { headers: bearer(o.secret) }))).code).toBe("key_revoked");
      expect(await reportsOf(h, { keyId: o.key.id })).toMatchObject([{ outcome: "acted", action: "revoked" }]);
      const [floorEvent] = await auditOf(h, "instance", "leaks.floor_set");
      expect(floorEvent).toBeDefined();
    });

    it("only notifies a test key, whatever the policy and the floor", async () => {
      const o = await owner(h, "revoke", { environment: "test" });
      await setLeakPolicyFloor(h.deps, "revoke", cliActor);
      await reportByApi(h, await reporter(h), o.secret, "https://example.com/test-key");
      expect((await h.req(EMAIL, { headers: bearer(o.secret) })).status).toBe(200);
      expect((await getKey(h.deps, o.account.id, o.key.id)).status).toBe("active");
      expect(await listRotations(h.deps, o.account.id, { keyId: o.key.id })).toEqual([]);
      expect(await notificationsOf(h, o.key.id, "key.leaked")).toHaveLength(1);
      expect(await reportsOf(h, { keyId: o.key.id })).toMatchObject([{ outcome: "notified", action: "notified" }]);
    });

    it("records an unknown key and a revoked key without acting on either", async () => {
      const by = await reporter(h);
      const nobodys = generateKey(h.deps.config.keyPrefix, "live");
      const o = await owner(h, "revoke");
      await revokeKey(h.deps, o.account.id, o.key.id, cliActor);
      const revokedEvents = (await auditOf(h, o.account.id, "key.revoked")).length;
      for (const key of [nobodys, o.secret]) expect(await reportByApi(h, by, key, "https://example.com/old")).toEqual({ status: 202, body: { reported: true } });

      const all = await h.deps.db.select().from(leakReports).where(eq(leakReports.reporter, `key:${by.keyId}`));
      const unknown = all.find((r) => r.keyId === null);
      expect(unknown).toMatchObject({ outcome: "unknown", action: null, accountId: null, display: `kp_live_${nobodys.slice(8, 12)}…${nobodys.slice(-4)}` });
      expect(unknown!.processedAt).not.toBeNull();
      expect(all.find((r) => r.keyId === o.key.id)).toMatchObject({ outcome: "already_revoked", action: null, accountId: o.account.id });
      // Recorded only: the revoked key is not marked, notified or audited as leaked.
      expect((await keyRow(h, o.key.id))!.leakedAt).toBeNull();
      expect(await notificationsOf(h, o.key.id, "key.leaked")).toHaveLength(0);
      expect(await auditOf(h, o.account.id, "key.leaked")).toHaveLength(0);
      expect(await auditOf(h, o.account.id, "key.revoked")).toHaveLength(revokedEvents);
      // Nothing in any stored report is the secret.
      for (const r of all) expect(JSON.stringify(r)).not.toContain(nobodys);
    });

    it("acts once on the same report twice, and once per key across reports of it from other places", async () => {
      const o = await owner(h);
      const by = await reporter(h);
      const url = "https://github.com/acme/app/commit/9f8e7d";
      expect(await reportByApi(h, by, o.secret, url)).toEqual({ status: 202, body: { reported: true } });
      expect(await reportByApi(h, by, o.secret, url)).toEqual({ status: 202, body: { reported: true } });
      const repeated = await reportLeaks(h.deps, [{ token: o.secret, url, source: "api" }], { actor: `key:${by.keyId}` });
      expect(repeated).toMatchObject([{ repeated: true, known: true, outcome: "acted", action: "rotated" }]);
      const elsewhere = await reportLeaks(h.deps, [{ token: o.secret, url: "https://example.com/mirror", source: "portal" }], cliActor);
      expect(elsewhere).toMatchObject([{ repeated: false, known: true, outcome: "duplicate", action: null }]);

      const rows = await reportsOf(h, { keyId: o.key.id });
      expect(rows.map((r) => `${r.url} ${r.outcome}`).sort()).toEqual(["https://example.com/mirror duplicate", `${url} acted`]);
      expect(await listRotations(h.deps, o.account.id, { keyId: o.key.id })).toHaveLength(1);
      expect(await notificationsOf(h, o.key.id, "key.leaked")).toHaveLength(1);
      expect(await auditOf(h, o.account.id, "key.leaked")).toHaveLength(1);
      // The first report is where the key is marked leaked.
      expect((await keyRow(h, o.key.id))!.leakedUrl).toBe(url);
    });

    it("answers POST /api/leaks alike for the caller's key, another account's, an unknown and a revoked one, by key and by session", async () => {
      const by = await reporter(h);
      const theirs = await owner(h, "notify");
      const mine = await newKey(h, by.account.id, { name: "mine" });
      await setLeakPolicy(h.deps, by.account.id, "notify", cliActor);
      const gone = await owner(h, "notify");
      await revokeKey(h.deps, gone.account.id, gone.key.id, cliActor);
      const answers = [];
      for (const key of [mine.secret, theirs.secret, generateKey("kp", "live"), gone.secret]) answers.push(await reportByApi(h, by, key, "https://example.com/same"));
      expect(answers).toEqual(Array(4).fill({ status: 202, body: { reported: true } }));

      const b = new Browser(h);
      await b.signUp(email());
      const res = await h.req("/api/leaks", { method: "POST", headers: { cookie: b.cookie!, "x-csrf-token": b.csrf!, "sec-fetch-site": "same-origin" }, json: { key: theirs.secret } });
      expect(res.status).toBe(202);
      expect(await res.json()).toEqual({ reported: true });
      const bySession = (await reportsOf(h, { keyId: theirs.key.id })).find((r) => r.url === null);
      expect(bySession).toMatchObject({ source: "api", outcome: "duplicate" });
      expect(bySession!.reporter).toMatch(/^account:acct_/);
    });

    it("refuses a report that is not a key of this server or whose URL is not http(s), naming the field", async () => {
      const by = await reporter(h);
      const good = generateKey("kp", "live");
      const corrupted = good.slice(0, -1) + (good.endsWith("A") ? "B" : "A");
      const cases: [unknown, string][] = [
        [{ key: corrupted }, "key"],
        [{ key: "sk_live_" + good.slice(8) }, "key"],
        [{ key: "" }, "key"],
        [{}, "key"],
        [{ key: good, url: "javascript:alert(1)" }, "url"],
        [{ key: good, url: "https://example.com/\u0000" }, "url"],
        [{ key: good, extra: 1 }, "body"],
      ];
      for (const [json, field] of cases) {
        const res = await h.req("/api/leaks", { method: "POST", headers: by.headers, json });
        const p = await problem(res);
        expect(`${JSON.stringify(json)} → ${p.status} ${p.code} ${p.errors?.map((e) => e.field).join(",")}`).toBe(`${JSON.stringify(json)} → 400 invalid_request ${field}`);
      }
      expect(await h.deps.db.select().from(leakReports).where(eq(leakReports.reporter, `key:${by.keyId}`))).toEqual([]);
    });

    it("writes key.leaked to the owner's audit log: who reported it, where, from which source, by which policy", async () => {
      const o = await owner(h, "revoke");
      const by = await reporter(h);
      await reportByApi(h, by, o.secret, "https://example.com/audit");
      const [event, ...more] = await auditOf(h, o.account.id, "key.leaked");
      expect(more).toEqual([]);
      expect(event).toMatchObject({ keyId: o.key.id, actor: `key:${by.keyId}`, changes: { url: "https://example.com/audit", source: "api", policy: "revoke" } });
      expect(await auditOf(h, o.account.id, "key.revoked")).toHaveLength(1);
      expect(JSON.stringify(event)).not.toContain(o.secret);
    });

    it("lists the account's own keys' reports on GET /api/leaks, newest first, and none of another account's", async () => {
      const o = await owner(h, "notify");
      const other = await owner(h, "notify");
      const by = await reporter(h);
      await reportByApi(h, by, o.secret, "https://example.com/first");
      await reportByApi(h, by, other.secret, "https://example.com/other");
      const mine = { headers: bearer((await newKey(h, o.account.id, { scopes: ["keys:manage"] })).secret) };
      const res = await h.req("/api/leaks", { headers: mine.headers });
      expect(res.status).toBe(200);
      const { data } = (await res.json()) as { data: Record<string, unknown>[] };
      expect(data).toMatchObject([{ keyId: o.key.id, display: o.key.display, source: "api", url: "https://example.com/first", outcome: "notified", action: "notified" }]);
      // Who reported it stays with the operators.
      expect(data[0]).not.toHaveProperty("reporter");
      expect((await listLeakReports(h.deps, { accountId: other.account.id })).map((r) => r.url)).toEqual(["https://example.com/other"]);
      // The reporter's own account has no report of its keys.
      expect(((await (await h.req("/api/leaks", { headers: by.headers })).json()) as { data: unknown[] }).data).toEqual([]);
    });

    it("reads and sets the leak policy on /api/leak-policy, the floor shown beside it", async () => {
      const by = await reporter(h);
      expect(await (await h.req("/api/leak-policy", { headers: by.headers })).json()).toEqual({ policy: "rotate", floor: "notify", effective: "rotate" });
      const set = await h.req("/api/leak-policy", { method: "PUT", headers: by.headers, json: { policy: "notify" } });
      expect(await set.json()).toEqual({ policy: "notify", floor: "notify", effective: "notify" });
      await setLeakPolicyFloor(h.deps, "rotate", cliActor);
      expect(await (await h.req("/api/leak-policy", { headers: by.headers })).json()).toEqual({ policy: "notify", floor: "rotate", effective: "rotate" });
      const bad = await problem(await h.req("/api/leak-policy", { method: "PUT", headers: by.headers, json: { policy: "ignore" } }));
      expect(bad).toMatchObject({ status: 400, code: "invalid_request", errors: [{ field: "policy" }] });
      const [event] = await auditOf(h, by.account.id, "leaks.policy_set");
      expect(event).toMatchObject({ actor: `key:${by.keyId}`, changes: { policy: "notify" } });
    });

    it("revokes instead when the emergency rotation is refused, so a leaked live key never stays live unattended", async () => {
      const o = await owner(h, "rotate");
      // A rotation of the key already in flight past the point of cancelling (the sweep's,
      // say): the emergency rotation is refused with rotation_in_progress.
      const now = new Date(h.deps.clock.now());
      await h.deps.db.insert(keyRotations).values({ id: "rot_inflight0000001", accountId: o.account.id, oldKeyId: o.key.id, state: "grace_period", reason: "sweep", actor: "system", gracePeriodHours: 72, scheduledAt: now, startedAt: now, createdAt: now });
      await reportLeaks(h.deps, [{ token: o.secret, url: "https://example.com/refused", source: "api" }], cliActor);
      expect((await problem(await h.req(EMAIL, { headers: bearer(o.secret) }))).code).toBe("key_revoked");
      expect(await reportsOf(h, { keyId: o.key.id })).toMatchObject([{ outcome: "acted", action: "revoked" }]);
      expect(h.logs.some((l) => l.includes("the emergency rotation was refused"))).toBe(true);
    });
  });

  // Its own harness mails through SMTP, so its run sends this test's mail only (each message
  // over TLS costs a tenth of a second or more).
  describe(`leak notice by mail [${backend.name}]`, () => {
    const smtp = new TestSmtpServer();
    let h: Harness;
    beforeAll(async () => {
      await smtp.start();
      h = await startHarness(backend, { config: { plansFile: UNMETERED_PLANS }, mailTransport: smtp.transport() });
      // The first message over a transport pays for its TLS set-up: the set-up pays it, not a test.
      await h.deps.mailer.transport.send(h.deps.config.mailFrom, { to: "warm-up@example.com", subject: "warm-up", text: "warm-up", html: "<p>warm-up</p>", headers: {} }, "mail_warmup");
    });
    afterAll(async () => {
      await h?.close();
      await smtp.stop();
    });

    it("sends key.leaked in-app, to the webhook and by mail, with the masked key and the URL and never the secret", async () => {
      const o = await owner(h, "notify");
      await setWebhook(h.deps, o.account.id, { url: "http://127.0.0.1:9/hook", allowPrivate: true }, cliActor, true);
      const url = "https://github.com/acme/app/blob/main/src/config.ts#L12";
      await reportByApi(h, await reporter(h), o.secret, url);

      const [n] = await notificationsOf(h, o.key.id, "key.leaked");
      expect(n!.data).toMatchObject({ url, location: url, display: o.key.display, source: "api", policy: "notify" });
      expect(JSON.stringify(n!.data)).not.toContain(o.secret);
      expect((await listDeliveries(h.deps, o.account.id)).map((d) => d.event)).toContain("key.leaked");
      const [queued] = (await accountMail(h.deps.db, o.account.id)).filter((m) => m.kind === "notice:key.leaked");
      expect(queued!.to).toBe(o.account.email);

      for (let i = 0; i < 20 && (await deliverMail(h.deps)).attempted > 0; i++);
      const mail = smtp.to(o.account.email).find((m) => m.parsed.subject === "One of your keys was found in public");
      expect(mail).toBeDefined();
      const text = mail!.parsed.text ?? "";
      expect(text).toContain(o.key.display);
      expect(text).toContain(url);
      const raw = mail!.raw.replace(/=\r?\n/g, "");
      for (const part of [raw, text, String(mail!.parsed.html)]) {
        expect(part).not.toContain(o.secret);
        expect(part).not.toContain(o.secret.slice(12, 40));
      }
    });

  });
}

const service = backends.find((b) => b.name === "service");

describe.skipIf(!service)("a leak across two instances [service]", () => {
  let a: Harness;
  let b: Harness;
  beforeAll(async () => {
    a = await startHarness(service!, { config: { plansFile: UNMETERED_PLANS } });
    b = await startHarness(service!, { share: a, config: { plansFile: UNMETERED_PLANS } });
  });
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it("refuses on instance B's next request a key reported on instance A under policy revoke", async () => {
    const account = await newAccount(a);
    await setLeakPolicy(a.deps, account.id, "revoke", cliActor);
    const { secret } = await newKey(a, account.id);
    // B has the key in its cache: only the revocation's broadcast can turn it away.
    expect((await b.req(EMAIL, { headers: bearer(secret) })).status).toBe(200);
    let evictions = 0;
    const evicted = new Promise<void>((resolve) => {
      void b.deps.state.subscribe("keys:evict", () => {
        if (++evictions === 1) resolve();
      });
    });
    const by = await reporter(a);
    expect(await reportByApi(a, by, secret, "https://github.com/acme/app/blob/1/.env")).toEqual({ status: 202, body: { reported: true } });
    await evicted;
    expect((await problem(await b.req(EMAIL, { headers: bearer(secret) }))).code).toBe("key_revoked");
  });
});
