import { afterAll, describe, expect, it } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { lintSource } from "@secretlint/core";
import type { SecretLintRuleCreator } from "@secretlint/types";
import schema from "@microsoft/jest-sarif/lib/schemas/sarif-2.1.0-rtm.5.json";
import Ajv04 from "ajv-draft-04";
import addFormats from "ajv-formats";
import { generateKey, hashKey, type Environment } from "../../src/keys/format.ts";
import { gitleaksRule, preCommitHook, secretlintRule } from "../../src/leaks/rules.ts";
import { SARIF_RULE, sarifLog } from "../../src/leaks/sarif.ts";
import { ScanError, findJson, findLine, scanHistory, scanPaths, type Find, type ScanResult } from "../../src/leaks/scan.ts";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "kp-scan-"));
  dirs.push(d);
  return d;
};

function write(root: string, path: string, content: string | Uint8Array): void {
  mkdirSync(dirname(join(root, path)), { recursive: true });
  writeFileSync(join(root, path), content);
}

/** The same key with its last checksum digit changed: the shape of a key, not a key. */
const corrupt = (key: string) => key.slice(0, -1) + (key.endsWith("a") ? "b" : "a");

/** Where `token` is in `text`, as the scanner counts: 1-based line, 1-based UTF-16 column. */
function placeOf(text: string, token: string): { line: number; column: number } {
  const at = text.indexOf(token);
  const before = text.slice(0, at);
  return { line: before.split("\n").length, column: at - before.lastIndexOf("\n") };
}

const places = (r: ScanResult) => r.finds.map((f) => `${f.path}:${f.line}:${f.column}`);

function git(dir: string, args: string[], date?: number): string {
  const env = { PATH: process.env.PATH ?? "", HOME: dir, GIT_CONFIG_NOSYSTEM: "1", ...(date ? { GIT_AUTHOR_DATE: `${date} +0000`, GIT_COMMITTER_DATE: `${date} +0000` } : {}) };
  const r = Bun.spawnSync(["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "init.defaultBranch=main", ...args], { cwd: dir, env, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout.toString().trim();
}

/** Every file the fixture tree plants, with the keys the default scan must find. */
function plantTree(root: string) {
  const live = generateKey("kp", "live");
  const test = generateKey("kp", "test");
  const unicodeKey = generateKey("kp", "live");
  const config = `// settings\nexport const key = "${live}";\nconst sandbox = '${test}'\n`;
  write(root, "src/config.ts", config);
  const unicode = `# Notes\nhéllo wörld 🎉 ${unicodeKey} (the key above)\n`;
  write(root, "docs/unicode.md", unicode);
  // Corrupted checksums, another vendor's keys, a key one character too long, a prefix-only string.
  const other = generateKey("kp", "live");
  write(
    root,
    "lookalikes.txt",
    [corrupt(live), corrupt(test), `sk_live_${other.slice(8)}`, `sk_test_${other.slice(8)}`, `${other}x`, `kp_live_${"A".repeat(46)}`, "kp_live_"].join("\n") + "\n",
  );
  // A NUL in the first 8 KB: a binary file, however readable the rest.
  const binaryKey = generateKey("kp", "live");
  write(root, "assets/logo.png", new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x00, 0x0d, 0x0a, ...new TextEncoder().encode(` ${binaryKey} `)]));
  write(root, ".gitignore", "*.env\nbuild/\n!keep.env\n");
  const ignoredKey = generateKey("kp", "live");
  write(root, "secret.env", `KEY=${ignoredKey}\n`);
  const keptKey = generateKey("kp", "test");
  write(root, "keep.env", `KEY=${keptKey}\n`);
  const buildKey = generateKey("kp", "live");
  write(root, "build/out.js", `var k="${buildKey}";\n`);
  write(root, "sub/.gitignore", "local.txt\n");
  const localKey = generateKey("kp", "live");
  write(root, "sub/local.txt", `${localKey}\n`);
  const subKey = generateKey("kp", "live");
  write(root, "sub/other.txt", `${subKey}`);
  const moduleKey = generateKey("kp", "live");
  write(root, "node_modules/pkg/index.js", `module.exports = "${moduleKey}";\n`);
  write(root, "packages/app/node_modules/dep/x.js", `"${moduleKey}"`);
  return { live, test, unicodeKey, config, unicode, binaryKey, ignoredKey, keptKey, buildKey, localKey, subKey, moduleKey, other };
}

