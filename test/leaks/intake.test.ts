import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { createSign, generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { and, eq, getTableColumns } from "drizzle-orm";
import { createApp } from "../../src/app.ts";
import { cliActor } from "../../src/audit/service.ts";
import { ConfigError, parseConfig } from "../../src/config.ts";
import { apiKeys, auditEvents, keyRotations, leakReports, notifications } from "../../src/db/schema.ts";
import { generateKey, hashKey } from "../../src/keys/format.ts";
import { LeakKeysError, REVOCABLE_TOKEN_TYPES, leakProcessingSettled, loadScannerKeys, verifyScannerSignature } from "../../src/leaks/intake.ts";
import { REVOCATION_LIMIT } from "../../src/leaks/api.ts";
import { RECORD_CHUNK, processLeaks, recordLeakReports, setLeakPolicy } from "../../src/leaks/service.ts";
import type { LeakPolicy } from "../../src/leaks/leaks.sql.ts";
import { gitleaksRule } from "../../src/leaks/rules.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { MAX_BODY_BYTES } from "../../src/plugins/body-limit.ts";
import { UNMETERED_PLANS, backends } from "../support/backends.ts";
import { bearer, newAccount, newKey, problem } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";
// GitHub's documented sample request: the key id, its published public key, the 104-byte
// payload and its signature, from "Secret scanning partner program" ("Implement signature
// verification in your secret alert service"), https://docs.github.com/en/code-security/
// secret-scanning/secret-scanning-partnership-program/secret-scanning-partner-program
import SAMPLE from "./github-sample.json" with { type: "json" };

const dir = mkdtempSync(join(tmpdir(), "keyport-leak-keys-"));
let files = 0;

/** A keys file in GitHub's `{"public_keys":[…]}` shape, as LEAK_KEYS_* names it. */
function keysFile(content: unknown): string {
  const file = join(dir, `keys-${files++}.json`);
  writeFileSync(file, typeof content === "string" ? content : JSON.stringify(content));
  return file;
}

const pem = (key: KeyObject) => key.export({ type: "spki", format: "pem" }).toString();
const entry = (id: string, key: KeyObject | string, current = true) => ({ key_identifier: id, key: typeof key === "string" ? key : pem(key), is_current: current });

/** The scanners' signing keys in these tests: made here, their public halves in the files. */
const github = generateKeyPairSync("ec", { namedCurve: "P-256" });
const gitlab = generateKeyPairSync("ec", { namedCurve: "P-256" });
const GITHUB_KEY_ID = "test-github-key-1";
const GITLAB_KEY_ID = "test-gitlab-key-1";
const GITHUB_KEYS = keysFile({ public_keys: [entry(SAMPLE.key_identifier, SAMPLE.key, false), entry(GITHUB_KEY_ID, github.publicKey)] });
const GITLAB_KEYS = keysFile({ public_keys: [entry(GITLAB_KEY_ID, gitlab.publicKey)] });
const GITLAB_TOKEN = "gitlab-preshared-token-0123456789abcdefghij";

const sign = (body: string, key: KeyObject) => createSign("SHA256").update(body).sign(key, "base64");
const githubHeaders = (body: string, keyId = GITHUB_KEY_ID, key = github.privateKey) => ({ "content-type": "application/json", "github-public-key-identifier": keyId, "github-public-key-signature": sign(body, key) });
const gitlabHeaders = (body: string, keyId = GITLAB_KEY_ID, key = gitlab.privateKey) => ({ "content-type": "application/json", "gitlab-public-key-identifier": keyId, "gitlab-public-key-signature": sign(body, key) });

/** A report as GitHub sends it: a JSON array of matches. */
const reportOf = (token: string, url = "https://github.com/octo/app/blob/1a2b3c/.env") => JSON.stringify([{ token, type: "keyport_live_key", url, source: "content" }]);

describe("scanner keys and signatures", () => {
  const keys = loadScannerKeys(GITHUB_KEYS, "LEAK_KEYS_GITHUB")!;
  const payload = new TextEncoder().encode(SAMPLE.payload);

  it("verifies GitHub's documented sample, and not with one byte of it changed", () => {
    expect(payload.byteLength).toBe(104);
    expect(verifyScannerSignature(keys, SAMPLE.key_identifier, SAMPLE.signature, payload)).toEqual({ ok: true });
    for (const at of [0, 20, 52, 103]) {
      const changed = payload.slice();
      changed[at] = changed[at]! ^ 0x01;
      expect(verifyScannerSignature(keys, SAMPLE.key_identifier, SAMPLE.signature, changed)).toEqual({ ok: false, why: "bad_signature" });
    }
  });

  it("refuses a missing header, an unknown key id, another key's signature and a signature that is not DER", () => {
    expect(verifyScannerSignature(keys, null, SAMPLE.signature, payload)).toEqual({ ok: false, why: "missing" });
    expect(verifyScannerSignature(keys, SAMPLE.key_identifier, null, payload)).toEqual({ ok: false, why: "missing" });
    expect(verifyScannerSignature(keys, "bcb53661", SAMPLE.signature, payload)).toEqual({ ok: false, why: "unknown_key" });
    expect(verifyScannerSignature(keys, GITHUB_KEY_ID, SAMPLE.signature, payload)).toEqual({ ok: false, why: "bad_signature" });
    expect(verifyScannerSignature(keys, SAMPLE.key_identifier, "bm90IGEgc2lnbmF0dXJl", payload)).toEqual({ ok: false, why: "bad_signature" });
  });

  it("refuses a bad keys file in one line naming the variable and the file", () => {
    const p384 = generateKeyPairSync("ec", { namedCurve: "P-384" }).publicKey;
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).publicKey;
    const cases: [string, RegExp][] = [
      [join(dir, "absent.json"), /cannot be read: ENOENT/],
      [keysFile("{not json"), /is not JSON/],
      [keysFile({ keys: [] }), /public_keys/],
      [keysFile({ public_keys: [] }), /public_keys must list at least one key/],
      [keysFile({ public_keys: [{ key_identifier: "a" }] }), /public_keys\.0\.key/],
      [keysFile({ public_keys: [entry("a", "not a pem")] }), /public_keys\.0\.key is not a PEM public key/],
      [keysFile({ public_keys: [entry("a", p384)] }), /public_keys\.0\.key is not an ECDSA P-256 public key/],
      [keysFile({ public_keys: [entry("a", rsa)] }), /public_keys\.0\.key is not an ECDSA P-256 public key/],
      [keysFile({ public_keys: [entry("a", github.publicKey), entry("a", gitlab.publicKey)] }), /public_keys\.1\.key_identifier is listed twice/],
    ];
    for (const [file, message] of cases) {
      let error: unknown;
      try {
        loadScannerKeys(file, "LEAK_KEYS_GITHUB");
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(LeakKeysError);
      expect(error).toBeInstanceOf(ConfigError);
      const line = (error as Error).message;
      expect(line).toMatch(message);
      expect(line.startsWith(`LEAK_KEYS_GITHUB ${file}`)).toBe(true);
      expect(line).not.toContain("\n");
    }
    expect(loadScannerKeys(undefined, "LEAK_KEYS_GITHUB")).toBeUndefined();
  });

  it("reads the leak settings from the environment and refuses a short GitLab token", () => {
    const config = parseConfig({ LEAK_KEYS_GITHUB: "github-keys.json", LEAK_KEYS_GITLAB: "/etc/keyport/gitlab.json", LEAK_GITLAB_TOKEN: GITLAB_TOKEN, LEAK_FEEDBACK: "yes" });
    expect(config.leakKeysGithub).toBe(join(process.cwd(), "github-keys.json"));
    expect(config.leakKeysGitlab).toBe("/etc/keyport/gitlab.json");
    expect(config.leakGitlabToken).toBe(GITLAB_TOKEN);
    expect(config.leakFeedback).toBe(true);
    const unset = parseConfig({});
    expect([unset.leakKeysGithub, unset.leakKeysGitlab, unset.leakGitlabToken, unset.leakFeedback]).toEqual([undefined, undefined, undefined, false]);
    expect(() => parseConfig({ LEAK_GITLAB_TOKEN: "short-token" })).toThrow(/LEAK_GITLAB_TOKEN must be at least 32 characters/);
    expect(() => parseConfig({ LEAK_GITLAB_TOKEN: ` ${GITLAB_TOKEN}` })).toThrow(/LEAK_GITLAB_TOKEN/);
    expect(() => parseConfig({ LEAK_FEEDBACK: "sometimes" })).toThrow(/LEAK_FEEDBACK must be true or false/);
  });
});

for (const backend of backends) {
  describe(`leak intake [${backend.name}]`, () => {
    let h: Harness;
    const clock = new ManualClock();
    let ips = 0;
    /** A client address of its own, so one test's requests never count against another's rate. */
    const freshIp = () => `203.0.113.${++ips}`;

    beforeAll(async () => {
      h = await startHarness(backend, {
        clock,
        config: { plansFile: UNMETERED_PLANS, trustProxy: true, leakKeysGithub: GITHUB_KEYS, leakKeysGitlab: GITLAB_KEYS, leakGitlabToken: GITLAB_TOKEN },
      });
    });
    afterAll(() => h.close());

    /** A live key of a fresh account with the given leak policy. */
    async function liveKey(policy: LeakPolicy, environment: "live" | "test" = "live") {
      const account = await newAccount(h);
      await setLeakPolicy(h.deps, account.id, policy, cliActor);
      const { key, secret } = await newKey(h, account.id, { environment });
      return { accountId: account.id, keyId: key.id, secret };
    }

    const reportsOf = (secret: string) => h.deps.db.select().from(leakReports).where(eq(leakReports.keyHash, hashKey(secret)));
    const keyRow = async (id: string) => (await h.deps.db.select().from(apiKeys).where(eq(apiKeys.id, id)))[0]!;
    const leakedEvents = (keyId: string) => h.deps.db.select().from(auditEvents).where(and(eq(auditEvents.keyId, keyId), eq(auditEvents.action, "key.leaked")));
    const callWith = (secret: string) => h.req("/v1/email/someone@example.com", { headers: bearer(secret) });
    const post = (path: string, body: BodyInit, headers: Record<string, string>) => h.req(path, { method: "POST", headers: { "x-forwarded-for": freshIp(), ...headers }, body });

    describe("POST /leaks/github", () => {
      it("answers GitHub's documented sample with 200 and records its token as none of ours", async () => {
        const res = await post("/leaks/github", SAMPLE.payload, { "content-type": "application/json", "github-public-key-identifier": SAMPLE.key_identifier, "github-public-key-signature": SAMPLE.signature });
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual([]);
        await leakProcessingSettled(h.deps);
        const [row] = await reportsOf("some_token");
        expect(row).toMatchObject({ source: "github", reporter: "github", url: "https://example.com/base-repo-url/", outcome: "unknown", keyId: null });
        expect(row!.display).toContain("some_type");
      });

      it("revokes a reported live key under the revoke policy, and the gateway refuses it on the next request", async () => {
        const k = await liveKey("revoke");
        expect((await callWith(k.secret)).status).toBe(200);
        const body = reportOf(k.secret);
        const res = await post("/leaks/github", body, githubHeaders(body));
        expect(res.status).toBe(200);
        await leakProcessingSettled(h.deps);
        const refused = await callWith(k.secret);
        expect(refused.status).toBe(401);
        expect((await problem(refused)).code).toBe("key_revoked");
        const key = await keyRow(k.keyId);
        expect(key.revokedAt).not.toBeNull();
        expect(key).toMatchObject({ leakedUrl: "https://github.com/octo/app/blob/1a2b3c/.env", leakedBy: "github" });
        expect(key.leakedAt).not.toBeNull();
        const [report] = await reportsOf(k.secret);
        expect(report).toMatchObject({ outcome: "acted", action: "revoked", keyId: k.keyId, accountId: k.accountId, source: "github" });
        expect(await leakedEvents(k.keyId)).toHaveLength(1);
        const notices = await h.deps.db.select().from(notifications).where(and(eq(notifications.keyId, k.keyId), eq(notifications.event, "key.leaked")));
        expect(notices).toHaveLength(1);
        expect(JSON.stringify(notices[0]!.data)).not.toContain(k.secret);
        expect(h.logs.join("\n")).not.toContain(k.secret);
      });

      it("rotates a reported key under the default policy, and only notifies for policy notify and for a test key", async () => {
        const rotated = await newKey(h, (await newAccount(h)).id);
        const notified = await liveKey("notify");
        const testKey = await liveKey("revoke", "test");
        const body = JSON.stringify([rotated.secret, notified.secret, testKey.secret].map((token) => ({ token, type: "keyport_live_key", url: "https://github.com/octo/app/blob/1a2b3c/config.js", source: "commit" })));
        expect((await post("/leaks/github", body, githubHeaders(body))).status).toBe(200);
        await leakProcessingSettled(h.deps);
        expect((await reportsOf(rotated.secret))[0]).toMatchObject({ outcome: "acted", action: "rotated" });
        const rotations = await h.deps.db.select().from(keyRotations).where(eq(keyRotations.oldKeyId, rotated.key.id));
        expect(rotations).toHaveLength(1);
        expect(rotations[0]!.emergency).toBe(true);
        for (const k of [notified, testKey]) {
          expect((await reportsOf(k.secret))[0]).toMatchObject({ outcome: "notified", action: "notified" });
          expect((await keyRow(k.keyId)).revokedAt).toBeNull();
          expect((await keyRow(k.keyId)).leakedAt).not.toBeNull();
        }
        expect((await callWith(notified.secret)).status).toBe(200);
      });

      it("answers 401 and acts on nothing for a tampered body, an unknown key id, another key's signature or no signature", async () => {
        const k = await liveKey("revoke");
        const body = reportOf(k.secret);
        const tampered = body.replace("1a2b3c", "1a2b3d");
        const refusals: [string, Record<string, string>][] = [
          ["tampered", githubHeaders(body)],
          ["unknown key id", githubHeaders(body, "not-a-key-of-github")],
          ["signed by GitLab's key", githubHeaders(body, GITHUB_KEY_ID, gitlab.privateKey)],
          ["unsigned", { "content-type": "application/json" }],
        ];
        for (const [what, headers] of refusals) {
          const res = await post("/leaks/github", what === "tampered" ? tampered : body, headers);
          expect(`${what} → ${res.status}`).toBe(`${what} → 401`);
          expect((await problem(res)).code).toBe("invalid_api_key");
        }
        await leakProcessingSettled(h.deps);
        expect(await reportsOf(k.secret)).toHaveLength(0);
        expect((await keyRow(k.keyId)).leakedAt).toBeNull();
        expect((await callWith(k.secret)).status).toBe(200);
      });

      it("acts once on a replayed report: one row, one rotation, one key.leaked", async () => {
        const k = await liveKey("rotate");
        const body = reportOf(k.secret);
        const headers = githubHeaders(body);
        const answers = await Promise.all([post("/leaks/github", body, headers), post("/leaks/github", body, headers)]);
        expect(answers.map((r) => r.status)).toEqual([200, 200]);
        await leakProcessingSettled(h.deps);
        expect((await post("/leaks/github", body, headers)).status).toBe(200);
        await leakProcessingSettled(h.deps);
        await processLeaks(h.deps);
        const reports = await reportsOf(k.secret);
        expect(reports).toHaveLength(1);
        expect(reports[0]).toMatchObject({ outcome: "acted", action: "rotated" });
        expect(await h.deps.db.select().from(keyRotations).where(eq(keyRotations.oldKeyId, k.keyId))).toHaveLength(1);
        expect(await leakedEvents(k.keyId)).toHaveLength(1);
      });

      it("labels the one report acted on as acted when two runs take it up at once", async () => {
        const k = await liveKey("revoke");
        await recordLeakReports(h.deps, [{ token: k.secret, url: "https://github.com/octo/app/blob/9f/.env", source: "github", type: "keyport_live_key" }], { actor: "github" });
        await Promise.all([processLeaks(h.deps), processLeaks(h.deps)]);
        expect((await reportsOf(k.secret))[0]).toMatchObject({ outcome: "acted", action: "revoked" });
        expect(await leakedEvents(k.keyId)).toHaveLength(1);
      });

      // A 1 MiB body holds ~20,000 short reports, and a statement takes at most 65,535
      // parameters. On Postgres only: PGlite takes seconds to write 500 rows on a loaded
      // machine, and the chunking is the same code on both.
      it.if(backend.name === "service")("files more reports than one statement takes, in statements within the parameter limit", async () => {
        expect(RECORD_CHUNK * Object.keys(getTableColumns(leakReports)).length).toBeLessThan(65_535);
        const reports = Array.from({ length: RECORD_CHUNK + 1 }, (_, i) => ({ token: `bulk_${i}`, url: `https://github.com/octo/app/blob/1/${i}`, source: "github" as const, type: "t" }));
        const recorded = await recordLeakReports(h.deps, reports, { actor: "bulk-test" });
        expect(recorded).toHaveLength(RECORD_CHUNK + 1);
        expect(recorded.every((r) => !r.known && !r.repeated)).toBe(true);
        const rows = await h.deps.db.select({ id: leakReports.id }).from(leakReports).where(eq(leakReports.reporter, "bulk-test"));
        expect(new Set(rows.map((r) => r.id))).toEqual(new Set(recorded.map((r) => r.id)));
        // Settled by hand: acting on 501 unknown tokens is not this test's subject, nor the next ones'.
        await h.deps.db.update(leakReports).set({ outcome: "unknown" }).where(eq(leakReports.reporter, "bulk-test"));
        expect((await recordLeakReports(h.deps, reports, { actor: "bulk-test" })).map((r) => r.id)).toEqual(recorded.map((r) => r.id));
      });

      it("refuses a body over 1 MiB with 413, declared or streamed, and files nothing", async () => {
        const k = await liveKey("revoke");
        const big = reportOf(k.secret, `https://github.com/octo/app/blob/1a2b3c/${"a".repeat(MAX_BODY_BYTES)}`);
        const declared = await post("/leaks/github", big, { ...githubHeaders(big), "content-length": String(big.length) });
        expect(declared.status).toBe(413);
        expect((await problem(declared)).code).toBe("payload_too_large");
        const bytes = new TextEncoder().encode(big);
        const stream = new ReadableStream<Uint8Array>({
          start(controller) {
            for (let at = 0; at < bytes.length; at += 256 * 1024) controller.enqueue(bytes.slice(at, at + 256 * 1024));
            controller.close();
          },
        });
        const streamed = await h.req("/leaks/github", { method: "POST", headers: { "x-forwarded-for": freshIp(), ...githubHeaders(big) }, body: stream, duplex: "half" } as RequestInit);
        expect(streamed.status).toBe(413);
        // The rest of the stream is never read: the connection carries no further request.
        expect(streamed.headers.get("connection")).toBe("close");
        expect((await problem(streamed)).code).toBe("payload_too_large");
        await leakProcessingSettled(h.deps);
        expect(await reportsOf(k.secret)).toHaveLength(0);
      });

      it("answers 400 to a signed body that is not a JSON array of reports", async () => {
        const bodies: [string, string][] = [
          ["{not json", "body"],
          [JSON.stringify({ token: "kp_live_x", type: "keyport_live_key" }), "body"],
          [JSON.stringify([{ token: 42, type: "keyport_live_key", url: "", source: "commit" }]), "0.token"],
          [JSON.stringify([{ token: "kp_live_x", url: "", source: "commit" }]), "0.type"],
          [JSON.stringify([{ token: "kp_live_x", type: "t", url: "https://x.example/\u0000", source: "commit" }]), "0.url"],
        ];
        for (const [body, field] of bodies) {
          const res = await post("/leaks/github", body, githubHeaders(body));
          expect(`${body} → ${res.status}`).toBe(`${body} → 400`);
          const p = await problem(res);
          expect(p.code).toBe("invalid_request");
          expect(p.errors?.map((e) => e.field)).toContain(field);
        }
        const bytes = new Uint8Array([0x5b, 0xff, 0x5d]);
        const notUtf8 = await h.req("/leaks/github", {
          method: "POST",
          headers: { "x-forwarded-for": freshIp(), "github-public-key-identifier": GITHUB_KEY_ID, "github-public-key-signature": createSign("SHA256").update(bytes).sign(github.privateKey, "base64") },
          body: bytes,
        });
        expect(notUtf8.status).toBe(400);
      });

      it("answers GitHub's feedback with LEAK_FEEDBACK on: the token's SHA-256, its type, true or false positive", async () => {
        const app = createApp({ ...h.deps, config: { ...h.deps.config, leakFeedback: true } });
        const k = await liveKey("notify");
        const lookalike = generateKey("kp", "live");
        const body = JSON.stringify([
          { token: k.secret, type: "keyport_live_key", url: "https://github.com/octo/app/blob/1/a", source: "content" },
          { token: lookalike, type: "keyport_live_key", url: "https://github.com/octo/app/blob/1/b", source: "content" },
        ]);
        const res = await app.handle(new Request("http://localhost/leaks/github", { method: "POST", headers: githubHeaders(body), body }));
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual([
          { token_hash: hashKey(k.secret), token_type: "keyport_live_key", label: "true_positive" },
          { token_hash: hashKey(lookalike), token_type: "keyport_live_key", label: "false_positive" },
        ]);
        await leakProcessingSettled(h.deps);
      });

      it("answers 404 on every intake route whose configuration is unset, and refuses a bad keys file at start", async () => {
        const bare = createApp({ ...h.deps, config: { ...h.deps.config, leakKeysGithub: undefined, leakKeysGitlab: undefined, leakGitlabToken: undefined } });
        const body = reportOf(generateKey("kp", "live"));
        const answers = await Promise.all([
          bare.handle(new Request("http://localhost/leaks/github", { method: "POST", headers: githubHeaders(body), body })),
          bare.handle(new Request("http://localhost/leaks/gitlab", { method: "POST", headers: gitlabHeaders(body), body })),
          bare.handle(new Request("http://localhost/leaks/gitlab/v1/revocable_token_types", { headers: { authorization: GITLAB_TOKEN } })),
          bare.handle(new Request("http://localhost/leaks/gitlab/v1/revoke_tokens", { method: "POST", headers: { authorization: GITLAB_TOKEN }, body: "[]" })),
        ]);
        expect(answers.map((r) => r.status)).toEqual([404, 404, 404, 404]);
        expect(() => createApp({ ...h.deps, config: { ...h.deps.config, leakKeysGitlab: keysFile({ public_keys: [entry("a", "not a pem")] }) } })).toThrow(LeakKeysError);
      });
    });

    describe("POST /leaks/gitlab", () => {
      it("acts on a report signed with GitLab's key and its Gitlab-Public-Key headers", async () => {
        const k = await liveKey("revoke");
        const body = reportOf(k.secret, "https://gitlab.example.com/team/app/-/blob/4d5e/.env");
        const res = await post("/leaks/gitlab", body, gitlabHeaders(body));
        expect(res.status).toBe(200);
        expect(await res.json()).toEqual([]);
        await leakProcessingSettled(h.deps);
        expect((await reportsOf(k.secret))[0]).toMatchObject({ source: "gitlab", reporter: "gitlab", outcome: "acted", action: "revoked" });
        expect((await problem(await callWith(k.secret))).code).toBe("key_revoked");
      });

      it("answers 401 to GitHub's headers, GitHub's key and a tampered body", async () => {
        const k = await liveKey("revoke");
        const body = reportOf(k.secret);
        for (const [sent, headers] of [
          [body, githubHeaders(body)],
          [body, gitlabHeaders(body, GITHUB_KEY_ID, github.privateKey)],
          [body.replace("octo", "octa"), gitlabHeaders(body)],
        ] as const) {
          const res = await post("/leaks/gitlab", sent, headers);
          expect(res.status).toBe(401);
          expect((await problem(res)).code).toBe("invalid_api_key");
        }
        await leakProcessingSettled(h.deps);
        expect(await reportsOf(k.secret)).toHaveLength(0);
      });
    });

    describe("GitLab's Token Revocation API", () => {
      const TYPES = "/leaks/gitlab/v1/revocable_token_types";
      const REVOKE = "/leaks/gitlab/v1/revoke_tokens";
      const revoke = (body: string, authorization = GITLAB_TOKEN, ip = freshIp()) => h.req(REVOKE, { method: "POST", headers: { authorization, "content-type": "application/json", "x-forwarded-for": ip }, body });

      it("lists the types it revokes as GitLab reads them: an array of strings under `types`", async () => {
        const res = await h.req(TYPES, { headers: { authorization: GITLAB_TOKEN, "x-forwarded-for": freshIp() } });
        expect(res.status).toBe(200);
        const body = (await res.json()) as { types: unknown[] };
        expect(body.types).toContain("keyport_live_key");
        // The findings of the rule `keyport rules gitleaks` prints, as GitLab names their type.
        const ruleId = /^id = "([^"]+)"$/m.exec(gitleaksRule("kp"))?.[1];
        expect(body.types).toContain(`gitleaks_rule_id_${ruleId?.replaceAll("-", "_")}`);
        expect(body.types).toEqual([...REVOCABLE_TOKEN_TYPES]);
        expect(body.types.every((t) => typeof t === "string")).toBe(true);
      });

      it("answers 401 without the pre-shared token or with a wrong one, and takes it bare or as a Bearer token", async () => {
        const ip = freshIp();
        const none = await h.req(TYPES, { headers: { "x-forwarded-for": ip } });
        expect(none.status).toBe(401);
        expect((await problem(none)).code).toBe("missing_api_key");
        for (const wrong of [GITLAB_TOKEN.slice(0, -1), `${GITLAB_TOKEN}x`, `Bearer ${GITLAB_TOKEN.slice(1)}`]) {
          const res = await h.req(TYPES, { headers: { authorization: wrong, "x-forwarded-for": ip } });
          expect(res.status).toBe(401);
          expect((await problem(res)).code).toBe("invalid_api_key");
        }
        const k = await liveKey("revoke");
        const wrongRevoke = await revoke(JSON.stringify([{ type: "keyport_live_key", token: k.secret }]), "not the token");
        expect(wrongRevoke.status).toBe(401);
        expect((await h.req(TYPES, { headers: { authorization: `Bearer ${GITLAB_TOKEN}`, "x-forwarded-for": ip } })).status).toBe(200);
        await leakProcessingSettled(h.deps);
        expect(await reportsOf(k.secret)).toHaveLength(0);
      });

      it("answers 204 to tokens to revoke, then acts on each by its account's policy, once", async () => {
        const revoked = await liveKey("revoke");
        const notified = await liveKey("notify");
        const body = JSON.stringify([
          { type: "keyport_live_key", token: revoked.secret, location: "https://gitlab.example.com/team/app/-/blob/4d5e/.env" },
          { type: "gitleaks_rule_id_keyport_api_key", token: notified.secret },
        ]);
        const res = await revoke(body);
        expect(res.status).toBe(204);
        expect(await res.text()).toBe("");
        expect((await revoke(body)).status).toBe(204);
        await leakProcessingSettled(h.deps);
        expect(await reportsOf(revoked.secret)).toEqual([expect.objectContaining({ source: "gitlab-revocation", reporter: "gitlab", url: "https://gitlab.example.com/team/app/-/blob/4d5e/.env", outcome: "acted", action: "revoked" })]);
        expect(await reportsOf(notified.secret)).toEqual([expect.objectContaining({ source: "gitlab-revocation", url: null, outcome: "notified" })]);
        expect((await problem(await callWith(revoked.secret))).code).toBe("key_revoked");
        expect((await callWith(notified.secret)).status).toBe(200);
        expect(await leakedEvents(revoked.keyId)).toHaveLength(1);
      });

      it("answers 400 to a malformed body or a type it does not revoke, and files nothing", async () => {
        const k = await liveKey("revoke");
        const cases: [string, string][] = [
          ["not json", "body"],
          [JSON.stringify({ type: "keyport_live_key", token: k.secret }), "body"],
          [JSON.stringify([{ type: "keyport_live_key" }]), "0.token"],
          [JSON.stringify([{ type: "keyport_live_key", token: k.secret }, { type: "gitleaks_rule_id_gitlab_personal_access_token", token: "glpat-x" }]), "1.type"],
        ];
        for (const [body, field] of cases) {
          const res = await revoke(body);
          expect(`${body} → ${res.status}`).toBe(`${body} → 400`);
          expect((await problem(res)).errors?.map((e) => e.field)).toContain(field);
        }
        await leakProcessingSettled(h.deps);
        expect(await reportsOf(k.secret)).toHaveLength(0);
        expect((await revoke("[]")).status).toBe(204);
      });

      it("answers 429 with Retry-After past the rate of one client address, and other addresses go on", async () => {
        const ip = freshIp();
        const statuses: number[] = [];
        for (let i = 0; i < REVOCATION_LIMIT.requests; i++) statuses.push((await h.req(TYPES, { headers: { authorization: GITLAB_TOKEN, "x-forwarded-for": ip } })).status);
        expect(new Set(statuses)).toEqual(new Set([200]));
        const throttled = await revoke("[]", GITLAB_TOKEN, ip);
        expect(throttled.status).toBe(429);
        expect((await problem(throttled)).code).toBe("rate_limited");
        expect(Number(throttled.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
        expect((await revoke("[]", GITLAB_TOKEN, freshIp())).status).toBe(204);
        clock.advance(REVOCATION_LIMIT.windowMs);
        expect((await revoke("[]", GITLAB_TOKEN, ip)).status).toBe(204);
      });
    });
  });
}
