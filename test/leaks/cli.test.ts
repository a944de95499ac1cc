import { describe, expect, it } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import schema from "@microsoft/jest-sarif/lib/schemas/sarif-2.1.0-rtm.5.json";
import Ajv04 from "ajv-draft-04";
import addFormats from "ajv-formats";
import { generateKey } from "../../src/keys/format.ts";
import { CLI_MAIN, PER_PROCESS_MS, cliHarness, type CliRun } from "../support/cli.ts";

const { tempDir, seededDir, cli } = cliHarness("kp-scan-cli-");

/**
 * The CLI run in `cwd`: a scan prints paths relative to the directory it runs in, and
 * cliHarness runs every command in the test's. The same clean environment otherwise.
 */
function cliIn(cwd: string, args: string[], env: Record<string, string> = {}): CliRun {
  const proc = Bun.spawnSync(["bun", CLI_MAIN, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", LOG_LEVEL: "warn", DATA_DIR: tempDir(), ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

function write(root: string, path: string, content: string | Uint8Array): void {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), content);
}

function git(dir: string, args: string[], env: Record<string, string> = {}): { code: number; stdout: string; stderr: string } {
  const r = Bun.spawnSync(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main", ...args], {
    cwd: dir,
    env: { PATH: process.env.PATH ?? "", HOME: dir, GIT_CONFIG_NOSYSTEM: "1", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode, stdout: r.stdout.toString().trim(), stderr: r.stderr.toString() };
}

const masked = (key: string) => `${key.slice(0, key.indexOf("_", 3) + 5)}…${key.slice(-4)}`;
const corrupt = (key: string) => key.slice(0, -1) + (key.endsWith("a") ? "b" : "a");

/** A tree with one live and one test key, look-alikes, a binary, an ignored file and node_modules. */
function plantTree(root: string) {
  const live = generateKey("kp", "live");
  const test = generateKey("kp", "test");
  write(root, "config/app.env.example", `# the key\nAPI_KEY=${live}\n`);
  write(root, "src/client.ts", `import x from "y";\n\nconst sandbox = "${test}";\n`);
  write(root, "fakes.txt", `${corrupt(live)}\nsk_live_${live.slice(8)}\n`);
  write(root, "logo.png", new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0, ...new TextEncoder().encode(generateKey("kp", "live"))]));
  write(root, ".gitignore", "*.local\n");
  const ignored = generateKey("kp", "live");
  write(root, "settings.local", `${ignored}\n`);
  write(root, "node_modules/dep/index.js", `"${generateKey("kp", "live")}"`);
  return { live, test, ignored };
}

