import { closeSync, lstatSync, openSync, readdirSync, readFileSync, readSync } from "node:fs";
import { join, relative, resolve, sep } from "node:path";
import ignore, { type Ignore } from "ignore";
import { displayKey, hashKey, keyLength, keyParts, keyPattern, parseKey, type Environment } from "../keys/format.ts";

/**
 * `keyport scan`: finds our keys in files or in a repository's history, offline. Only the
 * configured prefix is needed — no database, no other configuration — so it runs in CI, in
 * a pre-commit hook and on a laptop alike. A string of the key pattern counts only when its
 * CRC32 checksum is valid, so look-alikes and other vendors' keys are never reported.
 */

/** One key found. `token` is the key itself, for `--check`/`--report`: never printed. */
export interface Find {
  /** Relative to the scan's `root` (the working directory, or the repository's top for history). */
  path: string;
  /** 1-based. */
  line: number;
  /** 1-based, in UTF-16 code units (SARIF's default column kind). */
  column: number;
  environment: Environment;
  /** `kp_live_AbCd…wxyz`. */
  display: string;
  /** SHA-256 hex of the key, as `api_keys.hash` holds it. */
  hash: string;
  token: string;
  /** History only: the blob, and the commits whose tree holds it at `path`, oldest first. */
  blob?: string;
  commits?: string[];
}

export interface ScanStats {
  /** Files (or blobs) read. */
  files: number;
  bytes: number;
  /** Skipped as binary: a NUL byte in their first 8 KB. */
  binary: number;
  unreadable: { path: string; reason: string }[];
}

export interface ScanResult extends ScanStats {
  /** The directory the finds' paths are relative to (absolute). */
  root: string;
  finds: Find[];
}

export interface ScanOptions {
  /** KEY_PREFIX. */
  prefix: string;
  /** What paths are resolved against and printed relative to; the process's by default. */
  cwd?: string;
  /** Read ignored files too (`--no-ignore`). `.git` and `node_modules` are skipped all the same. */
  noIgnore?: boolean;
  /** Called after every file and every MiB read (the CLI's progress line throttles it). */
  onProgress?: (stats: Readonly<ScanStats>) => void;
}

/** A scan that cannot start: a path that is no repository for `--git`, git missing. */
export class ScanError extends Error {
  override name = "ScanError";
}

/** A NUL byte in the first 8 KB makes a file binary (git's own test, over its first 8,000 bytes). */
const BINARY_PROBE = 8192;
/** Files are read through one buffer of this size: a 1 GB file is never in memory whole. */
const CHUNK = 1 << 20;
const ALWAYS_SKIPPED = new Set([".git", "node_modules"]);

const EMPTY = Buffer.alloc(0);
const isAlnum = (b: number | undefined) => b !== undefined && ((b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a));
const utf16Length = (bytes: Uint8Array) => (bytes.length ? new TextDecoder().decode(bytes).length : 0);

/**
 * Finds keys in a stream of bytes, chunk by chunk, without decoding the text: the bytes are
 * searched for the literal `<prefix>_` (a native memory search), and only around a hit is
 * the key pattern run — on the few bytes there, read as Latin-1, which for the ASCII a key
 * is made of reads as UTF-8 does, and where every other byte is a non-word character to
 * `\b`, as every non-ASCII character is. Most files have no hit: nothing is decoded.
 *
 * A key may straddle two chunks: the tail that could still begin one (a key's length, plus
 * the byte before it that `\b` looks at) is carried into the next chunk, and a hit is judged
 * only once the byte after it has arrived. Lines are counted up to a hit, and over a chunk
 * before it is dropped; a column is the UTF-16 length of the line before the key, plus one.
 */
