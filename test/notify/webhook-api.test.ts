import { afterAll, afterEach, beforeAll, describe, expect, it } from "bun:test";
import { createHmac, randomBytes } from "node:crypto";
import { createAccount, type Account } from "../../src/accounts/service.ts";
import { cliActor } from "../../src/audit/service.ts";
import { revokeKey } from "../../src/keys/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { NOTIFICATION_EVENTS } from "../../src/notify/notify.sql.ts";
import { deliverDue, listDeliveries, SECRET_OVERLAP_MS } from "../../src/notify/webhooks.ts";
import { backends } from "../support/backends.ts";
import { bearer, newAccount, newKey, problem } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { webhookReceiver } from "../support/receiver.ts";

/** What a receiver does (Stripe's scheme): accept when any `v1` of the header is the HMAC with the secret it holds. */
function verify(secret: string, header: string, body: string): boolean {
  const parts = header.split(",");
  const t = /^t=(\d+)$/.exec(parts[0] ?? "")?.[1];
  if (!t) return false;
  const mac = createHmac("sha256", secret).update(`${t}.${body}`).digest("hex");
  return parts.slice(1).some((p) => p === `v1=${mac}`);
}

const v1Count = (header: string) => header.split(",").filter((p) => p.startsWith("v1=")).length;

