import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { cliActor } from "../../src/audit/service.ts";
import { registerProduct, removeProduct, uploadSpec } from "../../src/products/service.ts";
import { backends, UNMETERED_PLANS } from "../support/backends.ts";
import { bearer, newAccount, newKey, problem } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

const service = backends.find((b) => b.name === "service");

const object = (description: string) => ({ description, content: { "application/json": { schema: { type: "object" } } } });

/** A spec whose operations are GET on each of `paths`. */
const specOf = (version: string, paths: string[]) => ({
  openapi: "3.1.0",
  info: { title: "Routes", version },
  paths: Object.fromEntries(paths.map((p) => [p, { get: { responses: { "200": object("The answer.") } } }])),
});
const source = (spec: unknown) => ({ text: JSON.stringify(spec), name: "spec.json" });

/** Waits (bounded, about 3 s) until `ready` holds on an instance: its message from the other instance arrives on its own. */
async function until(ready: () => boolean): Promise<void> {
  for (let i = 0; i < 300 && !ready(); i++) await Bun.sleep(10);
  expect(ready()).toBe(true);
}

describe.skipIf(!service)("products on two instances sharing Postgres and Redis [service]", () => {
  let a: Harness;
  let b: Harness;
  let upstream: ReturnType<typeof Bun.serve>;
  let upstreamUrl: string;
  beforeAll(async () => {
    upstream = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => Response.json({ path: new URL(req.url).pathname }) });
    upstreamUrl = `http://127.0.0.1:${upstream.port}`;
    a = await startHarness(service!, { config: { plansFile: UNMETERED_PLANS } });
    b = await startHarness(service!, { share: a, config: { plansFile: UNMETERED_PLANS } });
  });
  afterAll(async () => {
    await b.close();
    await a.close();
    await upstream.stop(true);
  });

  it("serves a spec uploaded on one instance on the other without a restart: the new route answers, the removed one 404s", async () => {
    await registerProduct(a.deps, { id: "routes", upstreamUrl }, source(specOf("1", ["/old", "/kept"])), cliActor);
    await until(() => b.deps.products.get("routes")?.version === 1);
    const account = await newAccount(a);
    const { secret } = await newKey(a, account.id, { scopes: ["routes:read"] });
    expect((await b.req("/v1/routes/old", { headers: bearer(secret) })).status).toBe(200);
    expect((await problem(await b.req("/v1/routes/new", { headers: bearer(secret) }))).code).toBe("not_found");

    const { version } = await uploadSpec(a.deps, "routes", source(specOf("2", ["/new", "/kept"])), cliActor);
    expect(version).toBe(2);
    await until(() => b.deps.products.get("routes")?.version === 2);
    const created = await b.req("/v1/routes/new", { headers: bearer(secret) });
    expect(created.status).toBe(200);
    expect(await created.json()).toEqual({ path: "/new" });
    expect((await b.req("/v1/routes/kept", { headers: bearer(secret) })).status).toBe(200);
    const gone = await b.req("/v1/routes/old", { headers: bearer(secret) });
    expect(gone.status).toBe(404);
    expect(await problem(gone)).toMatchObject({ code: "not_found", product: "routes" });
  });

  it("answers 404 for a product removed on the other instance", async () => {
    await registerProduct(a.deps, { id: "leaving", upstreamUrl }, source(specOf("1", ["/here"])), cliActor);
    await until(() => b.deps.products.get("leaving") !== undefined);
    const account = await newAccount(a);
    const { secret } = await newKey(a, account.id, { scopes: ["leaving:read"] });
    expect((await b.req("/v1/leaving/here", { headers: bearer(secret) })).status).toBe(200);

    await removeProduct(a.deps, "leaving", cliActor);
    await until(() => b.deps.products.get("leaving") === undefined);
    const res = await b.req("/v1/leaving/here", { headers: bearer(secret) });
    expect(res.status).toBe(404);
    expect(await problem(res)).toMatchObject({ code: "not_found", product: "leaving" });
  });

  it("finds a change whose message was lost at its next poll of the epoch", async () => {
    await registerProduct(a.deps, { id: "polled", upstreamUrl }, source(specOf("1", ["/first"])), cliActor);
    await until(() => b.deps.products.get("polled")?.version === 1);
    const account = await newAccount(a);
    const { secret } = await newKey(a, account.id, { scopes: ["polled:read"] });
    // Lose the message: B stops listening (and polling), A uploads a new version.
    await b.deps.products.stop();
    // Whatever B's last poll or reload was doing is over before A's change.
    await b.deps.products.poll();
    await b.deps.products.reload();
    try {
      await uploadSpec(a.deps, "polled", source(specOf("2", ["/second"])), cliActor);
      expect((await b.req("/v1/polled/first", { headers: bearer(secret) })).status).toBe(200);
      await b.deps.products.poll();
      expect(b.deps.products.get("polled")?.version).toBe(2);
      expect((await b.req("/v1/polled/second", { headers: bearer(secret) })).status).toBe(200);
      expect((await b.req("/v1/polled/first", { headers: bearer(secret) })).status).toBe(404);
    } finally {
      await b.deps.products.start();
    }
  });
});
