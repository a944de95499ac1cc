import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { createHmac } from "node:crypto";
import { eq } from "drizzle-orm";
import { cliActor } from "../../src/audit/service.ts";
import { webhookDeliveries } from "../../src/db/schema.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { DomainError } from "../../src/errors.ts";
import { deliverDue, listDeliveries, resendDelivery, setWebhook, signPayload } from "../../src/notify/webhooks.ts";
import { backends } from "../support/backends.ts";
import { newAccount, newKey, rejection } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";
import { webhookReceiver } from "../support/receiver.ts";

function verify(secret: string, header: string, body: string): boolean {
  const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header);
  if (!m) return false;
  return createHmac("sha256", secret).update(`${m[1]}.${body}`).digest("hex") === m[2];
}

for (const backend of backends) {
  describe(`webhooks [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    it("delivers a signed JSON event the receiver can verify", async () => {
      const r = webhookReceiver([]);
      try {
        const a = await newAccount(h);
        const secret = (await setWebhook(h.deps, a.id, { url: r.url, allowPrivate: true }, cliActor, true)).secret!;
        expect(secret).toMatch(/^whsec_/);
        const { key } = await newKey(h, a.id, { name: "hooked" });
        const run = await deliverDue(h.deps);
        expect(run).toMatchObject({ attempted: 1, delivered: 1 });
        const [one] = r.got;
        const body = JSON.parse(one!.body);
        expect(body).toMatchObject({ type: "key.created", data: { keyId: key.id, name: "hooked" } });
        expect(verify(secret, one!.headers.get("keyport-signature")!, one!.body)).toBe(true);
        expect(verify("whsec_wrong", one!.headers.get("keyport-signature")!, one!.body)).toBe(false);
        expect(one!.body).not.toContain("kp_live_");
        expect((await listDeliveries(h.deps, a.id))[0]).toMatchObject({ state: "delivered", attempts: 1, lastStatus: 200 });
      } finally {
        r.stop();
      }
    });

    it("retries after a 500 with backoff and delivers on the next attempt", async () => {
      const r = webhookReceiver([500]);
      try {
        const a = await newAccount(h);
        await setWebhook(h.deps, a.id, { url: r.url, allowPrivate: true }, cliActor, true);
        await newKey(h, a.id);
        expect(await deliverDue(h.deps)).toMatchObject({ attempted: 1, failed: 1 });
        const [pending] = await listDeliveries(h.deps, a.id);
        expect(pending).toMatchObject({ state: "pending", attempts: 1, lastStatus: 500 });
        expect(await deliverDue(h.deps)).toMatchObject({ attempted: 0 });
        clock.advance(30_000);
        expect(await deliverDue(h.deps)).toMatchObject({ attempted: 1, delivered: 1 });
        expect(r.got.length).toBe(2);
      } finally {
        r.stop();
      }
    });

    it("gives up after the 24-hour window, and a resend tries again", async () => {
      const r = webhookReceiver(Array.from({ length: 100 }, () => 503));
      try {
        const a = await newAccount(h);
        await setWebhook(h.deps, a.id, { url: r.url, allowPrivate: true }, cliActor, true);
        await newKey(h, a.id);
        const start = clock.now();
        let state = "pending";
        for (let i = 0; i < 40 && state === "pending"; i++) {
          await deliverDue(h.deps);
          const [d] = await listDeliveries(h.deps, a.id);
          state = d!.state;
          clock.set(new Date(d!.nextAttemptAt).getTime());
        }
        const [d] = await listDeliveries(h.deps, a.id);
        expect(d!.state).toBe("gave_up");
        expect(d!.attempts).toBeGreaterThan(5);
        expect(new Date(d!.nextAttemptAt).getTime() - start).toBeGreaterThan(24 * 3_600_000);
        const id = await resendDelivery(h.deps, a.id, d!.id);
        const [again] = await h.deps.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, id));
        expect(again!.state).toBe("pending");
        const other = await newAccount(h);
        expect((await rejection(resendDelivery(h.deps, other.id, d!.id))).message).toContain("No such delivery");
      } finally {
        r.stop();
      }
    });

    it.each([
      ["a loopback address", "http://127.0.0.1:9/x", "webhook_target_refused"],
      ["a private address", "https://10.1.2.3/x", "webhook_target_refused"],
      ["the cloud metadata address", "https://169.254.169.254/latest", "webhook_target_refused"],
      ["an IPv6 unique-local address", "https://[fd00::1]/x", "webhook_target_refused"],
      ["plain http to another host", "http://example.com/x", "invalid_request"],
      ["credentials in the URL", "https://u:p@example.com/x", "invalid_request"],
      ["not a URL", "hooks please", "invalid_request"],
    ] as const)("refuses %s for a non-operator, even asking to allow private targets (SSRF guard)", async (_, url, code) => {
      const a = await newAccount(h);
      const err = await setWebhook(h.deps, a.id, { url, allowPrivate: true }, cliActor, false).catch((e) => e);
      expect(err).toBeInstanceOf(DomainError);
      expect((err as DomainError).code).toBe(code);
    });

    it("signs as documented, one v1 per secret, the new one first", () => {
      const mac = (secret: string) => createHmac("sha256", secret).update('1700000000.{"a":1}').digest("hex");
      expect(signPayload("whsec_x", '{"a":1}', 1700000000)).toBe(`t=1700000000,v1=${mac("whsec_x")}`);
      expect(signPayload(["whsec_new", "whsec_old"], '{"a":1}', 1700000000)).toBe(`t=1700000000,v1=${mac("whsec_new")},v1=${mac("whsec_old")}`);
    });
  });
}
