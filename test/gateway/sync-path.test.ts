import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { UNMETERED_PLANS } from "../support/backends.ts";
import { bearer, newAccount, newKey } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

/**
 * Elysia decides from a hook's or a handler's source whether to await it (`return f(` counts
 * as async), and one awaited step makes every request answer through a promise: 7-8 µs a
 * request on the bench host. On the embedded backend (in-process state) a request whose key
 * is cached needs no promise at all, so `app.fetch` must hand back the Response itself —
 * through the app's onRequest hooks and the data-API handler alike.
 */
describe("the data API's hot path [embedded]", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ name: "embedded" }, { config: { plansFile: UNMETERED_PLANS } });
  });
  afterAll(() => h.close());

  const get = (path: string, headers: Record<string, string>) => h.app.fetch(new Request(`http://localhost${path}`, { headers }));

  it("answers a cached key's request without a promise, with the whole chain's headers", async () => {
    const account = await newAccount(h);
    const { secret } = await newKey(h, account.id);
    // The first request looks the key up (a promise); the next finds it cached.
    const first = await get("/v1/email/someone@example.com", bearer(secret));
    expect(first.status).toBe(200);
    const res = get("/v1/email/someone@example.com", bearer(secret));
    expect(res).toBeInstanceOf(Response);
    const answer = res as Response;
    expect(answer.status).toBe(200);
    expect((await answer.json()).domain).toBe("example.com");
    expect(answer.headers.get("x-ratelimit-remaining")).not.toBeNull();
    expect(answer.headers.get("x-request-id")).toMatch(/^req_/);
    const ip = get("/v1/ip/8.8.8.8", bearer(secret));
    expect(ip).toBeInstanceOf(Response);
    expect((ip as Response).status).toBe(200);
  });

  it("answers a refusal from memory without a promise", async () => {
    const res = get("/v1/email/someone@example.com", {});
    expect(res).toBeInstanceOf(Response);
    expect((res as Response).status).toBe(401);
  });

  it("still answers a request whose key must be looked up (a promise) through the same handler", async () => {
    const account = await newAccount(h);
    const { secret } = await newKey(h, account.id);
    const res = get("/v1/email/someone@example.com", bearer(secret));
    expect(res).toBeInstanceOf(Promise);
    expect((await res).status).toBe(200);
  });
});