describe("scanPaths", () => {
  it("finds valid live and test keys at their line and column, and nothing else, in a tree outside git", async () => {
    const root = tempDir();
    const t = plantTree(root);
    const r = await scanPaths(["."], { prefix: "kp", cwd: root });
    const at = (path: string, text: string, key: string) => {
      const p = placeOf(text, key);
      return `${path}:${p.line}:${p.column}`;
    };
    expect(places(r)).toEqual([
      at("docs/unicode.md", t.unicode, t.unicodeKey),
      "keep.env:1:5",
      at("src/config.ts", t.config, t.live),
      at("src/config.ts", t.config, t.test),
      "sub/other.txt:1:1",
    ]);
    expect(places(r)).toContain("src/config.ts:2:21");
    // The column counts UTF-16 code units, as SARIF's default column kind does: "🎉" is two.
    expect(places(r)).toContain("docs/unicode.md:2:16");
    expect(r.finds.map((f) => f.environment)).toEqual(["live", "test", "live", "test", "live"]);
    expect(r.finds.find((f) => f.path === "src/config.ts")!.display).toBe(`kp_live_${t.live.slice(8, 12)}…${t.live.slice(-4)}`);
    expect(r.finds.every((f) => f.hash === hashKey(f.token))).toBe(true);
    expect(r.binary).toBe(1);
    expect(r.root).toBe(root);
  });

  it("reads ignored files with noIgnore, and still skips node_modules and binary files", async () => {
    const root = tempDir();
    const t = plantTree(root);
    const r = await scanPaths([], { prefix: "kp", cwd: root, noIgnore: true });
    const tokens = new Set(r.finds.map((f) => f.token));
    for (const k of [t.ignoredKey, t.buildKey, t.localKey, t.live, t.keptKey]) expect(tokens.has(k)).toBe(true);
    for (const k of [t.moduleKey, t.binaryKey, t.other]) expect(tokens.has(k)).toBe(false);
    expect(places(r)).toEqual(expect.arrayContaining(["build/out.js:1:8", "secret.env:1:5", "sub/local.txt:1:1"]));
  });

  it("reads a file named on the command line even when a .gitignore ignores it, and prints paths relative to the working directory", async () => {
    const root = tempDir();
    const t = plantTree(root);
    const r = await scanPaths(["secret.env", "sub"], { prefix: "kp", cwd: root });
    expect(places(r)).toEqual(["secret.env:1:5", "sub/other.txt:1:1"]);
    expect(r.finds[0]!.token).toBe(t.ignoredKey);
    const fromSub = await scanPaths([".."], { prefix: "kp", cwd: join(root, "sub") });
    expect(places(fromSub)).toContain("../src/config.ts:2:21");
  });

  it("finds a key wherever it falls against the 1 MiB reads, and counts lines across them", async () => {
    const root = tempDir();
    const chunk = 1 << 20;
    const key = generateKey("kp", "live");
    const line = "x".repeat(63) + "\n";
    const body = line.repeat(Math.ceil((2 * chunk + 500) / 64));
    // Starting or ending at a read's boundary, or one character either side of it.
    const offsets = [-key.length - 2, -key.length - 1, -key.length, -key.length + 1, -1, 0, 1, chunk - 3];
    const texts = offsets.map((d) => {
      const at = chunk + d;
      return body.slice(0, at - 1) + " " + key + " " + body.slice(at + key.length + 1);
    });
    texts.push(body.slice(0, chunk - key.length - 1) + " " + key); // ends the file, no newline after it
    texts.forEach((text, i) => write(root, `big-${i}.log`, text));
    const r = await scanPaths(["."], { prefix: "kp", cwd: root });
    const expected = texts.map((text, i) => {
      const p = placeOf(text, key);
      return `big-${i}.log:${p.line}:${p.column}`;
    });
    expect(places(r)).toEqual(expected);
    expect(r.bytes).toBe(texts.reduce((n, t) => n + t.length, 0));
  });

  it("counts columns in UTF-16 code units on a line longer than a read, whatever characters straddle the reads", async () => {
    const root = tempDir();
    const key = generateKey("kp", "test");
    // 3-byte and 4-byte UTF-8 characters, so some fall across every 1 MiB boundary.
    const filler = "é€🎉a".repeat(Math.ceil((3 << 20) / 10));
    const spots = [100, (1 << 20) / 2, 1 << 19, 400_000, 700_000, 1_000_000];
    let text = "first line\n";
    let at = 0;
    for (const s of spots) {
      text += filler.slice(at, at + s) + " " + key + " ";
      at += s;
    }
    write(root, "long.txt", text + "\n");
    const r = await scanPaths(["long.txt"], { prefix: "kp", cwd: root });
    const expected: string[] = [];
    for (let i = text.indexOf(key); i !== -1; i = text.indexOf(key, i + 1)) expected.push(`long.txt:2:${i - text.indexOf("\n")}`);
    expect(expected.length).toBe(spots.length);
    expect(places(r)).toEqual(expected);
  });

  it("does not report a key glued to more letters, digits or underscores (it is not a whole key)", async () => {
    const root = tempDir();
    const key = generateKey("kp", "live");
    write(root, "glued.txt", `${key}0\nA${key}\n${key}_x\n"${key}"\n`);
    const r = await scanPaths(["."], { prefix: "kp", cwd: root });
    expect(places(r)).toEqual(["glued.txt:4:2"]);
  });

  it("finds keys of the configured prefix only", async () => {
    const root = tempDir();
    const acme = generateKey("acme", "live");
    write(root, "a.txt", `${generateKey("kp", "live")}\n${acme}\n`);
    const r = await scanPaths(["."], { prefix: "acme", cwd: root });
    expect(places(r)).toEqual(["a.txt:2:1"]);
    expect(r.finds[0]!.display.startsWith("acme_live_")).toBe(true);
  });

  it("reports a path that does not exist as unreadable and goes on", async () => {
    const root = tempDir();
    write(root, "a.txt", generateKey("kp", "test"));
    const r = await scanPaths(["missing.txt", "a.txt"], { prefix: "kp", cwd: root });
    expect(r.unreadable).toEqual([{ path: "missing.txt", reason: "no such file or directory" }]);
    expect(places(r)).toEqual(["a.txt:1:1"]);
  });
});