describe("keyport scan", () => {
  it("exits 0 with nothing on stdout when no key is found", () => {
    const root = tempDir();
    write(root, "a.txt", `nothing here, only ${corrupt(generateKey("kp", "live"))}\n`);
    const r = cliIn(root, ["scan"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe("");
    expect(r.stderr).toContain("no keys found (1 file");
  }, PER_PROCESS_MS);

  it("prints path:line:col and the masked key of each find, relative to the working directory, and exits 1", () => {
    const root = tempDir();
    const t = plantTree(root);
    const r = cliIn(root, ["scan"]);
    expect(r.code).toBe(1);
    expect(r.stdout.split("\n").filter(Boolean)).toEqual([`config/app.env.example:2:9  ${masked(t.live)}`, `src/client.ts:3:18  ${masked(t.test)}`]);
    expect(r.stderr).toContain("2 keys found in 2 places");
    const sub = cliIn(join(root, "src"), ["scan", "..", "--no-ignore"]);
    expect(sub.code).toBe(1);
    expect(sub.stdout.split("\n").filter(Boolean)).toEqual([`../config/app.env.example:2:9  ${masked(t.live)}`, `../settings.local:1:1  ${masked(t.ignored)}`, `client.ts:3:18  ${masked(t.test)}`]);
  }, PER_PROCESS_MS * 2);

  it("never prints a key whole, in text, json or sarif, on stdout or stderr", () => {
    const root = tempDir();
    const t = plantTree(root);
    for (const format of ["text", "json", "sarif"]) {
      const r = cliIn(root, ["scan", "--no-ignore", "--format", format]);
      expect(r.code).toBe(1);
      for (const key of [t.live, t.test, t.ignored]) {
        expect(r.stdout + r.stderr).not.toContain(key);
        expect(r.stdout).toContain(masked(key));
      }
    }
  }, PER_PROCESS_MS * 3);

  it("prints JSON and SARIF documents on stdout alone, the SARIF valid against the 2.1.0 schema", () => {
    const root = tempDir();
    const t = plantTree(root);
    const asJson = cliIn(root, ["scan", "--format=json"]);
    expect(asJson.code).toBe(1);
    expect(asJson.stderr).toBe("");
    const doc = JSON.parse(asJson.stdout);
    expect(doc.finds.map((f: { path: string; line: number; column: number; environment: string; key: string }) => [f.path, f.line, f.column, f.environment, f.key])).toEqual([
      ["config/app.env.example", 2, 9, "live", masked(t.live)],
      ["src/client.ts", 3, 18, "test", masked(t.test)],
    ]);
    expect(doc.binary).toBe(1);

    const asSarif = cliIn(root, ["scan", "--format", "sarif"], { PUBLIC_URL: "https://keys.example.com" });
    expect(asSarif.code).toBe(1);
    const log = JSON.parse(asSarif.stdout);
    const ajv = new Ajv04({ allErrors: true, strict: false, unicodeRegExp: false });
    addFormats(ajv);
    const validate = ajv.compile(schema);
    expect(validate(log) || validate.errors).toBe(true);
    expect(log.runs[0].tool.driver.informationUri).toBe("https://keys.example.com/docs");
    expect(log.runs[0].results.map((x: { ruleId: string }) => x.ruleId)).toEqual(["keyport/live-key", "keyport/test-key"]);

    const none = cliIn(tempDir(), ["scan", "--format", "sarif"]);
    expect(none.code).toBe(0);
    expect(validate(JSON.parse(none.stdout)) || validate.errors).toBe(true);
  }, PER_PROCESS_MS * 3);

  it("exits 2 on bad usage, naming every mistake at once", () => {
    const root = tempDir();
    const r = cliIn(root, ["scan", "--format", "xml", "missing", "--colour"]);
    expect(r.code).toBe(2);
    expect(r.stderr.split("\n\n")[0]!.split("\n")).toEqual(["keyport: unknown flag --colour", 'keyport: --format must be text, json or sarif, got "xml"', 'keyport: cannot read "missing": no such file or directory']);
    write(root, "a.txt", "x");
    const git = cliIn(root, ["scan", "--git", "--no-ignore", "a.txt", "."]);
    expect(git.code).toBe(2);
    expect(git.stderr).toContain("keyport: --no-ignore does not apply to --git");
    expect(git.stderr).toContain("keyport: --git reads one repository: give at most one PATH");
    expect(git.stderr).toContain(`keyport: --git needs a repository's folder, and "a.txt" is a file`);
    const notRepo = cliIn(root, ["scan", "--git"]);
    expect(notRepo.code).toBe(2);
    expect(notRepo.stderr.trim()).toBe("keyport: . is not in a git repository");
  }, PER_PROCESS_MS * 3);

  it("needs no database and no SECRET_KEY: DATA_DIR is left untouched and DATABASE_URL is never dialled", () => {
    const root = tempDir();
    plantTree(root);
    const dataDir = join(tempDir(), "never-made");
    const r = cliIn(root, ["scan"], { DATA_DIR: dataDir, DATABASE_URL: "postgres://nobody@127.0.0.1:1/none", REDIS_URL: "redis://127.0.0.1:1", SMTP_URL: "smtp://127.0.0.1:1" });
    expect(r.code).toBe(1);
    expect(r.stdout.split("\n").filter(Boolean).length).toBe(2);
    expect(existsSync(dataDir)).toBe(false);
    const badPrefix = cliIn(root, ["scan"], { KEY_PREFIX: "SK" });
    expect(badPrefix.code).toBe(1);
    expect(badPrefix.stderr).toContain("KEY_PREFIX must be");
  }, PER_PROCESS_MS * 2);

  it("finds with --git a key that a later commit removed, naming the commit", () => {
    const root = tempDir();
    git(root, ["init", "-q"]);
    const key = generateKey("kp", "live");
    write(root, "deploy.sh", `#!/bin/sh\ncurl -H "Authorization: Bearer ${key}" https://api.example.com/\n`);
    git(root, ["add", "."]);
    git(root, ["commit", "-qm", "deploy script"]);
    const commit = git(root, ["rev-parse", "HEAD"]).stdout;
    write(root, "deploy.sh", `#!/bin/sh\ncurl -H "Authorization: Bearer $KEY" https://api.example.com/\n`);
    git(root, ["commit", "-qam", "no key"]);

    const tree = cliIn(root, ["scan"]);
    expect(tree.code).toBe(0);
    const history = cliIn(root, ["scan", "--git"]);
    expect(history.code).toBe(1);
    expect(history.stdout.trim()).toBe(`deploy.sh:2:32  ${masked(key)}  in commit ${commit.slice(0, 12)}`);
    expect(history.stderr).toContain("(2 blobs");
    const asJson = JSON.parse(cliIn(root, ["scan", "--git", "--format", "json"]).stdout);
    expect(asJson.finds[0].commits).toEqual([commit]);
    expect(JSON.stringify(asJson)).not.toContain(key);
  }, PER_PROCESS_MS * 3);
});

describe("keyport scan --check and --report", () => {
  it("says what each found key is to this server, and --report files the working ones as leaks and acts on them", async () => {
    const dataDir = await seededDir();
    const env = { DATA_DIR: dataDir };
    const email = "dev@example.com";
    expect(cli(["account", "create", "--email", email, "--password", "a long unusual passphrase"], env).code).toBe(0);
    const created = (extra: string[]) => {
      const r = cli(["key", "create", "--email", email, "--name", "k", "--scopes", "email:read", ...extra], env);
      expect(r.code).toBe(0);
      return r.stdout.trim();
    };
    const live = created([]);
    const test = created(["--env", "test"]);
    const revoked = created([]);
    expect(cli(["key", "revoke", revoked], env).code).toBe(0);
    const unknown = generateKey("kp", "live");

    const root = tempDir();
    write(root, "config/app.env", `# production\nAPI_KEY=${live}\n`);
    write(root, "test/fixture.json", `{"key": "${test}"}\n`);
    write(root, "old.txt", `${revoked}\n${unknown}\n`);

    const checked = cliIn(root, ["scan", "--check"], env);
    expect(checked.code).toBe(1);
    expect(checked.stdout.split("\n").filter(Boolean)).toEqual([
      `config/app.env:2:9  ${masked(live)}  active`,
      `old.txt:1:1  ${masked(revoked)}  revoked`,
      `old.txt:2:1  ${masked(unknown)}  unknown`,
      `test/fixture.json:1:10  ${masked(test)}  active`,
    ]);

    const reported = cliIn(root, ["scan", "--report", "--format", "json"], env);
    expect(reported.code).toBe(1);
    const doc = JSON.parse(reported.stdout);
    expect(doc.finds.map((f: { path: string; status: string; report?: string }) => [f.path, f.status, f.report ?? null])).toEqual([
      // The default policy is an emergency rotation; a test key is only notified.
      ["config/app.env", "active", "rotated"],
      ["old.txt", "revoked", null],
      ["old.txt", "unknown", null],
      ["test/fixture.json", "active", "notified"],
    ]);
    for (const key of [live, test, revoked, unknown]) expect(reported.stdout + reported.stderr).not.toContain(key);

    const keys = JSON.parse(cli(["key", "list", "--email", email, "--json"], env).stdout) as { display: string; status: string; leakedAt: string | null; leakedUrl: string | null }[];
    const leaked = keys.find((k) => k.display === masked(live))!;
    expect(leaked.leakedAt).not.toBeNull();
    expect(leaked.leakedUrl).toBe("file:config/app.env:2");
    expect(leaked.status).not.toBe("active");
    expect(keys.find((k) => k.display === masked(test))!.leakedUrl).toBe("file:test/fixture.json:1");
    expect(keys.find((k) => k.display === masked(revoked))!.leakedAt).toBeNull();

    // The same report again is the one on file: nothing is acted on twice.
    const again = cliIn(root, ["scan", "--report"], env);
    expect(again.code).toBe(1);
    expect(again.stdout).toContain(`config/app.env:2:9  ${masked(live)}  ${leaked.status}, reported: rotated`);
    const after = JSON.parse(cli(["key", "list", "--email", email, "--json"], env).stdout) as unknown[];
    expect(after.length).toBe(keys.length);
  }, PER_PROCESS_MS * 12);
});

describe("keyport rules and hook", () => {
  it("prints a gitleaks rule and a secretlint rule module for the configured prefix", () => {
    const gitleaks = cli(["rules", "gitleaks"], { KEY_PREFIX: "acme" });
    expect(gitleaks.code).toBe(0);
    expect(gitleaks.stdout).toContain('keywords = ["acme_live_", "acme_test_"]');
    expect(gitleaks.stdout).toContain("regex = '''\\bacme_(live|test)_[0-9A-Za-z]{46}\\b'''");
    const secretlint = cli(["rules", "secretlint"], { KEY_PREFIX: "acme" });
    expect(secretlint.code).toBe(0);
    expect(secretlint.stdout).toContain('const PREFIX = "acme";');
    expect(secretlint.stdout).toContain("export const creator");
    const missing = cli(["rules"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("missing rules command (gitleaks, secretlint)");
    expect(cli(["hook", "post-commit"]).code).toBe(2);
  }, PER_PROCESS_MS * 4);

  it("prints a pre-commit hook that refuses a commit whose staged files hold a key, and lets others through", () => {
    const root = tempDir();
    expect(git(root, ["init", "-q"]).code).toBe(0);
    const hook = cli(["hook", "pre-commit"]);
    expect(hook.code).toBe(0);
    write(root, ".git/hooks/pre-commit", hook.stdout);
    chmodSync(join(root, ".git/hooks/pre-commit"), 0o755);
    const tmp = tempDir();
    const commit = (message: string) => git(root, ["commit", "-qm", message], { TMPDIR: tmp });

    write(root, "README.md", "hello\n");
    git(root, ["add", "README.md"]);
    const clean = commit("readme");
    expect(clean.code).toBe(0);

    const key = generateKey("kp", "live");
    write(root, "src/settings.py", `API_KEY = "${key}"\n`);
    git(root, ["add", "src/settings.py"]);
    const blocked = commit("settings");
    expect(blocked.code).not.toBe(0);
    expect(blocked.stderr).toContain(`src/settings.py:1:12  ${masked(key)}`);
    expect(blocked.stderr).toContain("the commit would hold the key(s) above");
    expect(blocked.stderr).not.toContain(key);

    // Deleted from the working tree but still staged: the commit would still hold it.
    rmSync(join(root, "src/settings.py"));
    expect(commit("settings").code).not.toBe(0);
    git(root, ["rm", "-q", "--cached", "src/settings.py"]);

    write(root, "src/settings.py", `API_KEY = os.environ["API_KEY"]\n`);
    git(root, ["add", "src/settings.py"]);
    expect(commit("settings from the environment").code).toBe(0);
    expect(git(root, ["log", "--format=%s"]).stdout.split("\n")).toEqual(["settings from the environment", "readme"]);
    // The hook's temporary folders are gone.
    expect(readdirSync(tmp)).toEqual([]);
  }, PER_PROCESS_MS * 5);
});
