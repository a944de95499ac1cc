import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { eq } from "drizzle-orm";
import { cliActor } from "../../src/audit/service.ts";
import { sessions, webhookDeliveries } from "../../src/db/schema.ts";
import { DomainError } from "../../src/errors.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import * as webhooks from "../../src/notify/webhooks.ts";
import { deliverDue, listDeliveries, sendTestEvent, setWebhook } from "../../src/notify/webhooks.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { email } from "../support/pages.ts";
import { bearer, newAccount, newKey, problem } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

/** A public address (example.com's, long-lived); never connected to: the fetch below is recorded. */
const PUBLIC = "93.184.216.34";

/**
 * A resolver answering `answers` in turn (the last one again after that), counting its
 * lookups: what DNS rebinding looks like from here, a name that answers differently each time.
 */
function rebinding(...answers: (string[] | Error)[]) {
  const asked: string[] = [];
  const resolve = async (host: string): Promise<string[]> => {
    asked.push(host);
    const answer = answers[Math.min(asked.length - 1, answers.length - 1)]!;
    if (answer instanceof Error) throw answer;
    return answer;
  };
  return { resolve, asked };
}

/** A fetch that records what it was asked to connect to and answers `status`; no network. */
function recordingFetch(answer: (url: string) => Response | Error = () => new Response(null, { status: 204 })) {
  const calls: { url: string; headers: Headers; tls: { serverName?: string } | undefined }[] = [];
  const fetch = (async (input: string | URL | Request, init?: RequestInit & { tls?: { serverName?: string } }) => {
    const url = String(input instanceof Request ? input.url : input);
    calls.push({ url, headers: new Headers(init?.headers), tls: init?.tls });
    const a = answer(url);
    if (a instanceof Error) throw a;
    return a;
  }) as typeof globalThis.fetch;
  return { fetch, calls };
}

