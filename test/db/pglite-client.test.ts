import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PgliteWorkerClient } from "../../src/db/pglite-client.ts";
import type { PgliteConnection } from "../../src/db/pglite-client.ts";
import { leaseConnection, openTemplateCopy as openCopy } from "../support/embedded.ts";
import { rejection } from "../support/fixtures.ts";

/** The embedded database's worker client keeps PGlite's semantics (src/db/pglite-client.ts). */
describe("PGlite in a worker thread", () => {
  // A pooled worker's connection (it passes everything to the worker's client) for the
  // tests that need no worker of their own.
  let pg: PgliteConnection;
  let release: () => Promise<void>;
  beforeAll(async () => {
    ({ connection: pg, release } = await leaseConnection());
    await pg.query("create table t (id int primary key, at timestamptz, big bigint, note text)");
  });
  afterAll(async () => {
    await pg.query("drop table t");
    await release();
  });

  it("answers rows as objects or arrays, with drizzle's text-kept types as text", async () => {
    await pg.query("insert into t values ($1, $2, $3, $4)", [1, "2026-11-27T10:00:00Z", 9_007_199_254_740_993n, "a"]);
    const objects = await pg.query<{ id: number; at: string; big: bigint; note: string }>("select * from t where id = $1", [1]);
    expect(objects.rows).toEqual([{ id: 1, at: expect.any(Date), big: 9_007_199_254_740_993n, note: "a" }]);
    const arrays = await pg.query("select id, at from t", [], { rowMode: "array", parsers: { 1184: (v: string) => v } });
    expect(arrays.rows).toEqual([[1, "2026-11-27 10:00:00+00"]]);
    expect(arrays.fields.map((f) => f.name)).toEqual(["id", "at"]);
  });

  it("passes a database error's fields across: SQLSTATE, constraint, detail", async () => {
    const err = (await rejection(pg.query("insert into t (id) values (1)"))) as Error & { code?: string; constraint?: string; detail?: string };
    expect(err.message).toContain("duplicate key");
    expect(err.code).toBe("23505");
    expect(err.constraint).toBe("t_pkey");
    expect(err.detail).toContain("(id)=(1)");
  });

  it("commits a transaction, and rolls back one whose callback throws", async () => {
    await pg.transaction(async (tx) => {
      await tx.query("insert into t (id) values (2)");
    });
    const err = await rejection(
      pg.transaction(async (tx) => {
        await tx.query("insert into t (id) values (3)");
        throw new Error("changed my mind");
      }),
    );
    expect(err.message).toBe("changed my mind");
    const ids = await pg.query<{ id: number }>("select id from t order by id");
    expect(ids.rows.map((r) => r.id)).toEqual([1, 2]);
  });

  it("refuses to commit a transaction in which a statement failed, even when the callback caught it", async () => {
    const err = await rejection(
      pg.transaction(async (tx) => {
        await tx.query("insert into t (id) values (4)");
        await tx.query("insert into t (id) values (1)").catch(() => {});
      }),
    );
    expect(err.message).toContain("rolled back");
    expect((await pg.query("select 1 from t where id = 4")).rows).toHaveLength(0);
  });

  it("makes a query outside a transaction wait for it to end", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const order: string[] = [];
    const tx = pg.transaction(async (t) => {
      await t.query("insert into t (id) values (5)");
      await held;
      order.push("commit");
    });
    const outside = pg.query("select count(*)::int as n from t where id = 5").then((r) => {
      order.push("outside");
      return (r.rows[0] as { n: number }).n;
    });
    await Bun.sleep(50);
    expect(order).toEqual([]);
    release();
    await tx;
    expect(await outside).toBe(1);
    expect(order).toEqual(["commit", "outside"]);
  });

  // The tests below start workers of their own, each loading the database anew (1-2 s on 2
  // cores; a leased one from the pool cannot be crashed or closed): 15 s each.
  const OWN_WORKER_MS = 15_000;

  it("refuses queries once closed, with a clear message", async () => {
    const other = await openCopy();
    await other.close();
    expect((await rejection(other.query("select 1"))).message).toBe("the embedded database is closed");
  }, OWN_WORKER_MS);

  /** Stops the client's worker the way a crash would: not through close(). */
  const crash = async (client: PgliteWorkerClient) => {
    (client as unknown as { worker: Worker }).worker.terminate();
    await Bun.sleep(50);
  };

  it("replaces a worker that stopped: the next query opens the data directory in a new one", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kp-pglite-restart-"));
    const client = await openCopy(join(dir, "pgdata"));
    try {
      await client.query("create table kept (id int primary key)");
      await client.query("insert into kept values (1), (2)");
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      // A transaction in flight when the worker stops fails; it is not replayed.
      const inFlight = client.transaction(async (tx) => {
        await tx.query("insert into kept values (3)");
        await held;
        await tx.query("insert into kept values (4)");
      });
      await Bun.sleep(50);
      await crash(client);
      release();
      expect((await rejection(inFlight)).message).toBe("the embedded database's worker stopped");
      const rows = await client.query<{ id: number }>("select id from kept order by id");
      expect(rows.rows.map((r) => r.id)).toEqual([1, 2]);
      expect(client.restarts).toBe(1);
      await client.query("insert into kept values (5)");
      expect((await client.query("select count(*)::int as n from kept")).rows).toEqual([{ n: 3 }]);
    } finally {
      await client.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    }
    // Two workers: the first, and the one that replaces it.
  }, 2 * OWN_WORKER_MS);

  it("does not restart an in-memory database, whose data went with its worker", async () => {
    const client = await openCopy();
    await crash(client);
    expect((await rejection(client.query("select 1"))).message).toBe("the embedded database's worker stopped");
    expect(client.restarts).toBe(0);
    await client.close().catch(() => {});
  }, OWN_WORKER_MS);
});