describe("scanPaths in a git work tree", () => {
  it("reads what git would: tracked and untracked files, not those .gitignore or .git/info/exclude ignore; .git never", async () => {
    const root = tempDir();
    git(root, ["init", "-q"]);
    const keys = Object.fromEntries(["tracked", "untracked", "ignored", "excluded", "forced", "description", "module"].map((n) => [n, generateKey("kp", "live")]));
    write(root, ".gitignore", "*.env\n");
    write(root, "tracked.txt", keys.tracked!);
    write(root, "forced.env", keys.forced!);
    write(root, "secret.env", keys.ignored!);
    write(root, "untracked.txt", keys.untracked!);
    write(root, "excluded.txt", keys.excluded!);
    write(root, "node_modules/dep/index.js", keys.module!);
    write(root, ".git/info/exclude", "excluded.txt\nnode_modules/\n");
    write(root, ".git/description", keys.description!);
    git(root, ["add", "tracked.txt", ".gitignore"]);
    // Tracked although ignored (git add -f): the commit holds it, so it is read.
    git(root, ["add", "-f", "forced.env", "node_modules/dep/index.js"]);
    const r = await scanPaths(["."], { prefix: "kp", cwd: root });
    expect(places(r)).toEqual(["forced.env:1:1", "tracked.txt:1:1", "untracked.txt:1:1"]);

    const all = await scanPaths(["."], { prefix: "kp", cwd: root, noIgnore: true });
    expect(places(all)).toEqual(["excluded.txt:1:1", "forced.env:1:1", "secret.env:1:1", "tracked.txt:1:1", "untracked.txt:1:1"]);
  });

  it("lists a subdirectory's files relative to where the scan runs", async () => {
    const root = tempDir();
    git(root, ["init", "-q"]);
    write(root, "app/.gitignore", "tmp/\n");
    write(root, "app/src/a.ts", generateKey("kp", "test"));
    write(root, "app/tmp/b.ts", generateKey("kp", "test"));
    write(root, "other/c.ts", generateKey("kp", "test"));
    expect(places(await scanPaths(["app"], { prefix: "kp", cwd: root }))).toEqual(["app/src/a.ts:1:1"]);
    expect(places(await scanPaths(["src"], { prefix: "kp", cwd: join(root, "app") }))).toEqual(["src/a.ts:1:1"]);
  });
});

