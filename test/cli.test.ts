import { afterAll, describe, expect, it } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openPglite } from "../src/db/client.ts";
import { accounts } from "../src/db/schema.ts";
import { projectRoot } from "../src/embedded.ts";
import { seedDataDir } from "./support/embedded.ts";

const main = join(projectRoot, "src", "main.ts");
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "kp-cli-"));
  dirs.push(d);
  return d;
};
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
/** A DATA_DIR holding a migrated database, as after a first start (initdb alone takes seconds). */
const seededDir = async () => {
  const d = tempDir();
  await seedDataDir(d);
  return d;
};

/**
 * Every command is a new Bun process, and most open the embedded database in a worker of
 * their own: 0.3-0.5 s, and about 1 s more to open it, on 2 cores (2-3 s each under load). A
 * test's timeout is this for each process it starts or database it opens.
 */
const PER_PROCESS_MS = 10_000;

/** The environment of a clean machine: PATH and the variables under test, nothing else. */
function cli(args: string[], env: Record<string, string> = {}) {
  const proc = Bun.spawnSync(["bun", main, ...args], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", LOG_LEVEL: "warn", DATA_DIR: tempDir(), ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

/** `keyport serve` as a process, once it logs "listening"; `stop` sends SIGTERM and collects its log. */
async function startServer(env: Record<string, string>) {
  const port = 40000 + Math.floor(Math.random() * 20000);
  const proc = Bun.spawn(["bun", main, "serve"], {
    env: { PATH: process.env.PATH ?? "", PORT: String(port), LOG_LEVEL: "info", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const reader = proc.stdout.getReader();
  let out = "";
  const readUntil = async (stop: (s: string) => boolean) => {
    while (!stop(out)) {
      const { value, done } = await reader.read();
      if (done) break;
      out += new TextDecoder().decode(value);
    }
  };
  await readUntil((s) => s.includes('"listening"'));
  return {
    proc,
    port,
    async stop() {
      proc.kill("SIGTERM");
      await readUntil(() => false);
      return { code: await proc.exited, out };
    },
  };
}

describe("keyport CLI", () => {
  it("prints usage and exits 2 for an unknown command", () => {
    const r = cli(["frobnicate"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "frobnicate"');
    expect(r.stderr).toContain("usage: keyport");
  }, PER_PROCESS_MS);

  it("prints usage and exits 2 for an unknown flag", () => {
    const r = cli(["account", "create", "--email", "a@b.co", "--password", "x".repeat(12), "--colour", "red"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("--colour");
  }, PER_PROCESS_MS);

  it("stops with one line naming a bad variable, exit 1, no stack trace", () => {
    const r = cli(["migrate"], { PORT: "abc" });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('keyport: PORT must be an integer 1-65535, got "abc"');
  }, PER_PROCESS_MS);

  it("stops with one clear line when DATABASE_URL does not answer", () => {
    const r = cli(["migrate"], { DATABASE_URL: "postgres://postgres@127.0.0.1:1/none", SECRET_KEY: "s".repeat(40) });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n").length).toBe(1);
    expect(r.stderr).toContain("cannot reach DATABASE_URL");
  }, PER_PROCESS_MS);

  it("stops with one clear line when REDIS_URL does not answer", () => {
    const r = cli(["serve"], { REDIS_URL: "redis://127.0.0.1:1", PORT: String(40000 + Math.floor(Math.random() * 20000)) });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n").length).toBe(1);
    expect(r.stderr).toContain("cannot reach REDIS_URL");
  }, PER_PROCESS_MS);

  it("refuses an invalid email or a short password with exit 2 and writes nothing", async () => {
    const dataDir = await seededDir();
    const bad = cli(["account", "create", "--email", "nope", "--password", "long enough password"], { DATA_DIR: dataDir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("email is not a valid email address");
    const short = cli(["account", "create", "--email", "a@example.com", "--password", "short"], { DATA_DIR: dataDir });
    expect(short.code).toBe(2);
    expect(short.stderr).toContain("password must be at least 12 characters");
    const db = await openPglite(dataDir);
    try {
      expect(await db.db.select().from(accounts)).toEqual([]);
    } finally {
      await db.close();
    }
  }, 3 * PER_PROCESS_MS);

  it("creates an account, the first one an operator", async () => {
    const dataDir = await seededDir();
    const r = cli(["account", "create", "--email", "Ops@Example.com", "--password", "long enough password"], { DATA_DIR: dataDir });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^acct_\w+ ops@example\.com \(operator\)\n$/);
  }, PER_PROCESS_MS);

  it("lets one process hold DATA_DIR: a second one exits naming the holder's pid", async () => {
    const dataDir = await seededDir();
    const server = await startServer({ DATA_DIR: dataDir });
    const second = cli(["migrate"], { DATA_DIR: dataDir });
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`in use by another Keyport process (pid ${server.proc.pid})`);

    const { code, out } = await server.stop();
    expect(code).toBe(0);
    expect(out).toContain('"shutdown complete"');
    // The holder is gone: the data is whole and the next process opens it.
    expect(cli(["migrate"], { DATA_DIR: dataDir }).code).toBe(0);
  }, 3 * PER_PROCESS_MS);
});

describe("keyport key", () => {
  it("creates a key printing the secret alone, and revokes it by id", async () => {
    const dataDir = await seededDir();
    expect(cli(["account", "create", "--email", "k@example.com", "--password", "long enough password"], { DATA_DIR: dataDir }).code).toBe(0);
    const made = cli(["key", "create", "--email", "k@example.com", "--name", "ci", "--scopes", "email:read,ip:read", "--env", "test", "--rate", "100", "--ips", "10.0.0.0/8"], { DATA_DIR: dataDir });
    expect(made.code).toBe(0);
    expect(made.stdout).toMatch(/^kp_test_[0-9A-Za-z]{46}\n$/);

    const db = await openPglite(dataDir);
    let keyId: string;
    try {
      const { apiKeys } = await import("../src/db/schema.ts");
      const [row] = await db.db.select().from(apiKeys);
      expect(row).toMatchObject({ name: "ci", environment: "test", rateLimit: 100, ipAllowlist: ["10.0.0.0/8"], scopes: ["email:read", "ip:read"] });
      keyId = row!.id;
    } finally {
      await db.close();
    }
    const revoked = cli(["key", "revoke", keyId], { DATA_DIR: dataDir });
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toBe(`${keyId} revoked\n`);
    const again = cli(["key", "revoke", "key_doesnotexist000"], { DATA_DIR: dataDir });
    expect(again.code).toBe(2);
    expect(again.stderr).toContain("No such key");
  }, 5 * PER_PROCESS_MS);

  it("refuses bad values with one readable line and exit 2", async () => {
    const dataDir = await seededDir();
    cli(["account", "create", "--email", "k@example.com", "--password", "long enough password"], { DATA_DIR: dataDir });
    const cases: [string[], string][] = [
      [["--scopes", "nope:read"], 'scopes unknown scope "nope:read"'],
      [["--scopes", "email:read", "--rate", "fast"], "--rate must be a whole number"],
      [["--scopes", "email:read", "--env", "prod"], "environment"],
      [["--scopes", "email:read", "--ips", "1.2.3.4/99"], "prefix length"],
      [["--scopes", "email:read", "--expires", "2001-01-01T00:00:00Z"], "expiresAt must be in the future"],
    ];
    for (const [extra, message] of cases) {
      const r = cli(["key", "create", "--email", "k@example.com", "--name", "x", ...extra], { DATA_DIR: dataDir });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(message);
      expect(r.stdout).toBe("");
    }
    const nobody = cli(["key", "create", "--email", "nobody@example.com", "--name", "x", "--scopes", "email:read"], { DATA_DIR: dataDir });
    expect(nobody.code).toBe(2);
    expect(nobody.stderr).toContain("no account with email");
  }, 7 * PER_PROCESS_MS);
});

describe("keyport serve", () => {
  it("answers requests until SIGTERM, then flushes every counted request before exiting 0", async () => {
    const dataDir = await seededDir();
    cli(["account", "create", "--email", "s@example.com", "--password", "long enough password"], { DATA_DIR: dataDir });
    const secret = cli(["key", "create", "--email", "s@example.com", "--name", "load", "--scopes", "email:read", "--rate", "10000"], { DATA_DIR: dataDir }).stdout.trim();
    // A flush interval far longer than the test: only the shutdown flush can write the counts.
    const server = await startServer({ DATA_DIR: dataDir, USAGE_FLUSH_MS: "3600000" });
    const port = server.port;
    const statuses = await Promise.all(
      Array.from({ length: 200 }, () => fetch(`http://127.0.0.1:${port}/v1/email/a@example.com`, { headers: { authorization: `Bearer ${secret}` } }).then((r) => r.status)),
    );
    expect(statuses.every((s) => s === 200)).toBe(true);
    // A body over the limit is refused before parsing.
    const huge = await fetch(`http://127.0.0.1:${port}/v1/batch`, {
      method: "POST",
      headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
      body: JSON.stringify({ items: [{ type: "ip", value: "x".repeat(2 * 1024 * 1024) }] }),
    });
    expect(huge.status).toBe(413);
    const { code, out } = await server.stop();
    expect(code).toBe(0);
    expect(out).toContain('"step":"usage flushed"');
    expect(out).not.toContain(secret);
    const db = await openPglite(dataDir);
    try {
      const { keyUsage } = await import("../src/db/schema.ts");
      const rows = await db.db.select().from(keyUsage);
      expect(rows.reduce((n, r) => n + r.successes, 0)).toBe(200);
    } finally {
      await db.close();
    }
  }, 4 * PER_PROCESS_MS);
});