/** Issue 21 #8: the webhook's SSRF guard holds for the connection itself, tells no DNS secrets, and its manual sends are throttled. */
for (const backend of backends) {
  describe(`webhook hardening [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    it("refuses a host resolving to a private address saying only that it is not a public address", async () => {
      const a = await newAccount(h);
      const { resolve } = rebinding(["10.20.30.40"]);
      const err = await setWebhook(h.deps, a.id, { url: "https://intranet.example.com/hook" }, cliActor, false, resolve).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DomainError);
      const e = err as DomainError;
      expect(e.code).toBe("webhook_target_refused");
      expect(e.errors).toEqual([{ field: "url", message: "is not a public address" }]);
      expect(JSON.stringify({ detail: e.detail, errors: e.errors })).not.toContain("10.20.30.40");
      // The API's answer for a literal address says no more.
      const { secret } = await newKey(h, a.id, { scopes: ["keys:manage"] });
      const res = await h.req("/api/webhook", { method: "PUT", headers: bearer(secret), json: { url: "https://192.168.7.7/hook" } });
      const body = await problem(res);
      expect(body.code).toBe("webhook_target_refused");
      expect(JSON.stringify(body)).not.toContain("192.168.7.7");
      expect(JSON.stringify(body)).toContain("not a public address");
    });

    it("connects to the address it checked, with the original Host and TLS server name, when the name answers differently on the second lookup", async () => {
      const a = await newAccount(h);
      await setWebhook(h.deps, a.id, { url: "https://hooks.example.com/keyport?v=1" }, cliActor, false, rebinding([PUBLIC]).resolve);
      await sendTestEvent(h.deps, a.id);
      const dns = rebinding([PUBLIC], ["127.0.0.1"]);
      const sent = recordingFetch();
      expect(await deliverDue(h.deps, { fetch: sent.fetch, resolve: dns.resolve })).toMatchObject({ attempted: 1, delivered: 1 });
      expect(dns.asked).toEqual(["hooks.example.com"]);
      expect(sent.calls.length).toBe(1);
      const [call] = sent.calls;
      expect(call!.url).toBe(`https://${PUBLIC}/keyport?v=1`);
      expect(call!.headers.get("host")).toBe("hooks.example.com");
      expect(call!.tls?.serverName).toBe("hooks.example.com");
    });

    it("refuses a delivery whose name now resolves to a private address, without connecting or naming it", async () => {
      const a = await newAccount(h);
      await setWebhook(h.deps, a.id, { url: "https://hooks.example.com/keyport" }, cliActor, false, rebinding([PUBLIC]).resolve);
      await sendTestEvent(h.deps, a.id);
      const sent = recordingFetch();
      expect(await deliverDue(h.deps, { fetch: sent.fetch, resolve: rebinding([PUBLIC, "169.254.169.254"]).resolve })).toMatchObject({ attempted: 1, failed: 1 });
      expect(sent.calls).toEqual([]);
      const [d] = await listDeliveries(h.deps, a.id);
      expect(d!.lastError).toContain("not a public address");
      expect(d!.lastError).not.toContain("169.254");
    });

    it("tries the next checked address when one refuses the connection, and no other", async () => {
      const a = await newAccount(h);
      await setWebhook(h.deps, a.id, { url: "https://hooks.example.com/keyport" }, cliActor, false, rebinding([PUBLIC]).resolve);
      await sendTestEvent(h.deps, a.id);
      const refused = Object.assign(new TypeError("Unable to connect"), { code: "ECONNREFUSED" });
      const sent = recordingFetch((url) => (url.includes("2606:2800:220:1") ? refused : new Response(null, { status: 500 })));
      const dns = rebinding(["2606:2800:220:1:248:1893:25c8:1946", PUBLIC]);
      expect(await deliverDue(h.deps, { fetch: sent.fetch, resolve: dns.resolve })).toMatchObject({ attempted: 1, failed: 1 });
      // A 500 is the receiver's answer, not a failed connection: no third try.
      expect(sent.calls.map((c) => c.url)).toEqual(["https://[2606:2800:220:1:248:1893:25c8:1946]/keyport", `https://${PUBLIC}/keyport`]);
      expect(dns.asked.length).toBe(1);
    });

    it("delivers for real to the pinned loopback address of an operator's endpoint, with its Host header", async () => {
      const got: { host: string | null; body: string }[] = [];
      const server = Bun.serve({
        port: 0,
        hostname: "127.0.0.1",
        async fetch(req) {
          got.push({ host: req.headers.get("host"), body: await req.text() });
          return new Response("ok");
        },
      });
      try {
        const a = await newAccount(h);
        await setWebhook(h.deps, a.id, { url: `http://localhost:${server.port}/hook`, allowPrivate: true }, cliActor, true);
        await sendTestEvent(h.deps, a.id);
        // A second lookup would fail the delivery.
        const dns = rebinding(["127.0.0.1"], new Error("rebound"));
        expect(await deliverDue(h.deps, { resolve: dns.resolve })).toMatchObject({ attempted: 1, delivered: 1 });
        expect(dns.asked).toEqual(["localhost"]);
        expect(got.length).toBe(1);
        expect(got[0]!.host).toBe(`localhost:${server.port}`);
        expect(JSON.parse(got[0]!.body)).toMatchObject({ type: "webhook.test" });
      } finally {
        server.stop(true);
      }
    });

    it("throttles test events and resends together per account: 429 too_many_attempts with Retry-After past the limit", async () => {
      const limit = webhooks.WEBHOOK_SENDS_PER_HOUR;
      expect(limit).toBeGreaterThan(0);
      const a = await newAccount(h);
      await setWebhook(h.deps, a.id, { url: "http://127.0.0.1:9/hook", allowPrivate: true }, cliActor, true);
      const { secret } = await newKey(h, a.id, { scopes: ["keys:manage"] });
      let first = "";
      for (let i = 0; i < limit; i++) {
        const res = await h.req("/api/webhook/test", { method: "POST", headers: bearer(secret) });
        expect(res.status).toBe(202);
        first ||= ((await res.json()) as { id: string }).id;
      }
      const refused = await h.req("/api/webhook/test", { method: "POST", headers: bearer(secret) });
      expect((await problem(refused)).code).toBe("too_many_attempts");
      expect(refused.status).toBe(429);
      expect(Number(refused.headers.get("retry-after"))).toBeGreaterThan(0);
      const resend = await h.req(`/api/webhook/deliveries/${first}/resend`, { method: "POST", headers: bearer(secret) });
      expect(resend.status).toBe(429);
      const queued = await h.deps.db.select({ event: webhookDeliveries.event }).from(webhookDeliveries).where(eq(webhookDeliveries.accountId, a.id));
      expect(queued.filter((d) => d.event === "webhook.test").length).toBe(limit);

      // Another account has its own budget; this one's comes back with time.
      const b = await newAccount(h);
      await setWebhook(h.deps, b.id, { url: "http://127.0.0.1:9/hook", allowPrivate: true }, cliActor, true);
      expect(typeof (await sendTestEvent(h.deps, b.id))).toBe("string");
      clock.advance(3_600_000);
      expect((await h.req(`/api/webhook/deliveries/${first}/resend`, { method: "POST", headers: bearer(secret) })).status).toBe(202);
    });

    it("answers the portal's test and resend buttons past the limit with a 429 page", async () => {
      const b = new Browser(h);
      await b.signUp(email());
      const sessionId = b.cookie!.slice(b.cookie!.indexOf("=") + 1).split(".")[0]!;
      const [s] = await h.deps.db.select({ accountId: sessions.accountId }).from(sessions).where(eq(sessions.id, sessionId));
      await setWebhook(h.deps, s!.accountId, { url: "https://hooks.example.com/keyport" }, cliActor, false, rebinding([PUBLIC]).resolve);
      const ids: string[] = [];
      for (let i = 0; i < webhooks.WEBHOOK_SENDS_PER_HOUR; i++) ids.push(await sendTestEvent(h.deps, s!.accountId));
      await b.page("/portal/settings");
      const test = await b.post("/portal/settings/webhook/test", {});
      expect(test.status).toBe(429);
      expect(await test.text()).toContain("Too many");
      const resend = await b.post(`/portal/settings/webhook/deliveries/${ids[0]}/resend`, {});
      expect(resend.status).toBe(429);
    });
  });
}
