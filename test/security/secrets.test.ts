import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { runSweep } from "../../src/rotation/service.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { afterResponse, bearer, newAccount, newKey, schedule } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

interface Seen {
  label: string;
  text: string;
}

const SECRET = /(kp_(?:live|test)_[0-9A-Za-z]{46}|whsec_[0-9A-Za-z]{32})/g;

/**
 * Walks a whole life of keys (API create, roll, rotation with reveal, emergency rotation,
 * portal create, webhook secret, login) recording every answer and every log line, then
 * checks that each secret appears in exactly one answer — its one showing — and in no log.
 */
for (const backend of backends) {
  describe(`secrets are shown once [${backend.name}]`, () => {
    const clock = new ManualClock();
    let h: Harness;
    const answers: Seen[] = [];
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
    });
    afterAll(() => h.close());

    async function record(label: string, res: Response): Promise<string> {
      const lines: string[] = [];
      res.headers.forEach((v, k) => {
        if (k !== "set-cookie") lines.push(`${k}: ${v}`);
      });
      const headerText = lines.join("\n");
      const text = await res.text();
      answers.push({ label, text: `${headerText}\n\n${text}` });
      return text;
    }

    it("never shows a key or webhook secret after its one showing, nor logs one", async () => {
      const account = await newAccount(h);
      const admin = (await newKey(h, account.id, { scopes: ["keys:manage"], rateLimit: 10_000 })).secret;
      const headers = bearer(admin);
      const api = async (label: string, path: string, init: RequestInit & { json?: unknown } = {}) => record(label, await h.req(path, { ...init, headers: { ...headers, ...(init.headers as Record<string, string>) } }));

      const created = JSON.parse(await api("api create", "/api/keys", { method: "POST", json: { name: "s", scopes: ["email:read"] } }));
      for (let i = 0; i < 3; i++) await record("v1 call", await h.req("/v1/email/a@example.com", { headers: bearer(created.secret) }));
      await api("api list", "/api/keys");
      await api("api get", `/api/keys/${created.id}`);
      const rolled = JSON.parse(await api("api roll", `/api/keys/${created.id}/roll`, { method: "POST", json: { gracePeriodHours: 1 } }));
      await record("v1 with old key", await h.req("/v1/email/a@example.com", { headers: bearer(created.secret) }));
      const emergency = JSON.parse(await api("api emergency", `/api/keys/${rolled.id}/rotations/emergency`, { method: "POST", json: { reason: "test" } }));
      await api("reveal after emergency", `/api/rotations/${emergency.id}/reveal`, { method: "POST" });
      const { key: scheduledKey } = await newKey(h, account.id, { name: "scheduled" });
      const rotation = await schedule(h, account.id, scheduledKey.id, { at: new Date(clock.now()).toISOString() });
      await runSweep(h.deps);
      const revealed = JSON.parse(await api("api reveal", `/api/rotations/${rotation.id}/reveal`, { method: "POST" }));
      await api("api reveal again", `/api/rotations/${rotation.id}/reveal`, { method: "POST" });
      await api("api rotations", "/api/rotations");
      await api("api audit", "/api/audit");
      await api("api notifications", "/api/notifications");
      await record("revoked key", await h.req("/v1/email/a@example.com", { headers: { ...bearer(created.secret), "x-forwarded-for": "192.0.2.50" } }));
      await afterResponse();
      await h.deps.meter.flush();
      await api("api usage", `/api/keys/${created.id}/usage?days=7`);

      const b = new Browser(h);
      await b.signUp("secrets@example.com");
      const portalCreate = await record("portal create", await b.post("/portal/keys", { name: "p", scopes: "email:read", rateLimit: "60" }, { htmx: true }));
      const hook = await record("webhook set", await b.post("/portal/settings/webhook", { url: "https://93.184.216.34/hook" }));
      for (const path of ["/portal", "/portal/keys", "/portal/audit", "/portal/notifications", "/portal/settings", "/portal/compliance", "/portal/compliance.csv"]) {
        await record(`page ${path}`, await b.get(path));
      }
      const keyIds = [...(await b.page("/portal/keys")).matchAll(/\/portal\/keys\/(key_\w+)/g)].map((m) => m[1]!);
      for (const id of new Set(keyIds)) {
        await record(`key page ${id}`, await b.get(`/portal/keys/${id}`));
        await record(`key csv ${id}`, await b.get(`/portal/keys/${id}/usage.csv`));
      }

      const shown = new Map<string, string[]>();
      for (const a of answers) for (const m of a.text.matchAll(SECRET)) shown.set(m[1]!, [...(shown.get(m[1]!) ?? []), a.label]);
      const issued = [created.secret, rolled.secret, emergency.secret, revealed.secret, SECRET.exec(portalCreate)?.[1], /whsec_[0-9A-Za-z]{32}/.exec(hook)?.[0]];
      SECRET.lastIndex = 0;
      expect(issued.every(Boolean)).toBe(true);
      const showings = Object.fromEntries(issued.map((s) => [s!.slice(0, 12), [...new Set(shown.get(s!) ?? [])]]));
      expect(showings).toEqual({
        [created.secret.slice(0, 12)]: ["api create"],
        [rolled.secret.slice(0, 12)]: ["api roll"],
        [emergency.secret.slice(0, 12)]: ["api emergency"],
        [revealed.secret.slice(0, 12)]: ["api reveal"],
        [issued[4]!.slice(0, 12)]: ["portal create"],
        [issued[5]!.slice(0, 12)]: ["webhook set"],
      });
      // Every secret ever issued, including the admin key and the session token: never in a log line.
      const sessionSecret = b.cookie!.split(".")[1]!;
      const logText = h.logs.join("\n");
      for (const s of [...issued, admin, sessionSecret]) expect(logText.includes(s!)).toBe(false);
      expect(answers.some((a) => a.text.includes(sessionSecret))).toBe(false);
    });
  });
}