/**
 * A history: c1 commits a live key in config.js, c2 removes it; c3 adds a test key deep in
 * the tree, which c4 (touching another file) still holds; a corrupted key and a binary file
 * with a key are committed too. Commit dates are set so that their order is certain.
 */
function plantHistory(root: string) {
  git(root, ["init", "-q"]);
  const removed = generateKey("kp", "live");
  const kept = generateKey("kp", "test");
  const binary = generateKey("kp", "live");
  write(root, "config.js", `module.exports = {\n  key: "${removed}",\n};\n`);
  write(root, "README.md", `fake: ${corrupt(removed)}\n`);
  write(root, "logo.bin", new Uint8Array([0, 1, 2, ...new TextEncoder().encode(binary)]));
  git(root, ["add", "."]);
  git(root, ["commit", "-qm", "first"], 1_700_000_000);
  const c1 = git(root, ["rev-parse", "HEAD"]);
  write(root, "config.js", "module.exports = {\n  key: process.env.KEY,\n};\n");
  git(root, ["commit", "-qam", "take the key out"], 1_700_000_100);
  const c2 = git(root, ["rev-parse", "HEAD"]);
  write(root, "deep/er/notes.txt", `sandbox: ${kept}\n`);
  git(root, ["add", "."]);
  git(root, ["commit", "-qm", "notes"], 1_700_000_200);
  const c3 = git(root, ["rev-parse", "HEAD"]);
  write(root, "README.md", "nothing here\n");
  git(root, ["commit", "-qam", "readme"], 1_700_000_300);
  const c4 = git(root, ["rev-parse", "HEAD"]);
  return { removed, kept, binary, c1, c2, c3, c4 };
}

describe("scanHistory", () => {
  it("finds a key removed in a later commit, naming the commit that holds it; the working tree scan does not", async () => {
    const root = tempDir();
    const h = plantHistory(root);
    const r = await scanHistory(".", { prefix: "kp", cwd: root });
    expect(r.finds.map((f) => ({ at: `${f.path}:${f.line}:${f.column}`, token: f.token, commits: f.commits }))).toEqual([
      { at: "config.js:2:9", token: h.removed, commits: [h.c1] },
      { at: "deep/er/notes.txt:1:10", token: h.kept, commits: [h.c3, h.c4] },
    ]);
    expect(r.binary).toBe(1);
    expect(r.root).toBe(root);
    const tree = await scanPaths(["."], { prefix: "kp", cwd: root });
    expect(tree.finds.map((f) => f.token)).toEqual([h.kept]);
  });

  it("reads the history from a subdirectory of the repository, with paths from its top", async () => {
    const root = tempDir();
    const h = plantHistory(root);
    const r = await scanHistory("deep", { prefix: "kp", cwd: root });
    expect(r.finds.map((f) => f.path)).toEqual(["config.js", "deep/er/notes.txt"]);
    expect(r.finds[0]!.commits).toEqual([h.c1]);
  });

  it("names every path and branch a blob is committed under", async () => {
    const root = tempDir();
    git(root, ["init", "-q"]);
    const key = generateKey("kp", "live");
    write(root, "a.txt", key);
    git(root, ["add", "."]);
    git(root, ["commit", "-qm", "a"], 1_700_000_000);
    const c1 = git(root, ["rev-parse", "HEAD"]);
    git(root, ["checkout", "-qb", "side"]);
    git(root, ["mv", "a.txt", "b.txt"]);
    git(root, ["commit", "-qm", "moved"], 1_700_000_100);
    const c2 = git(root, ["rev-parse", "HEAD"]);
    git(root, ["checkout", "-q", "main"]);
    const r = await scanHistory(".", { prefix: "kp", cwd: root });
    expect(r.finds.map((f) => [f.path, f.commits])).toEqual([
      ["a.txt", [c1]],
      ["b.txt", [c2]],
    ]);
    expect(new Set(r.finds.map((f) => f.blob)).size).toBe(1);
  });

  it("finds nothing in a repository without commits, and refuses a folder that is no repository", async () => {
    const root = tempDir();
    git(root, ["init", "-q"]);
    write(root, "a.txt", generateKey("kp", "live"));
    expect((await scanHistory(".", { prefix: "kp", cwd: root })).finds).toEqual([]);
    const plain = tempDir();
    await expect(scanHistory(".", { prefix: "kp", cwd: plain })).rejects.toBeInstanceOf(ScanError);
  });
});