class KeySearch {
  readonly matches: { token: string; env: Environment; line: number; column: number }[] = [];
  binary = false;
  private head: Uint8Array[] | null = [];
  private headLength = 0;
  /** The carried tail of what came before. */
  private window: Buffer = EMPTY;
  /** Leading bytes of `window` already judged (kept as context for `\b`). */
  private judged = 0;
  /** Absolute offset of `window[0]`. */
  private base = 0;
  private line = 1;
  /** Absolute offset of the current line's first byte. */
  private lineStart = 0;
  /** Absolute offset up to which newlines are counted. */
  private counted = 0;
  /** UTF-16 code units from `lineStart` to `base`, when the line began before the window. */
  private unitsToBase = 0;
  private readonly needle: Buffer;

  constructor(
    private readonly pattern: RegExp,
    private readonly prefix: string,
    private readonly length: number,
  ) {
    this.needle = Buffer.from(`${prefix}_`);
  }

  /** `bytes` may be reused by the caller once this returns. */
  push(bytes: Uint8Array): void {
    if (this.binary) return;
    if (this.head) {
      this.head.push(bytes.slice());
      this.headLength += bytes.length;
      if (this.headLength >= BINARY_PROBE) this.probe();
      return;
    }
    this.search(bytes, false);
  }

  end(): void {
    if (this.head) this.probe();
    if (!this.binary) this.search(EMPTY, true);
  }

  private probe(): void {
    const head = this.head!;
    this.head = null;
    let seen = 0;
    for (const part of head) {
      if (part.subarray(0, Math.max(0, BINARY_PROBE - seen)).includes(0)) {
        this.binary = true;
        return;
      }
      seen += part.length;
      if (seen >= BINARY_PROBE) break;
    }
    for (const part of head) this.search(part, false);
  }

  private search(more: Uint8Array, final: boolean): void {
    const w = this.window.length ? Buffer.concat([this.window, more]) : Buffer.from(more.buffer, more.byteOffset, more.length);
    // A hit before `end` can be judged now: the byte after the key is here.
    const end = final ? w.length : w.length - this.length - 1;
    if (end <= this.judged) {
      this.window = Buffer.from(w);
      return;
    }
    const re = this.pattern;
    const p = this.needle.length;
    for (let i = w.indexOf(this.needle, this.judged); i !== -1 && i < end; i = w.indexOf(this.needle, i + 1)) {
      // "live_"/"test_" and a word character where the key would end: most look-alikes stop here.
      if (w[i + p + 4] !== 0x5f || (w[i + p] !== 0x6c && w[i + p] !== 0x74) || !isAlnum(w[i + this.length - 1])) continue;
      const from = i > 0 ? i - 1 : 0;
      const around = w.toString("latin1", from, Math.min(w.length, i + this.length + 1));
      re.lastIndex = i - from;
      const m = re.exec(around);
      if (!m || m.index !== i - from) continue;
      const parsed = parseKey(m[0], this.prefix);
      if (!parsed.ok) continue;
      this.countLines(w, this.base + i);
      const units = this.lineStart >= this.base ? utf16Length(w.subarray(this.lineStart - this.base, i)) : this.unitsToBase + utf16Length(w.subarray(0, i));
      this.matches.push({ token: m[0], env: parsed.env, line: this.line, column: units + 1 });
    }
    if (final) return;
    // Dropped up to `keep`, never inside a UTF-8 sequence, so that what is dropped decodes whole.
    let keep = end - 1;
    while (keep > 0 && (w[keep]! & 0xc0) === 0x80) keep--;
    this.countLines(w, this.base + keep);
    const lineFrom = this.lineStart - this.base;
    this.unitsToBase = lineFrom >= 0 ? utf16Length(w.subarray(lineFrom, keep)) : this.unitsToBase + utf16Length(w.subarray(0, keep));
    this.window = Buffer.from(w.subarray(keep));
    this.base += keep;
    this.judged = end - keep;
  }

  private countLines(w: Buffer, upTo: number): void {
    for (let i = w.indexOf(0x0a, this.counted - this.base); i !== -1 && this.base + i < upTo; i = w.indexOf(0x0a, i + 1)) {
      this.line++;
      this.lineStart = this.base + i + 1;
    }
    this.counted = upTo;
  }
}

function newSearch(prefix: string, pattern: RegExp): KeySearch {
  return new KeySearch(pattern, prefix, keyLength(prefix));
}

