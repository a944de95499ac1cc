import { afterAll, describe, expect, it } from "bun:test";
import { mkdtempSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openPglite } from "../src/db/client.ts";
import { accounts } from "../src/db/schema.ts";
import { projectRoot } from "../src/embedded.ts";
import { UNMETERED_PLANS } from "./support/backends.ts";
import { CLI_MAIN, PER_PROCESS_MS, cliHarness } from "./support/cli.ts";

const main = CLI_MAIN;
const { tempDir, seededDir, cli } = cliHarness("kp-cli-");

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

  it("reports every wrong flag of a command line at once, one line each, then the usage", () => {
    const r = cli(["key", "create", "--colour", "red", "--name", "--json=yes", "stray"]);
    expect(r.code).toBe(2);
    const lines = r.stderr.split("\n\n")[0]!.split("\n");
    expect(lines).toEqual([
      "keyport: unknown flag --colour",
      "keyport: --name needs a value",
      "keyport: --json takes no value",
      'keyport: unexpected argument "stray"',
      "keyport: missing --email",
      "keyport: missing --scopes",
    ]);
    expect(r.stderr).toContain("usage: keyport");
    expect(r.stdout).toBe("");
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
    // Which address, and why: ioredis itself says only "Connection is closed.".
    expect(r.stderr.trim()).toBe("keyport: cannot reach REDIS_URL redis://127.0.0.1:1: connection refused (is Redis running and listening there?)");
  }, PER_PROCESS_MS);

  it("refuses an invalid email or a short password with exit 2 and writes nothing", async () => {
    const dataDir = await seededDir();
    const bad = cli(["account", "create", "--email", "nope", "--password", "long enough password"], { DATA_DIR: dataDir });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--email is not a valid email address");
    const short = cli(["account", "create", "--email", "a@example.com", "--password", "short"], { DATA_DIR: dataDir });
    expect(short.code).toBe(2);
    expect(short.stderr).toContain("--password must be at least 12 characters");
    // The portal's rules, not laxer ones: a common password is refused here too.
    const common = cli(["account", "create", "--email", "a@example.com", "--password", "password1234"], { DATA_DIR: dataDir });
    expect(common.code).toBe(2);
    expect(common.stderr.trim()).toBe("keyport: --password is on a list of commonly used passwords; choose another");
    const db = await openPglite(dataDir);
    try {
      expect(await db.db.select().from(accounts)).toEqual([]);
    } finally {
      await db.close();
    }
  }, 4 * PER_PROCESS_MS);

  it("creates an account, the first one an operator", async () => {
    const dataDir = await seededDir();
    const r = cli(["account", "create", "--email", "Ops@Example.com", "--password", "long enough password"], { DATA_DIR: dataDir });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^acct_\w+ ops@example\.com \(operator\)\n$/);
  }, PER_PROCESS_MS);

  it("lists accounts as an aligned table and as JSON", async () => {
    const dataDir = await seededDir();
    const first = cli(["account", "create", "--email", "ops@example.com", "--password", "long enough password"], { DATA_DIR: dataDir });
    const second = cli(["account", "create", "--email", "dev@example.com", "--password", "another long password"], { DATA_DIR: dataDir });
    const [opsId, devId] = [first, second].map((r) => r.stdout.split(" ")[0]!);
    const listed = cli(["account", "list", "--json"], { DATA_DIR: dataDir });
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([
      { id: opsId, email: "ops@example.com", operator: true, createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) },
      { id: devId, email: "dev@example.com", operator: false, createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/) },
    ]);
    const table = cli(["account", "list"], { DATA_DIR: dataDir }).stdout.trimEnd().split("\n");
    expect(table[0]).toMatch(/^ID +EMAIL +OPERATOR +CREATED$/);
    expect(table[1]).toMatch(new RegExp(`^${opsId} +ops@example\\.com +yes +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d UTC$`));
    expect(table[2]).toMatch(new RegExp(`^${devId} +dev@example\\.com +no `));
    // Aligned: each column starts where its header does.
    expect(table[1]!.indexOf("ops@")).toBe(table[0]!.indexOf("EMAIL"));
    expect(table[2]!.indexOf("no ")).toBe(table[0]!.indexOf("OPERATOR"));
  }, 5 * PER_PROCESS_MS);

  it("lets one process hold DATA_DIR: a second one exits naming the holder's pid", async () => {
    const dataDir = await seededDir();
    const server = await startServer({ DATA_DIR: dataDir });
    // The same environment as the server's: the message names its port.
    const second = cli(["key", "list", "--email", "k@example.com"], { DATA_DIR: dataDir, PORT: String(server.port) });
    expect(second.code).toBe(1);
    expect(second.stderr.trim().split("\n").length).toBe(1);
    expect(second.stderr).toContain(`in use by another Keyport process (pid ${server.proc.pid})`);
    // And what to do about it: stop the server, or go through its API.
    expect(second.stderr).toContain("Stop it and run this again");
    expect(second.stderr).toContain(`a key holding keys:manage (curl -H "Authorization: Bearer $KEY" http://localhost:${server.port}/api/keys)`);

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
    expect(made.stderr).toMatch(/^created key_\w+ "ci" \(test\)\n$/);

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

  it("names the flags in its refusals and reports every bad value at once, negative numbers included", async () => {
    const dataDir = await seededDir();
    const all = cli(
      ["key", "create", "--email", "k@example.com", "--name", "x", "--scopes", "email:write", "--rate", "fast", "--env", "prod", "--ips", "1.2.3.4/99", "--expires", "2001-01-01T00:00:00Z", "--quota", "-5"],
      { DATA_DIR: dataDir },
    );
    expect(all.code).toBe(2);
    expect(all.stdout).toBe("");
    expect(all.stderr.trimEnd().split("\n")).toEqual([
      'keyport: --rate must be a whole number, got "fast"',
      'keyport: --env must be "live" or "test"',
      'keyport: --scopes: unknown scope "email:write" (known: email:read, ip:read, batch:write, keys:manage)',
      'keyport: --ips: "1.2.3.4/99" has a prefix length outside 0-32',
      "keyport: --quota must be at least 1",
      "keyport: --expires must be in the future",
    ]);
    // A value that is refused is not a wrong command line: no usage text after it.
    expect(all.stderr).not.toContain("usage:");
    const inline = cli(["key", "create", "--email", "k@example.com", "--name", "x", "--scopes", "email:read", "--quota=-5", "--rate=-1"], { DATA_DIR: dataDir });
    expect(inline.code).toBe(2);
    expect(inline.stderr.trimEnd().split("\n")).toEqual(["keyport: --rate must be at least 1", "keyport: --quota must be at least 1"]);

    cli(["account", "create", "--email", "k@example.com", "--password", "long enough password"], { DATA_DIR: dataDir });
    const nobody = cli(["key", "create", "--email", "nobody@example.com", "--name", "x", "--scopes", "email:read"], { DATA_DIR: dataDir });
    expect(nobody.code).toBe(2);
    expect(nobody.stderr).toContain("no account with email nobody@example.com");
  }, 5 * PER_PROCESS_MS);

  it("lists, rolls and revokes keys by id and by the key itself", async () => {
    const dataDir = await seededDir();
    const run = (...args: string[]) => cli(args, { DATA_DIR: dataDir });
    expect(run("account", "create", "--email", "k@example.com", "--password", "long enough password").code).toBe(0);
    const made = run("key", "create", "--email", "k@example.com", "--name", "deploy", "--scopes", "email:read", "--json");
    expect(made.code).toBe(0);
    const created = JSON.parse(made.stdout) as { id: string; name: string; environment: string; status: string; secret: string };
    const { id: firstId, secret: firstSecret } = created;
    expect([firstId, created.name, created.environment, created.status]).toEqual([expect.stringMatching(/^key_/), "deploy", "live", "active"]);
    expect(firstSecret).toMatch(/^kp_live_[0-9A-Za-z]{46}$/);

    // Rolled by the key itself: the new secret alone on stdout, the ids on stderr.
    const rolled = run("key", "roll", firstSecret, "--grace", "1");
    expect(rolled.code, rolled.stderr).toBe(0);
    expect(rolled.stdout).toMatch(/^kp_live_[0-9A-Za-z]{46}\n$/);
    const secondSecret = rolled.stdout.trim();
    const secondId = /^created (key_\w+) "deploy" replacing (key_\w+), which works until /.exec(rolled.stderr)?.[1];
    expect(rolled.stderr).toContain(`replacing ${firstId}`);

    const listed = run("key", "list", "--email", "k@example.com", "--json");
    expect(listed.code).toBe(0);
    expect(listed.stdout).not.toContain(firstSecret);
    expect(listed.stdout).not.toContain(secondSecret);
    const keys = JSON.parse(listed.stdout) as { id: string; display: string; status: string; replacedBy: string | null }[];
    expect(keys.map((k) => [k.id, k.status])).toEqual([
      [secondId!, "active"],
      [firstId, "expiring"],
    ]);
    expect(keys[1]!.replacedBy).toBe(secondId!);
    expect(keys[0]!.display).toBe(`kp_live_${secondSecret.slice(8, 12)}…${secondSecret.slice(-4)}`);

    // Revoked by id, and by the key (found by its hash): both stop at once.
    expect(run("key", "revoke", secondId!).stdout).toBe(`${secondId} revoked\n`);
    expect(run("key", "revoke", firstSecret).stdout).toBe(`${firstId} revoked\n`);

    const table = run("key", "list", "--email", "k@example.com").stdout.trimEnd().split("\n");
    expect(table[0]).toMatch(/^ID +NAME +ENV +KEY +STATUS +LAST USED$/);
    expect(table.slice(1).map((l) => l.split(/ {2,}/))).toEqual([
      [secondId!, "deploy", "live", keys[0]!.display, "revoked", "never"],
      [firstId, expect.stringMatching(/^deploy/), "live", keys[1]!.display, "revoked", "never"],
    ]);

    // A mistyped key is refused by its checksum, and never echoed back.
    const typo = firstSecret.slice(0, -1) + (firstSecret.endsWith("a") ? "b" : "a");
    const mistyped = run("key", "revoke", typo);
    expect(mistyped.code).toBe(2);
    expect(mistyped.stderr).toContain("checksum");
    expect(mistyped.stderr).not.toContain(typo);
  }, 9 * PER_PROCESS_MS);
});

describe("keyport serve", () => {
  it("answers requests until SIGTERM, then flushes every counted request before exiting 0", async () => {
    const dataDir = await seededDir();
    cli(["account", "create", "--email", "s@example.com", "--password", "long enough password"], { DATA_DIR: dataDir });
    const secret = cli(["key", "create", "--email", "s@example.com", "--name", "load", "--scopes", "email:read", "--rate", "10000"], { DATA_DIR: dataDir }).stdout.trim();
    // A flush interval far longer than the test: only the shutdown flush can write the counts.
    const server = await startServer({ DATA_DIR: dataDir, USAGE_FLUSH_MS: "3600000", PLANS_FILE: UNMETERED_PLANS });
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
