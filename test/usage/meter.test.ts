import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { eq, sql, type SQL } from "drizzle-orm";
import { PgDialect } from "drizzle-orm/pg-core";
import { apiKeys, keyUsage, usageFlushes } from "../../src/db/schema.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { ROWS_PER_SLICE, UsageMeter, sortInSlices } from "../../src/usage/meter.ts";
import { seeded } from "../support/prng.ts";
import { keyUsageReport } from "../../src/usage/queries.ts";
import { getKey, listKeys } from "../../src/keys/service.ts";
import { createLogger } from "../../src/ops/log.ts";
import { backends, UNMETERED_PLANS } from "../support/backends.ts";
import { afterResponse, bearer, newAccount, newKey, rejection } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

for (const backend of backends) {
  describe(`usage metering [${backend.name}]`, () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 10, 12));
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock, config: { plansFile: UNMETERED_PLANS } });
    });
    afterAll(() => h.close());

    const counted = async (keyId: string) => {
      const [row] = await h.deps.db
        .select({ s: sql<string>`coalesce(sum(${keyUsage.successes}), 0)`, e: sql<string>`coalesce(sum(${keyUsage.errors}), 0)` })
        .from(keyUsage)
        .where(eq(keyUsage.keyId, keyId));
      return { successes: Number(row!.s), errors: Number(row!.e) };
    };

    it("counts 1,000 answered requests as exactly 1,000 after a flush", async () => {
      const account = await newAccount(h);
      const { key, secret } = await newKey(h, account.id, { rateLimit: 100_000 });
      for (let i = 0; i < 10; i++) {
        await Promise.all(Array.from({ length: 100 }, (_, j) => h.req(j % 10 === 0 ? "/v1/ip/1.2.3.4" : "/v1/email/a@example.com", { headers: bearer(secret) })));
      }
      await afterResponse();
      await h.deps.meter.flush();
      expect(await counted(key.id)).toEqual({ successes: 1000, errors: 0 });
      const rows = await h.deps.db.select().from(keyUsage).where(eq(keyUsage.keyId, key.id));
      expect(rows.map((r) => r.endpoint).sort()).toEqual(["GET /v1/email/:address", "GET /v1/ip/:address"]);
      expect(rows.every((r) => r.day === "2026-06-10" && r.environment === "live")).toBe(true);
      expect(rows.reduce((n, r) => n + r.latencyBuckets.reduce((a, b) => a + b, 0), 0)).toBe(1000);
    });

    it("drains at shutdown: a flush under way is awaited, then what was recorded after it began is flushed too", async () => {
      const account = await newAccount(h);
      const { key, secret } = await newKey(h, account.id, { rateLimit: 100_000 });
      await Promise.all(Array.from({ length: 50 }, () => h.req("/v1/email/a@example.com", { headers: bearer(secret) })));
      await afterResponse();
      // A flush starts (it takes the 50), then 30 more are answered before the shutdown's drain.
      const under = h.deps.meter.flush();
      await Promise.all(Array.from({ length: 30 }, () => h.req("/v1/ip/1.2.3.4", { headers: bearer(secret) })));
      await afterResponse();
      // flush() here would share the run under way and leave the 30 behind.
      await h.deps.meter.drain();
      await under;
      expect(await counted(key.id)).toEqual({ successes: 80, errors: 0 });
      expect(h.deps.meter.unflushed()).toBe(0);
    });

    it("counts errors apart, a batch as one request per item, and test keys as test usage", async () => {
      const account = await newAccount(h);
      const { key, secret } = await newKey(h, account.id, { environment: "test" });
      await h.req("/v1/ip/not-an-ip", { headers: bearer(secret) });
      await h.req("/v1/batch", { method: "POST", headers: bearer(secret), json: { items: [1, 2, 3, 4].map((i) => ({ type: "ip", value: `10.0.0.${i}` })) } });
      await afterResponse();
      await h.deps.meter.flush();
      expect(await counted(key.id)).toEqual({ successes: 4, errors: 1 });
      const rows = await h.deps.db.select().from(keyUsage).where(eq(keyUsage.keyId, key.id));
      expect(rows.every((r) => r.environment === "test")).toBe(true);
    });

    it("adds to existing rows across flushes and loses nothing when a flush fails once", async () => {
      const account = await newAccount(h);
      const { key } = await newKey(h, account.id);
      const meter = new UsageMeter(h.deps.db, clock, createLogger("silent"), 60_000);
      for (let i = 0; i < 50; i++) meter.record(key.id, account.id, "live", "GET /v1/email/:address", 200, 3);
      await meter.flush();
      for (let i = 0; i < 25; i++) meter.record(key.id, account.id, "live", "GET /v1/email/:address", 500, 30);

      // Make the next write fail inside its transaction, after the ledger row is written.
      const realTransaction = h.deps.db.transaction.bind(h.deps.db);
      let failures = 0;
      (h.deps.db as { transaction: unknown }).transaction = async (fn: (tx: unknown) => Promise<unknown>) =>
        realTransaction(async (tx) => {
          const result = await fn(tx);
          if (failures++ === 0) throw new Error("connection reset (injected)");
          return result;
        });
      try {
        expect((await rejection(meter.flush())).message).toContain("injected");
        expect(meter.unflushed()).toBe(25);
        for (let i = 0; i < 5; i++) meter.record(key.id, account.id, "live", "GET /v1/email/:address", 200, 3);
        await meter.flush();
      } finally {
        (h.deps.db as { transaction: unknown }).transaction = realTransaction;
      }
      expect(meter.unflushed()).toBe(0);
      expect(await counted(key.id)).toEqual({ successes: 55, errors: 25 });
    });

    it("applies a retried flush whose first attempt did commit only once (the flush_id ledger)", async () => {
      const account = await newAccount(h);
      const { key } = await newKey(h, account.id);
      const meter = new UsageMeter(h.deps.db, clock, createLogger("silent"), 60_000);
      for (let i = 0; i < 10; i++) meter.record(key.id, account.id, "live", "GET /v1/email/:address", 200, 3);
      // Commit, then lose the answer: the meter sees a failure and retries the same batch.
      const realTransaction = h.deps.db.transaction.bind(h.deps.db);
      let calls = 0;
      (h.deps.db as { transaction: unknown }).transaction = async (fn: (tx: never) => Promise<unknown>) => {
        const result = await realTransaction(fn as never);
        if (calls++ === 0) throw new Error("answer lost (injected)");
        return result;
      };
      try {
        expect((await rejection(meter.flush())).message).toContain("injected");
        await meter.flush();
      } finally {
        (h.deps.db as { transaction: unknown }).transaction = realTransaction;
      }
      expect(await counted(key.id)).toEqual({ successes: 10, errors: 0 });
      const ledger = await h.deps.db.select().from(usageFlushes);
      expect(ledger.length).toBeGreaterThan(0);
    });

    it("splits a large batch over connections, and a retry applies only the parts that did not commit", async () => {
      const account = await newAccount(h);
      const { key } = await newKey(h, account.id);
      const meter = new UsageMeter(h.deps.db, clock, createLogger("silent"), 60_000, 4);
      // 8,000 rows (one key, 8,000 endpoint names): four parts of 2,000.
      for (let i = 0; i < 8000; i++) meter.record(key.id, account.id, "live", `GET /e/${String(i).padStart(4, "0")}`, i % 4 === 0 ? 500 : 200, 3, 2);
      const realTransaction = h.deps.db.transaction.bind(h.deps.db);
      let calls = 0;
      (h.deps.db as { transaction: unknown }).transaction = async (fn: (tx: never) => Promise<unknown>) => {
        const call = calls++;
        const result = await realTransaction(fn as never);
        // The second part commits, then its answer is lost.
        if (call === 1) throw new Error("answer lost (injected)");
        return result;
      };
      try {
        expect((await rejection(meter.flush())).message).toContain("injected");
        expect(meter.unflushed()).toBe(16_000);
        await meter.flush();
      } finally {
        (h.deps.db as { transaction: unknown }).transaction = realTransaction;
      }
      expect(calls).toBe(8);
      expect(meter.unflushed()).toBe(0);
      expect(await counted(key.id)).toEqual({ successes: 6000 * 2, errors: 2000 * 2 });
      const rows = await h.deps.db.select().from(keyUsage).where(eq(keyUsage.keyId, key.id));
      expect(rows.length).toBe(8000);
      expect(rows.every((r) => r.latencyBuckets.reduce((a, b) => a + b, 0) === 2)).toBe(true);
      // 16,000 rows written through PGlite: seconds on a loaded 2-core machine, far from a limit.
    }, 60_000);

    it("builds a large flush in slices between other work, sending each part as soon as it is built", async () => {
      const account = await newAccount(h);
      const meter = new UsageMeter(h.deps.db, clock, createLogger("silent"), 60_000, 4);
      // 10,000 keys × 3 endpoints, as the benchmark's flush (usage rows need no key row).
      const rows = 30_000;
      const prefix = `key_slices${account.id.slice(-6)}`;
      const endpoints = ["GET /v1/email/:address", "GET /v1/ip/:address", "POST /v1/batch"];
      for (let i = 0; i < rows; i++) meter.record(`${prefix}${(i * 7919) % 10_000}`, account.id, "live", endpoints[i % 3]!, 200, 2);
      // Macrotasks that ran since the flush began, and how many had when each part's transaction began.
      let ticks = 0;
      let running = true;
      const tick = () => {
        ticks++;
        if (running) setImmediate(tick);
      };
      const realTransaction = h.deps.db.transaction.bind(h.deps.db);
      const startedAt: number[] = [];
      // Each part's lines, in the order the parts were sent.
      const sent: string[][] = [];
      const dialect = new PgDialect();
      (h.deps.db as { transaction: unknown }).transaction = (fn: (tx: never) => Promise<unknown>) => {
        startedAt.push(ticks);
        const lines: string[] = [];
        sent.push(lines);
        return realTransaction((tx) => {
          const spy = new Proxy(tx, {
            get(target, name) {
              const value = Reflect.get(target, name, target) as unknown;
              if (name === "execute") {
                return (query: SQL) => {
                  lines.push(...String(dialect.sqlToQuery(query).params[0]).split("\n"));
                  return target.execute(query);
                };
              }
              return typeof value === "function" ? value.bind(target) : value;
            },
          });
          return fn(spy as never);
        });
      };
      try {
        setImmediate(tick);
        await meter.flush();
      } finally {
        running = false;
        (h.deps.db as { transaction: unknown }).transaction = realTransaction;
      }
      // 30,000 rows, at most ROWS_PER_SLICE a slice: the event loop ran between slices, and
      // the first part went out while the others were still being built.
      const parts = startedAt.length;
      expect(parts).toBe(4);
      expect(startedAt.at(-1)!).toBeGreaterThanOrEqual(Math.floor(((parts - 1) / parts) * rows / ROWS_PER_SLICE));
      expect(startedAt[0]!).toBeLessThan(startedAt.at(-1)!);
      // Every row once, in one global order (key, day, endpoint) within and across the parts:
      // how flushes of several instances avoid deadlocks.
      const order = sent.flat().map((line) => line.split("\t"));
      expect(order.length).toBe(rows);
      const sortKey = (f: string[]) => [f[0]!, f[2]!, f[3]!];
      const sorted = [...order].sort((a, b) => {
        const [x, y] = [sortKey(a), sortKey(b)];
        for (let i = 0; i < 3; i++) if (x[i] !== y[i]) return x[i]! < y[i]! ? -1 : 1;
        return 0;
      });
      expect(order.map(sortKey)).toEqual(sorted.map(sortKey));
      expect(meter.unflushed()).toBe(0);
      const [stored] = await h.deps.db
        .select({ rows: sql<string>`count(*)`, successes: sql<string>`sum(${keyUsage.successes})` })
        .from(keyUsage)
        .where(sql`${keyUsage.keyId} like ${prefix + "%"}`);
      expect({ rows: Number(stored!.rows), successes: Number(stored!.successes) }).toEqual({ rows, successes: rows });
    }, 60_000);

    it("sorts in slices exactly as Array.prototype.sort does", async () => {
      const random = seeded(7);
      const alphabet = "aAzZ09_-é\u00ff\u4e00~ ";
      const items = Array.from({ length: 10_000 }, () => {
        let v = "";
        const n = 1 + Math.floor(random() * 6);
        for (let j = 0; j < n; j++) v += alphabet[Math.floor(random() * alphabet.length)];
        return v;
      });
      expect(await sortInSlices([...items])).toEqual([...items].sort());
      expect(await sortInSlices([])).toEqual([]);
      expect(await sortInSlices(["b", "a"])).toEqual(["a", "b"]);
    });

    it("shows a key's last use as its latest metered request, across endpoints, days and flushes", async () => {
      const account = await newAccount(h);
      const { key, secret } = await newKey(h, account.id, { rateLimit: 1000, scopes: ["email:read", "ip:read"] });
      const lastUsed = async () => (await getKey(h.deps, account.id, key.id)).lastUsedAt;
      const start = clock.now();
      expect(await lastUsed()).toBeNull();
      await h.req("/v1/email/a@example.com", { headers: bearer(secret) });
      await afterResponse();
      await h.deps.meter.flush();
      const first = clock.now();
      expect(await lastUsed()).toBe(new Date(first).toISOString());
      // A later request on another endpoint, then one refused (429s and 403s use the key too).
      clock.advance(30_000);
      await h.req("/v1/ip/8.8.8.8", { headers: bearer(secret) });
      await afterResponse();
      await h.deps.meter.flush();
      expect(await lastUsed()).toBe(new Date(first + 30_000).toISOString());
      // The next UTC day: a new row; the list and the detail agree.
      clock.advance(86_400_000);
      await h.req("/v1/email/b@example.com", { headers: bearer(secret) });
      await afterResponse();
      await h.deps.meter.flush();
      const latest = new Date(clock.now()).toISOString();
      expect(await lastUsed()).toBe(latest);
      expect((await listKeys(h.deps, account.id)).find((k) => k.id === key.id)?.lastUsedAt).toBe(latest);
      // A flush of rows recorded earlier (another instance's, say) does not move it back.
      h.deps.meter.record(key.id, account.id, "live", "GET /v1/email/:address", 200, 1);
      clock.set(clock.now() - 3_600_000);
      h.deps.meter.record(key.id, account.id, "live", "GET /v1/email/:address", 200, 1);
      clock.advance(3_600_000);
      await h.deps.meter.flush();
      expect(await lastUsed()).toBe(latest);
      // The key row's own mark (written by versions before usage rows carried it) is a floor.
      const later = new Date(clock.now() + 60_000);
      await h.deps.db.update(apiKeys).set({ lastUsedAt: later }).where(eq(apiKeys.id, key.id));
      expect(await lastUsed()).toBe(later.toISOString());
      clock.set(start + 30_000); // the tests below share the clock and expect today
    });

    it("reports daily rows, top endpoints, avg and p95 latency computed from the histogram", async () => {
      const account = await newAccount(h);
      const { key } = await newKey(h, account.id);
      const meter = new UsageMeter(h.deps.db, clock, createLogger("silent"), 60_000);
      // Today: 90 fast (4 ms, bucket 2-5) and 10 slow (40 ms, bucket 25-50) requests, 5 errors.
      for (let i = 0; i < 90; i++) meter.record(key.id, account.id, "live", "GET /v1/email/:address", 200, 4);
      for (let i = 0; i < 5; i++) meter.record(key.id, account.id, "live", "GET /v1/ip/:address", 200, 40);
      for (let i = 0; i < 5; i++) meter.record(key.id, account.id, "live", "GET /v1/ip/:address", 400, 40);
      await meter.flush();
      const report = await keyUsageReport(h.deps.db, key.id, 7, clock.now());
      expect(report.daily.length).toBe(7);
      expect(report.daily.slice(0, 6).every((d) => d.successes === 0 && d.errors === 0 && d.p95LatencyMs === null)).toBe(true);
      const today = report.daily[6]!;
      expect(today).toMatchObject({ day: "2026-06-10", successes: 95, errors: 5, avgLatencyMs: 7.6 });
      // The 95th of 100 falls in the 25-50 ms bucket: 25 + 25 · (95 − 90) / 10 = 37.5.
      expect(today.p95LatencyMs).toBe(37.5);
      expect(report.topEndpoints).toEqual([
        { endpoint: "GET /v1/email/:address", requests: 90, errors: 0 },
        { endpoint: "GET /v1/ip/:address", requests: 10, errors: 5 },
      ]);
      expect(report.summary).toEqual({ total: 100, successes: 95, errors: 5, errorRate: 0.05, avgLatencyMs: 7.6, p95LatencyMs: 37.5 });
    });
  });
}