function findOf(prefix: string, path: string, m: KeySearch["matches"][number]): Find {
  const { start, end } = keyParts(m.token, prefix);
  return { path, line: m.line, column: m.column, environment: m.env, display: displayKey(prefix, m.env, start, end), hash: hashKey(m.token), token: m.token };
}

const byPlace = (a: Find, b: Find) => (a.path < b.path ? -1 : a.path > b.path ? 1 : a.line - b.line || a.column - b.column);

const emptyStats = (): ScanStats => ({ files: 0, bytes: 0, binary: 0, unreadable: [] });

const REASONS: Record<string, string> = {
  ENOENT: "no such file or directory",
  ENOTDIR: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "permission denied",
  ELOOP: "too many symbolic links",
};
const reasonOf = (err: unknown) => REASONS[(err as NodeJS.ErrnoException).code ?? ""] ?? (err as Error).message;

/** Runs git in `cwd`; undefined when git is not installed. */
async function git(cwd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string } | undefined> {
  if (!Bun.which("git")) return undefined;
  const proc = Bun.spawn(["git", ...args], { cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { code, stdout, stderr };
}

/** `dir` is inside a git work tree (and git is installed): git knows what it ignores there. */
async function insideWorkTree(dir: string): Promise<boolean> {
  const r = await git(dir, ["rev-parse", "--is-inside-work-tree"]);
  return r?.code === 0 && r.stdout.trim() === "true";
}

const skippedPath = (rel: string) => rel.split("/").some((segment) => ALWAYS_SKIPPED.has(segment));

/**
 * The files under `dir` as git sees them: tracked ones and untracked ones that no
 * .gitignore, .git/info/exclude or global excludes file ignores — git's own semantics.
 */
async function gitFiles(dir: string): Promise<string[]> {
  const r = await git(dir, ["ls-files", "-z", "--cached", "--others", "--exclude-standard"]);
  if (!r || r.code !== 0) throw new ScanError(`git ls-files failed in ${dir}: ${r?.stderr.trim() || "git is not installed"}`);
  const out = new Set<string>();
  for (const rel of r.stdout.split("\0")) {
    // An untracked nested repository is listed as "dir/": it is not this repository's.
    if (rel && !rel.endsWith("/") && !skippedPath(rel)) out.add(join(dir, rel));
  }
  return [...out];
}

interface IgnoreLayer {
  /** The directory of the .gitignore, relative to the walk's top ("" for the top). */
  base: string;
  rules: Ignore;
}

/** `rel` (a directory's ends with "/") is ignored: the deepest .gitignore with a matching rule decides, as in git. */
function ignoredBy(layers: IgnoreLayer[], rel: string): boolean {
  for (let i = layers.length - 1; i >= 0; i--) {
    const { base, rules } = layers[i]!;
    const r = rules.test(base ? rel.slice(base.length + 1) : rel);
    if (r.ignored) return true;
    if (r.unignored) return false;
  }
  return false;
}

/**
 * The files under `top` outside any git work tree, honouring the .gitignore files found on
 * the way (parsed by `ignore`, the library eslint and others use for git's rules) unless
 * `rules` is false. Symbolic links are not followed (git stores the link, not its target),
 * and an ignored directory is not entered, as git does not.
 */
function walkFiles(top: string, rules: boolean, stats: ScanStats, cwd: string): string[] {
  const out: string[] = [];
  const visit = (dir: string, rel: string, layers: IgnoreLayer[]) => {
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch (err) {
      stats.unreadable.push({ path: relative(cwd, dir) || ".", reason: reasonOf(err) });
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : 1));
    if (rules && entries.some((e) => e.name === ".gitignore" && e.isFile())) {
      try {
        // Case-sensitive, as git is where core.ignoreCase is false (every case-sensitive file system).
        layers = [...layers, { base: rel, rules: ignore({ ignorecase: false }).add(readFileSync(join(dir, ".gitignore"), "utf8")) }];
      } catch (err) {
        stats.unreadable.push({ path: relative(cwd, join(dir, ".gitignore")), reason: reasonOf(err) });
      }
    }
    for (const e of entries) {
      if (ALWAYS_SKIPPED.has(e.name)) continue;
      const childRel = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (!rules || !ignoredBy(layers, `${childRel}/`)) visit(join(dir, e.name), childRel, layers);
      } else if (e.isFile() && (!rules || !ignoredBy(layers, childRel))) {
        out.push(join(dir, e.name));
      }
    }
  };
  visit(top, "", []);
  return out;
}

