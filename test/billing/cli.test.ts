import { afterAll, describe, expect, it } from "bun:test";
import { mkdtempSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openPglite } from "../../src/db/client.ts";
import { accounts, invoices, keyUsage, planChanges } from "../../src/db/schema.ts";
import { projectRoot } from "../../src/embedded.ts";
import { BUCKET_COUNT } from "../../src/usage/histogram.ts";
import { seedDataDir } from "../support/embedded.ts";
import { PER_PROCESS_MS, cliHarness } from "../support/cli.ts";

const { tempDir, cli } = cliHarness("kp-cli-billing-");

const HEADER = "number,account,email,month,status,calls,included_calls,total_cents,currency,finalized_at";

/**
 * A DATA_DIR whose database holds, for June 2026: a starter account with 12,345 live calls
 * (and test calls, never billed), a free account with none, and an account made in July.
 */
async function billedDataDir() {
  const dataDir = tempDir();
  await seedDataDir(dataDir);
  const db = await openPglite(dataDir);
  try {
    const made = (id: string, email: string, createdAt: string) => ({ id, email, passwordHash: "unused", createdAt: new Date(createdAt), updatedAt: new Date(createdAt) });
    await db.db.insert(accounts).values([
      { ...made("acct_starter000000001", "starter@example.com", "2026-05-10T00:00:00Z"), planId: "starter" },
      made("acct_free000000000001", "free@example.com", "2026-05-11T00:00:00Z"),
      made("acct_july000000000001", "july@example.com", "2026-07-01T00:00:00Z"),
    ]);
    await db.db.insert(planChanges).values({
      id: "plc_cli0000000000001",
      accountId: "acct_starter000000001",
      fromPlan: "free",
      toPlan: "starter",
      effectiveAt: new Date("2026-05-10T00:00:00Z"),
      requestedAt: new Date("2026-05-10T00:00:00Z"),
      actor: "cli",
    });
    const usage = (day: string, environment: "live" | "test", endpoint: string, successes: number) => ({
      keyId: `key_${environment}00000000001`,
      accountId: "acct_starter000000001",
      day,
      endpoint,
      environment,
      successes,
      latencyBuckets: new Array(BUCKET_COUNT).fill(0),
    });
    await db.db
      .insert(keyUsage)
      .values([
        usage("2026-06-01", "live", "GET /v1/ip/:address", 5_000),
        usage("2026-06-30", "live", "GET /v1/email/:address", 7_345),
        usage("2026-06-02", "test", "GET /v1/ip/:address", 9_999),
        usage("2026-07-01", "live", "GET /v1/ip/:address", 1_000),
      ]);
  } finally {
    await db.close();
  }
  return dataDir;
}

describe("keyport invoices", () => {
  it("closes a month once (a second run makes none) and exports its invoices as CSV", async () => {
    const dataDir = await billedDataDir();
    const run = (...args: string[]) => cli(args, { DATA_DIR: dataDir });
    const first = run("invoices", "close", "--month", "2026-06");
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    expect(first.stdout).toBe("2026-06: 2 invoices made\n");
    const second = run("invoices", "close", "--month=2026-06");
    expect(second.code).toBe(0);
    expect(second.stdout).toBe("2026-06: 0 invoices made (2 already finalized)\n");

    const exported = run("invoices", "export", "--month", "2026-06");
    expect(exported.code).toBe(0);
    expect(exported.stderr).toBe("");
    const lines = exported.stdout.split("\n");
    expect(lines[0]).toBe(HEADER);
    expect(lines.slice(1, 3)).toEqual([
      expect.stringMatching(/^KP-202606-000001,acct_starter000000001,starter@example\.com,2026-06,open,12345,10000,5800,USD,\d{4}-\d\d-\d\dT[\d:.]+Z$/),
      expect.stringMatching(/^KP-202606-000002,acct_free000000000001,free@example\.com,2026-06,open,0,500,0,USD,/),
    ]);
    expect(lines.slice(3)).toEqual([""]);

    const none = run("invoices", "export", "--month", "2026-01");
    expect(none.code).toBe(0);
    expect(none.stdout).toBe(`${HEADER}\n`);

    const db = await openPglite(dataDir);
    try {
      expect((await db.db.select().from(invoices)).map((i) => i.number).sort()).toEqual(["KP-202606-000001", "KP-202606-000002"]);
    } finally {
      await db.close();
    }
  }, 6 * PER_PROCESS_MS);

  it("refuses a bad month, a missing --month and a month not yet ended with one line naming --month, exit 2", async () => {
    const bad = cli(["invoices", "export", "--month", "2026-13"]);
    expect(bad.code).toBe(2);
    expect(bad.stdout).toBe("");
    expect(bad.stderr).toBe('keyport: --month must be a month as YYYY-MM, e.g. 2026-11, got "2026-13"\n');

    const missing = cli(["invoices", "close"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr.split("\n")[0]).toBe("keyport: missing --month");

    const unknown = cli(["invoices", "send", "--month", "2026-06"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.split("\n")[0]).toBe('keyport: unknown invoices command "send"');

    const dataDir = tempDir();
    await seedDataDir(dataDir);
    const future = cli(["invoices", "close", "--month", "2999-01"], { DATA_DIR: dataDir });
    expect(future.code).toBe(2);
    expect(future.stderr).toBe("keyport: --month has not ended yet (it ends 2999-02-01 00:00 UTC)\n");
  }, 5 * PER_PROCESS_MS);
});