for (const backend of backends) {
  describe(`webhook API [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    let operator: Account;
    const stops: (() => void)[] = [];
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
      // The first account of a database is the operator's.
      operator = await createAccount(h.deps, { email: `op-${randomBytes(3).toString("hex")}@example.com`, password: "operator passphrase 1" }, cliActor);
    });
    afterEach(() => {
      for (const stop of stops.splice(0)) stop();
    });
    afterAll(() => h.close());

    /** An account's management key (a fresh non-operator account unless one is given). */
    async function manager(account?: Account) {
      const a = account ?? (await newAccount(h));
      const { secret } = await newKey(h, a.id, { scopes: ["keys:manage"], rateLimit: 10_000 });
      return { account: a, headers: bearer(secret) };
    }
    function listen() {
      const r = webhookReceiver();
      stops.push(r.stop);
      return r;
    }

    it("lets an operator's account set a loopback receiver, and sends it a test event it can verify", async () => {
      const r = listen();
      const { account, headers } = await manager(operator);
      const put = await h.req("/api/webhook", { method: "PUT", headers, json: { url: r.url, allowPrivate: true } });
      expect(put.status).toBe(200);
      expect(put.headers.get("cache-control")).toBe("no-store");
      const set = (await put.json()) as { allowPrivate: boolean; events: string[]; secret: string };
      expect(set).toMatchObject({ allowPrivate: true, events: [...NOTIFICATION_EVENTS] });
      const sent = await h.req("/api/webhook/test", { method: "POST", headers });
      expect(sent.status).toBe(202);
      const { id } = (await sent.json()) as { id: string };
      expect(await deliverDue(h.deps)).toMatchObject({ attempted: 1, delivered: 1 });
      const [one] = r.got;
      expect(JSON.parse(one!.body)).toMatchObject({ id, type: "webhook.test", data: {} });
      expect(one!.headers.get("keyport-event")).toBe("webhook.test");
      expect(one!.headers.get("keyport-delivery")).toBe(id);
      expect(verify(set.secret, one!.headers.get("keyport-signature")!, one!.body)).toBe(true);
      expect(verify("whsec_wrong", one!.headers.get("keyport-signature")!, one!.body)).toBe(false);
      expect((await listDeliveries(h.deps, account.id))[0]).toMatchObject({ id, event: "webhook.test", state: "delivered", lastStatus: 200 });
    });

    it("refuses a loopback or private target to any other account, even with allowPrivate: true (400 webhook_target_refused)", async () => {
      const r = listen();
      const { headers } = await manager();
      for (const url of [r.url, `http://localhost:${r.port}/hooks`, "https://10.0.0.8/x"]) {
        const res = await h.req("/api/webhook", { method: "PUT", headers, json: { url, allowPrivate: true } });
        const body = await problem(res);
        expect({ url, status: res.status, code: body.code }).toEqual({ url, status: 400, code: "webhook_target_refused" });
      }
      expect(((await (await h.req("/api/webhook", { headers })).json()) as { endpoint: unknown }).endpoint).toBeNull();
      expect(r.got.length).toBe(0);
    });

    it("removes the endpoint: GET shows none, pending deliveries are given up and a test event is 409 no_webhook", async () => {
      const { account, headers } = await manager();
      expect((await h.req("/api/webhook", { method: "PUT", headers, json: { url: "https://93.184.216.34/hook" } })).status).toBe(200);
      expect((await h.req("/api/webhook/test", { method: "POST", headers })).status).toBe(202);
      const del = await h.req("/api/webhook", { method: "DELETE", headers });
      expect(await del.json()).toEqual({ endpoint: null });
      const state = (await (await h.req("/api/webhook", { headers })).json()) as { endpoint: unknown; deliveries: { state: string; lastError: string }[] };
      expect(state.endpoint).toBeNull();
      expect(state.deliveries.map((d) => [d.state, d.lastError])).toEqual([["gave_up", "the endpoint was removed"]]);
      const test = await h.req("/api/webhook/test", { method: "POST", headers });
      expect(test.status).toBe(409);
      expect((await problem(test)).code).toBe("no_webhook");
      expect((await h.req("/api/webhook", { method: "DELETE", headers })).status).toBe(200);
      expect((await listDeliveries(h.deps, account.id)).length).toBe(1);
    });

    it("delivers only the chosen events, shows them, and keeps the signing secret when they change", async () => {
      const r = listen();
      const { account, headers } = await manager(operator);
      await h.req("/api/webhook", { method: "DELETE", headers });
      const first = (await (await h.req("/api/webhook", { method: "PUT", headers, json: { url: r.url, allowPrivate: true, events: ["key.revoked"] } })).json()) as { secret: string; events: string[] };
      expect(first.events).toEqual(["key.revoked"]);
      const before = (await listDeliveries(h.deps, account.id)).length;
      const { key } = await newKey(h, account.id, { name: "filtered" });
      expect((await listDeliveries(h.deps, account.id)).length).toBe(before);
      await revokeKey(h.deps, account.id, key.id, cliActor);
      expect(await deliverDue(h.deps)).toMatchObject({ attempted: 1, delivered: 1 });
      expect(JSON.parse(r.got[0]!.body)).toMatchObject({ type: "key.revoked", data: { keyId: key.id } });

      const changed = await h.req("/api/webhook", { method: "PUT", headers, json: { url: r.url, allowPrivate: true, events: ["key.leaked", "key.created", "key.created"] } });
      const body = (await changed.json()) as Record<string, unknown>;
      expect(body).toEqual({ url: r.url, allowPrivate: true, events: ["key.created", "key.leaked"] });
      const shown = (await (await h.req("/api/webhook", { headers })).json()) as { endpoint: { events: string[] } };
      expect(shown.endpoint.events).toEqual(["key.created", "key.leaked"]);
      await newKey(h, account.id, { name: "sent" });
      await deliverDue(h.deps);
      expect(JSON.parse(r.got[1]!.body)).toMatchObject({ type: "key.created", data: { name: "sent" } });
      expect(verify(first.secret, r.got[1]!.headers.get("keyport-signature")!, r.got[1]!.body)).toBe(true);

      const wrong = await h.req("/api/webhook", { method: "PUT", headers, json: { url: r.url, events: ["key.deleted"] } });
      expect(wrong.status).toBe(400);
      expect((await problem(wrong)).errors?.[0]?.field).toBe("events.0");
      const none = await h.req("/api/webhook", { method: "PUT", headers, json: { url: r.url, events: [] } });
      expect((await problem(none)).errors).toEqual([{ field: "events", message: "choose at least one event" }]);
    });

    it("signs with both secrets for 24 h after a rotation, so either verifies, then with the new one only", async () => {
      const r = listen();
      const { headers } = await manager(operator);
      await h.req("/api/webhook", { method: "DELETE", headers });
      const { secret: old } = (await (await h.req("/api/webhook", { method: "PUT", headers, json: { url: r.url, allowPrivate: true } })).json()) as { secret: string };
      const rotated = await h.req("/api/webhook/rotate-secret", { method: "POST", headers });
      expect(rotated.status).toBe(200);
      expect(rotated.headers.get("cache-control")).toBe("no-store");
      const { secret: fresh, previousSecretExpiresAt } = (await rotated.json()) as { secret: string; previousSecretExpiresAt: string };
      expect(fresh).toMatch(/^whsec_[0-9A-Za-z]{32}$/);
      expect(fresh).not.toBe(old);
      expect(previousSecretExpiresAt).toBe(new Date(clock.now() + SECRET_OVERLAP_MS).toISOString());
      const during = await (await h.req("/api/webhook", { headers })).text();
      expect(JSON.parse(during).endpoint.previousSecretExpiresAt).toBe(previousSecretExpiresAt);
      expect(during).not.toContain(old);
      expect(during).not.toContain(fresh);

      await h.req("/api/webhook/test", { method: "POST", headers });
      clock.advance(SECRET_OVERLAP_MS - 60_000);
      await h.req("/api/webhook/test", { method: "POST", headers });
      await deliverDue(h.deps);
      expect(r.got.length).toBe(2);
      for (const d of r.got) {
        const sig = d.headers.get("keyport-signature")!;
        expect(sig).toMatch(/^t=\d+,v1=[0-9a-f]{64},v1=[0-9a-f]{64}$/);
        expect([verify(fresh, sig, d.body), verify(old, sig, d.body)]).toEqual([true, true]);
        // The new secret's signature comes first.
        expect(sig.split(",")[1]).toBe(`v1=${createHmac("sha256", fresh).update(`${sig.slice(2, sig.indexOf(","))}.${d.body}`).digest("hex")}`);
      }

      clock.advance(60_000);
      const after = (await (await h.req("/api/webhook", { headers })).json()) as { endpoint: { previousSecretExpiresAt: string | null } };
      expect(after.endpoint.previousSecretExpiresAt).toBeNull();
      await h.req("/api/webhook/test", { method: "POST", headers });
      await deliverDue(h.deps);
      const last = r.got[2]!;
      const sig = last.headers.get("keyport-signature")!;
      expect(v1Count(sig)).toBe(1);
      expect([verify(fresh, sig, last.body), verify(old, sig, last.body)]).toEqual([true, false]);
    });

    it("answers 409 no_webhook to a rotation without an endpoint", async () => {
      const { headers } = await manager();
      const res = await h.req("/api/webhook/rotate-secret", { method: "POST", headers });
      expect(res.status).toBe(409);
      expect((await problem(res)).code).toBe("no_webhook");
    });
  });
}