/**
 * Reads a file through `buffer`, up to the size it had when listed. Synchronous: a tree of
 * small files costs a few system calls each, where every promise-based call would add a
 * thread-pool round trip (measured: half the time of a 2,000-file tree).
 */
function scanFile(abs: string, size: number, buffer: Uint8Array, search: KeySearch, stats: ScanStats, progress: () => void): void {
  const fd = openSync(abs, "r");
  try {
    let read = 0;
    let sinceProgress = 0;
    while (read < size) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      read += n;
      search.push(buffer.subarray(0, n));
      stats.bytes += n;
      if (search.binary) break;
      if ((sinceProgress += n) >= CHUNK) {
        sinceProgress = 0;
        progress();
      }
    }
    search.end();
  } finally {
    closeSync(fd);
  }
}

/**
 * Finds keys in files and directories. A directory is walked as git sees it when it is
 * inside a work tree (tracked and untracked files, not ignored ones), else honouring the
 * .gitignore files on the way; `noIgnore` reads everything. `.git` and `node_modules` are
 * always skipped, and so is a binary file. A file named explicitly is read even if ignored.
 *
 * @example
 * const { finds } = await scanPaths(["."], { prefix: config.keyPrefix });
 * for (const f of finds) console.log(`${f.path}:${f.line}:${f.column}  ${f.display}`);
 */
export async function scanPaths(paths: string[], options: ScanOptions): Promise<ScanResult> {
  const cwd = resolve(options.cwd ?? process.cwd());
  const stats = emptyStats();
  const progress = () => options.onProgress?.(stats);
  const files = new Set<string>();
  for (const p of paths.length ? paths : ["."]) {
    const abs = resolve(cwd, p);
    let info;
    try {
      info = lstatSync(abs);
    } catch (err) {
      stats.unreadable.push({ path: p, reason: reasonOf(err) });
      continue;
    }
    if (!info.isDirectory()) {
      if (info.isFile()) files.add(abs);
      continue;
    }
    const listed = !options.noIgnore && (await insideWorkTree(abs)) ? await gitFiles(abs) : walkFiles(abs, !options.noIgnore, stats, cwd);
    for (const f of listed) files.add(f);
  }

  const pattern = keyPattern(options.prefix);
  const buffer = new Uint8Array(CHUNK);
  const finds: Find[] = [];
  for (const abs of files) {
    const rel = relative(cwd, abs).split(sep).join("/");
    try {
      // git lists symbolic links and submodules too: only regular files are read.
      const info = lstatSync(abs);
      if (!info.isFile()) continue;
      const search = newSearch(options.prefix, pattern);
      scanFile(abs, info.size, buffer, search, stats, progress);
      stats.files++;
      if (search.binary) stats.binary++;
      for (const m of search.matches) finds.push(findOf(options.prefix, rel, m));
    } catch (err) {
      stats.unreadable.push({ path: rel, reason: reasonOf(err) });
    }
    progress();
  }
  finds.sort(byPlace);
  return { ...stats, root: cwd, finds };
}

interface CommitInfo {
  sha: string;
  tree: string;
  time: number;
  order: number;
}

const HEADER = "%(objectname) %(objecttype) %(objectsize) %(rest)";