describe("scan output", () => {
  it("prints a find as path:line:col and the masked key, with its commits for history, never the key", async () => {
    const root = tempDir();
    const h = plantHistory(root);
    const r = await scanHistory(".", { prefix: "kp", cwd: root });
    const lines = r.finds.map(findLine);
    expect(lines).toEqual([
      `config.js:2:9  kp_live_${h.removed.slice(8, 12)}…${h.removed.slice(-4)}  in commit ${h.c1.slice(0, 12)}`,
      `deep/er/notes.txt:1:10  kp_test_${h.kept.slice(8, 12)}…${h.kept.slice(-4)}  in commits ${h.c3.slice(0, 12)}, ${h.c4.slice(0, 12)}`,
    ]);
    const json = JSON.stringify(r.finds.map(findJson));
    for (const key of [h.removed, h.kept]) {
      expect(lines.join("\n")).not.toContain(key);
      expect(json).not.toContain(key);
    }
    expect(findJson(r.finds[0]!)).toEqual({ path: "config.js", line: 2, column: 9, environment: "live", key: r.finds[0]!.display, hash: hashKey(h.removed), blob: r.finds[0]!.blob, commits: [h.c1] });
  });
});

describe("SARIF", () => {
  // The SARIF 2.1.0 schema as shipped by @microsoft/jest-sarif (its 2.1.0-rtm.5 text, a
  // JSON Schema draft-04 document). Its `language` pattern has a stray "]" that only a
  // non-Unicode RegExp accepts, hence unicodeRegExp: false.
  const ajv = new Ajv04({ allErrors: true, strict: false, unicodeRegExp: false });
  addFormats(ajv);
  const validate = ajv.compile(schema);
  const expectValid = (log: unknown) => {
    const ok = validate(log);
    if (!ok) console.error(JSON.stringify(validate.errors, null, 2));
    expect(ok).toBe(true);
  };

  it("is valid SARIF 2.1.0 with a rule per key environment, 1-based regions, relative URIs and fingerprints from the key's hash", async () => {
    const root = tempDir();
    const t = plantTree(root);
    write(root, "dir with space/ünï code.txt", generateKey("kp", "live"));
    const r = await scanPaths(["."], { prefix: "kp", cwd: root });
    const log = sarifLog(r, { prefix: "kp", informationUri: "https://keys.example.com/docs" });
    expectValid(log);
    const run = log.runs[0]!;
    expect(run.tool.driver.name).toBe("keyport");
    expect(run.tool.driver.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(run.tool.driver.informationUri).toBe("https://keys.example.com/docs");
    expect(run.tool.driver.rules!.map((x) => x.id)).toEqual([SARIF_RULE.live, SARIF_RULE.test]);
    expect(run.originalUriBaseIds!["%SRCROOT%"]!.uri).toBe(`file://${root}/`);
    expect(run.results!.length).toBe(r.finds.length);
    for (const [i, result] of run.results!.entries()) {
      const f = r.finds[i]!;
      const location = result.locations![0]!.physicalLocation!;
      expect(result.ruleId).toBe(SARIF_RULE[f.environment]);
      expect(run.tool.driver.rules![result.ruleIndex!]!.id).toBe(result.ruleId!);
      expect(location.region!.startLine).toBe(f.line);
      expect(location.region!.startLine).toBeGreaterThanOrEqual(1);
      expect(location.region!.startColumn).toBe(f.column);
      expect(location.artifactLocation!.uriBaseId).toBe("%SRCROOT%");
      expect(decodeURIComponent(location.artifactLocation!.uri!)).toBe(f.path);
      expect(location.artifactLocation!.uri!.startsWith("/")).toBe(false);
      expect(Object.values(result.partialFingerprints!)[0]).toBe(Bun.SHA256.hash(`${f.hash}\0${f.path}`, "hex"));
    }
    expect(run.results!.map((x) => x.locations![0]!.physicalLocation!.artifactLocation!.uri)).toContain("dir%20with%20space/%C3%BCn%C3%AF%20code.txt");
    const text = JSON.stringify(log);
    for (const f of r.finds) expect(text).not.toContain(f.token);
    expect(text).not.toContain(t.live);
  });

  it("is valid for history finds too, naming their commits, and with a --check status", async () => {
    const root = tempDir();
    const h = plantHistory(root);
    const r = await scanHistory(".", { prefix: "kp", cwd: root });
    const log = sarifLog(r, { prefix: "kp", informationUri: "http://localhost:3000/docs", status: (f: Find) => (f.environment === "live" ? "revoked" : undefined) });
    expectValid(log);
    const [first, second] = log.runs[0]!.results!;
    expect(first!.properties).toEqual({ commits: [h.c1], blob: r.finds[0]!.blob, status: "revoked" });
    expect(first!.message.text).toContain(h.c1.slice(0, 12));
    expect(second!.properties!.status).toBeUndefined();
    expect(JSON.stringify(log)).not.toContain(h.removed);
  });

  it("the schema refuses what GitHub would: a startLine of 0, a missing message", () => {
    const log = sarifLog(
      { root: "/tmp", files: 1, bytes: 1, binary: 0, unreadable: [], finds: [{ path: "a.txt", line: 1, column: 1, environment: "live", display: "kp_live_AbCd…wxyz", hash: "0".repeat(64), token: "t" }] },
      { prefix: "kp", informationUri: "http://localhost:3000/docs" },
    );
    expectValid(log);
    const broken = structuredClone(log);
    broken.runs[0]!.results![0]!.locations![0]!.physicalLocation!.region!.startLine = 0;
    expect(validate(broken)).toBe(false);
    const noMessage = structuredClone(log) as unknown as { runs: { results: Record<string, unknown>[] }[] };
    delete noMessage.runs[0]!.results[0]!.message;
    expect(validate(noMessage)).toBe(false);
  });
});

describe("rules for other scanners", () => {
  it("gives gitleaks a TOML rule with the configured prefix, its pattern and keywords", () => {
    const toml = gitleaksRule("acme");
    const parsed = Bun.TOML.parse(toml) as { rules: { id: string; description: string; regex: string; keywords: string[] }[] };
    expect(parsed.rules.length).toBe(1);
    const rule = parsed.rules[0]!;
    expect(rule.id).toBe("keyport-api-key");
    expect(rule.keywords).toEqual(["acme_live_", "acme_test_"]);
    const re = new RegExp(rule.regex);
    for (const env of ["live", "test"] as Environment[]) expect(re.test(`token: ${generateKey("acme", env)}\n`)).toBe(true);
    expect(re.test(generateKey("kp", "live"))).toBe(false);
  });

  it("gives secretlint a rule module that reports our keys with valid checksums, masked", async () => {
    const root = tempDir();
    write(root, "secretlint-rule-keyport.mjs", secretlintRule("kp"));
    const { creator } = (await import(join(root, "secretlint-rule-keyport.mjs"))) as { creator: SecretLintRuleCreator };
    const valid = Array.from({ length: 100 }, (_, i) => generateKey("kp", i % 2 ? "test" : "live"));
    const content = [...valid, ...valid.map(corrupt), `sk_live_${valid[0]!.slice(8)}`].join("\n");
    const result = await lintSource({
      source: { filePath: join(root, "a.txt"), content, contentType: "text" },
      options: { config: { rules: [{ id: "secretlint-rule-keyport", rule: creator }] } },
    });
    expect(result.messages.length).toBe(valid.length);
    for (const [i, message] of result.messages.entries()) {
      const key = valid[i]!;
      expect(message.ruleId).toBe("secretlint-rule-keyport");
      expect(message.message).toBe(`found a Keyport ${i % 2 ? "test" : "live"} key: ${key.slice(0, 12)}…${key.slice(-4)}`);
      expect(message.range).toEqual([content.indexOf(key), content.indexOf(key) + key.length]);
      expect(JSON.stringify(message)).not.toContain(key);
    }
  });

  it("makes a pre-commit hook that runs this keyport over the staged files with the configured prefix", () => {
    const hook = preCommitHook("acme", ["/opt/it's here/keyport"]);
    expect(hook.startsWith("#!/bin/sh\n")).toBe(true);
    expect(hook).toContain("KEY_PREFIX=${KEY_PREFIX:-acme}");
    expect(hook).toContain("git diff --cached --name-only --diff-filter=ACM -z");
    expect(hook).toContain(`'/opt/it'\\''s here/keyport' "$@"`);
    const syntax = Bun.spawnSync(["sh", "-n", "-c", hook]);
    expect(syntax.exitCode).toBe(0);
  });
});
