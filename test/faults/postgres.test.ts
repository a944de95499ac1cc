import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { eq, sql } from "drizzle-orm";
import { createApp } from "../../src/app.ts";
import { openPostgres } from "../../src/db/client.ts";
import { keyUsage } from "../../src/db/schema.ts";
import { generateKey } from "../../src/keys/format.ts";
import { createLogger } from "../../src/ops/log.ts";
import { assembleDeps, type OwnedDeps } from "../../src/runtime.ts";
import { MemoryState } from "../../src/state/memory.ts";
import { backends, freshDatabase, testConfig, UNMETERED_PLANS } from "../support/backends.ts";
import { afterResponse, bearer, newAccount, newKey, rejection } from "../support/fixtures.ts";
import type { Harness } from "../support/harness.ts";
import { startProxy, type FaultProxy } from "../support/proxy.ts";

const service = backends.find((b) => b.name === "service");
const EMAIL = "/v1/email/a@example.com";

/**
 * Postgres goes away under an app (a TCP proxy between them is cut) and comes back: cached
 * keys keep verifying, unknown keys get 503 (not 401), usage waits in memory, and once the
 * database answers again every answered request is counted exactly once.
 */
describe.skipIf(!service)("Postgres outage [service]", () => {
  let proxy: FaultProxy;
  let direct: Awaited<ReturnType<typeof freshDatabase>>;
  let deps: OwnedDeps;
  let h: Harness;
  beforeAll(async () => {
    direct = await freshDatabase(service!);
    proxy = startProxy(Number(new URL(service!.databaseUrl!).port || 5432));
    const viaProxy = new URL(direct.url!);
    viaProxy.port = String(proxy.port);
    const database = await openPostgres(viaProxy.toString());
    const logs: string[] = [];
    deps = await assembleDeps({ ...testConfig(), databaseUrl: viaProxy.toString(), usageFlushMs: 500, plansFile: UNMETERED_PLANS }, database, new MemoryState(), { log: createLogger("debug", (l) => void logs.push(l)) });
    const app = createApp(deps);
    h = {
      deps,
      app,
      logs,
      req: (path, init = {}) => app.handle(new Request(`http://localhost${path}`, init)),
      close: () => deps.close(),
    };
  });
  // Closing waits out postgres.js's 5 s end timeout: the flush abandoned during the cut is
  // still in flight on its connection.
  afterAll(async () => {
    proxy.restore();
    await deps.close();
    proxy.close();
    await direct.close();
  }, 20_000);

  it("keeps cached keys working, answers unknown keys 503, and counts every answered request after recovery", async () => {
    const account = await newAccount(h);
    const { key, secret } = await newKey(h, account.id, { rateLimit: 10_000 });
    let answered = 0;
    const call = async (k: string) => {
      const res = await h.req(EMAIL, { headers: bearer(k) });
      if (res.status === 200) answered++;
      return res;
    };
    for (let i = 0; i < 20; i++) expect((await call(secret)).status).toBe(200);

    proxy.cut();
    for (let i = 0; i < 30; i++) expect((await call(secret)).status).toBe(200);
    const unknown = await call(generateKey("kp", "live"));
    expect(unknown.status).toBe(503);
    expect((await unknown.json()).code).toBe("temporarily_unavailable");
    await afterResponse();
    // A cut connection is not refused, it hangs: each flush gives up at its time limit (1 s
    // here) and keeps the batch.
    expect((await rejection(deps.meter.flush())).message).toContain("did not answer");
    expect((await rejection(deps.meter.flush())).message).toContain("did not answer");
    expect(deps.meter.unflushed()).toBe(50);

    proxy.restore();
    for (let i = 0; i < 10; i++) expect((await call(secret)).status).toBe(200);
    await afterResponse();
    // The pool reconnects on its own; a flush may need a retry while it does.
    for (let i = 0; i < 20; i++) {
      try {
        await deps.meter.flush();
        break;
      } catch {
        await Bun.sleep(100);
      }
    }
    expect(deps.meter.unflushed()).toBe(0);
    const [row] = await direct.db.select({ n: sql<string>`sum(${keyUsage.successes})` }).from(keyUsage).where(eq(keyUsage.keyId, key.id));
    expect(Number(row!.n)).toBe(answered);
    expect(answered).toBe(60);
    // Two flushes wait out their 1 s time limit on the cut connection.
  }, 15_000);
});