function concatBytes(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex");

/** A tree object's entries: `<mode> <name>\0<binary object id>` each. */
function* treeEntries(raw: Uint8Array, idBytes: number): Generator<{ mode: string; name: string; id: string }> {
  const text = new TextDecoder();
  for (let i = 0; i < raw.length; ) {
    const space = raw.indexOf(0x20, i);
    const nul = raw.indexOf(0, space);
    if (space < 0 || nul < 0) return;
    const mode = text.decode(raw.subarray(i, space));
    const name = text.decode(raw.subarray(space + 1, nul));
    yield { mode, name, id: hex(raw.subarray(nul + 1, nul + 1 + idBytes)) };
    i = nul + 1 + idBytes;
  }
}

/**
 * Finds keys in every blob of a repository's history, each blob read once: `git rev-list
 * --objects --all` piped to `git cat-file --batch` (not `git log -p`, which reads a blob
 * again in every diff it appears in). Commits and trees come through the same pipe; only
 * when a blob holds a key are the trees walked (each tree once) to name the commits whose
 * tree holds that blob, and at which path.
 */
export async function scanHistory(repo: string, options: Omit<ScanOptions, "noIgnore">): Promise<ScanResult> {
  const cwd = resolve(options.cwd ?? process.cwd());
  const dir = resolve(cwd, repo);
  const info = lstatSync(dir, { throwIfNoEntry: false });
  if (!info?.isDirectory()) throw new ScanError(`${repo} is not a directory`);
  const check = await git(dir, ["rev-parse", "--git-dir"]);
  if (!check) throw new ScanError("--git needs git, and git is not installed");
  if (check.code !== 0) throw new ScanError(`${repo} is not in a git repository`);
  const top = await git(dir, ["rev-parse", "--show-toplevel"]);
  const root = top?.code === 0 && top.stdout.trim() ? top.stdout.trim() : dir;

  const stats = emptyStats();
  const pattern = keyPattern(options.prefix);
  const list = Bun.spawn(["git", "rev-list", "--objects", "--all"], { cwd: root, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const cat = Bun.spawn(["git", "cat-file", `--batch=${HEADER}`], { cwd: root, stdin: list.stdout, stdout: "pipe", stderr: "pipe" });

  const trees = new Map<string, Uint8Array>();
  const commits: CommitInfo[] = [];
  const found = new Map<string, { name: string; matches: KeySearch["matches"] }>();
  let idBytes = 20;

  type Body = { remaining: number; push(b: Uint8Array): void; done(): void };
  const bodyOf = (id: string, type: string, size: number, rest: string): Body => {
    if (type === "blob") {
      const search = newSearch(options.prefix, pattern);
      stats.files++;
      stats.bytes += size;
      let sinceProgress = 0;
      return {
        remaining: size,
        push(b) {
          search.push(b);
          if ((sinceProgress += b.length) >= CHUNK) {
            sinceProgress = 0;
            options.onProgress?.(stats);
          }
        },
        done() {
          search.end();
          if (search.binary) stats.binary++;
          if (search.matches.length) found.set(id, { name: rest, matches: search.matches });
          options.onProgress?.(stats);
        },
      };
    }
    const parts: Uint8Array[] = [];
    return {
      remaining: size,
      push: (b) => void parts.push(b.slice()),
      done() {
        if (type === "tree") trees.set(id, concatBytes(parts));
        else if (type === "commit") {
          const text = new TextDecoder().decode(concatBytes(parts));
          const tree = /^tree ([0-9a-f]+)$/m.exec(text)?.[1];
          const time = Number(/^committer .* (\d+) [+-]\d{4}$/m.exec(text)?.[1] ?? 0);
          if (tree) commits.push({ sha: id, tree, time, order: commits.length });
        }
      },
    };
  };

  let pending: Uint8Array | null = null;
  let body: Body | null = null;
  let newline = false;
  const reader = cat.stdout.getReader();
  for (let next = await reader.read(); !next.done; next = await reader.read()) {
    const chunk = next.value;
    let i = 0;
    for (;;) {
      if (body) {
        const take = Math.min(body.remaining, chunk.length - i);
        if (take > 0) body.push(chunk.subarray(i, i + take));
        i += take;
        body.remaining -= take;
        if (body.remaining > 0) break;
        body.done();
        body = null;
        newline = true;
      }
      if (newline) {
        // The newline cat-file writes after every object's contents.
        if (i >= chunk.length) break;
        i++;
        newline = false;
      }
      const nl = chunk.indexOf(0x0a, i);
      if (nl < 0) {
        pending = pending ? concatBytes([pending, chunk.subarray(i)]) : chunk.slice(i);
        break;
      }
      const header = new TextDecoder().decode(pending ? concatBytes([pending, chunk.subarray(i, nl)]) : chunk.subarray(i, nl));
      pending = null;
      i = nl + 1;
      const [id = "", type = "", size = "", ...rest] = header.split(" ");
      // "<id> missing": an object a shallow or partial clone does not have.
      if (type === "missing" || type === "ambiguous" || size === "") continue;
      idBytes = id.length / 2;
      body = bodyOf(id, type, Number(size), rest.join(" "));
    }
  }
  const [catCode, listCode, listError] = await Promise.all([cat.exited, list.exited, new Response(list.stderr).text()]);
  if (listCode !== 0 || catCode !== 0) throw new ScanError(`reading the history of ${repo} failed: ${listError.trim() || `git cat-file exited ${catCode}`}`);

  // Which commits hold each found blob, and where: every tree walked once (memoized).
  const none: { path: string; blob: string }[] = [];
  const memo = new Map<string, { path: string; blob: string }[]>();
  const holds = (tree: string): { path: string; blob: string }[] => {
    const known = memo.get(tree);
    if (known) return known;
    const raw = trees.get(tree);
    let out = none;
    if (raw) {
      for (const e of treeEntries(raw, idBytes)) {
        if (e.mode === "40000") {
          const below = holds(e.id);
          if (below.length) out = [...out, ...below.map((h) => ({ path: `${e.name}/${h.path}`, blob: h.blob }))];
        } else if (e.mode !== "160000" && found.has(e.id)) {
          out = [...out, { path: e.name, blob: e.id }];
        }
      }
    }
    memo.set(tree, out);
    return out;
  };
  const places = new Map<string, { blob: string; path: string; commits: string[] }>();
  if (found.size) {
    commits.sort((a, b) => a.time - b.time || b.order - a.order);
    for (const c of commits) {
      for (const h of holds(c.tree)) {
        const key = `${h.blob}\0${h.path}`;
        let place = places.get(key);
        if (!place) places.set(key, (place = { blob: h.blob, path: h.path, commits: [] }));
        place.commits.push(c.sha);
      }
    }
  }
  const finds: Find[] = [];
  const placed = new Set<string>();
  for (const place of places.values()) {
    placed.add(place.blob);
    for (const m of found.get(place.blob)!.matches) finds.push({ ...findOf(options.prefix, place.path, m), blob: place.blob, commits: place.commits });
  }
  // A blob no commit holds (a tag pointing at it): its path as rev-list named it.
  for (const [blob, { name, matches }] of found) {
    if (!placed.has(blob)) for (const m of matches) finds.push({ ...findOf(options.prefix, name || blob, m), blob, commits: [] });
  }
  finds.sort(byPlace);
  return { ...stats, root, finds };
}

/** `src/app.ts:12:7  kp_live_AbCd…wxyz`, and for history the commits (the first few, abbreviated). */
export function findLine(f: Find): string {
  const at = `${f.path}:${f.line}:${f.column}  ${f.display}`;
  if (!f.commits) return at;
  if (f.commits.length === 0) return `${at}  (in no commit)`;
  const shown = f.commits.slice(0, 3).map((c) => c.slice(0, 12));
  return `${at}  in commit${f.commits.length > 1 ? "s" : ""} ${shown.join(", ")}${f.commits.length > 3 ? ` and ${f.commits.length - 3} more` : ""}`;
}

/** A find as `--format json` prints it: everything but the key. */
export function findJson(f: Find) {
  return {
    path: f.path,
    line: f.line,
    column: f.column,
    environment: f.environment,
    key: f.display,
    hash: f.hash,
    ...(f.commits ? { blob: f.blob, commits: f.commits } : {}),
  };
}
