import { readBounded } from "../plugins/body.ts";
import { createHash, createPublicKey, createVerify, timingSafeEqual, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { z } from "zod";
import { ConfigError } from "../config.ts";
import type { Deps } from "../deps.ts";
import { zodFieldErrors, type FieldError } from "../errors.ts";
import { processLeaks, type RecordedReport } from "./service.ts";

/**
 * Reports from public-code scanners: GitHub's secret-scanning partner program, the same
 * design for GitLab, and GitLab self-managed's Token Revocation API. This module checks what
 * arrives (the public-key files, the signatures, the bodies); src/leaks/api.ts answers, and
 * src/leaks/service.ts files and acts.
 */

/** A bad LEAK_KEYS_* file: one line at start, like a bad PLANS_FILE. */
export class LeakKeysError extends ConfigError {
  override name = "LeakKeysError";
}

/** A scanner's signing keys by `key_identifier`. */
export type ScannerKeys = ReadonlyMap<string, KeyObject>;

const keysFileSchema = z.object({
  public_keys: z
    .array(
      z.object({
        key_identifier: z.string().min(1, "must not be empty"),
        key: z.string().min(1, "must not be empty"),
        is_current: z.boolean().optional(),
      }),
    )
    .min(1, "must list at least one key"),
});

/**
 * The keys of a file in GitHub's `{"public_keys":[{key_identifier, key, is_current}]}` shape
 * (what https://api.github.com/meta/public_keys/secret_scanning answers, saved: the server
 * is offline), or undefined when `file` is unset. Every key listed verifies, current or
 * not: a scanner rotating its key still signs with the old one for a while, and a key it has
 * retired is taken out of the file. Throws a LeakKeysError naming `variable`, the file and
 * the first fault.
 */
export function loadScannerKeys(file: string | undefined, variable: string): ScannerKeys | undefined {
  if (!file) return undefined;
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new LeakKeysError(`${variable} ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new LeakKeysError(`${variable} ${file} is not JSON: ${(err as Error).message}`);
  }
  const parsed = keysFileSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new LeakKeysError(`${variable} ${file}: ${issue.path.join(".") || "the file"} ${issue.message}`);
  }
  const keys = new Map<string, KeyObject>();
  for (const [i, entry] of parsed.data.public_keys.entries()) {
    const where = `${variable} ${file}: public_keys.${i}`;
    if (keys.has(entry.key_identifier)) throw new LeakKeysError(`${where}.key_identifier is listed twice`);
    let key: KeyObject;
    try {
      key = createPublicKey(entry.key);
    } catch {
      throw new LeakKeysError(`${where}.key is not a PEM public key`);
    }
    // ECDSA-NIST-P256V1-SHA256 is the only algorithm the scanners sign with.
    if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
      throw new LeakKeysError(`${where}.key is not an ECDSA P-256 public key`);
    }
    keys.set(entry.key_identifier, key);
  }
  return keys;
}

export type SignatureCheck = { ok: true } | { ok: false; why: "missing" | "unknown_key" | "bad_signature" };

/**
 * Whether `signature` (base64 of a DER ECDSA signature) signs the raw `body` with the key
 * `keyId` names. The raw bytes, never the JSON parsed and serialised again: GitHub signs
 * what it sent, spacing and key order included.
 */
export function verifyScannerSignature(keys: ScannerKeys, keyId: string | null, signature: string | null, body: Uint8Array): SignatureCheck {
  if (!keyId || !signature) return { ok: false, why: "missing" };
  const key = keys.get(keyId);
  if (!key) return { ok: false, why: "unknown_key" };
  let valid = false;
  try {
    valid = createVerify("SHA256").update(body).verify(key, signature, "base64");
  } catch {
    // A signature that is not DER at all: OpenSSL may refuse it rather than answer false.
  }
  return valid ? { ok: true } : { ok: false, why: "bad_signature" };
}

/** The raw body, up to `limit` bytes (a signature is over exactly these bytes); null past it. */
export const readBody = (request: Request, limit: number) => readBounded(request.body, limit);

/** Postgres text holds no NUL, and no scanner sends one: such a string is refused, not stored. */
const text = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !s.includes("\0"), "must not contain a NUL character");

/**
 * GitHub's partner payload, which GitLab's intake takes too: `token` and `type` always;
 * `url` "may be empty", and `source` is absent from payloads older than it, so neither is
 * required.
 */
const scannerReportSchema = z.object({
  token: text(4096).min(1, "must not be empty"),
  type: text(200),
  url: text(4096).nullish(),
  source: text(100).nullish(),
});
export type ScannerReport = z.infer<typeof scannerReportSchema>;

/** GitLab's revoke_tokens item: the token, its type, and where it was found. */
const revocationSchema = z.object({
  type: text(200),
  token: text(4096).min(1, "must not be empty"),
  location: text(4096).nullish(),
});
export type RevocationReport = z.infer<typeof revocationSchema>;

export type Parsed<T> = { ok: true; value: T } | { ok: false; detail: string; errors: FieldError[] };

/** Strict UTF-8: a body a scanner sent is valid, and a broken one is refused rather than patched. */
function jsonArray(bytes: Uint8Array): Parsed<unknown[]> {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return { ok: false, detail: "The body is not valid JSON.", errors: [{ field: "body", message: "is not valid JSON" }] };
  }
  if (!Array.isArray(json)) return { ok: false, detail: "The body must be a JSON array of reports.", errors: [{ field: "body", message: "must be an array" }] };
  return { ok: true, value: json };
}

function itemsOf<S extends z.ZodType>(schema: S, bytes: Uint8Array, what: string): Parsed<z.output<S>[]> {
  const array = jsonArray(bytes);
  if (!array.ok) return array;
  const r = z.array(schema).safeParse(array.value);
  if (!r.success) return { ok: false, detail: `The body is not a JSON array of ${what}.`, errors: zodFieldErrors(r.error).slice(0, 20) };
  return { ok: true, value: r.data };
}

/** A scanner's payload: a JSON array of `{token, type, url, source}`. */
export function parseScannerReports(bytes: Uint8Array): Parsed<ScannerReport[]> {
  return itemsOf(scannerReportSchema, bytes, "{token, type, url, source} reports");
}

/** The id of the gitleaks rule `keyport rules gitleaks` prints (src/leaks/rules.ts). */
const GITLEAKS_RULE_ID = "keyport-api-key";

/**
 * The token types GitLab may send for our keys. GitLab sends a token to revoke_tokens only
 * if revocable_token_types lists its type, and names a finding's type after the secrets
 * analyzer's identifier, its type and value joined in lower case with underscores ("GitLab
 * Personal Access Token" is `gitleaks_rule_id_gitlab_personal_access_token`): our gitleaks
 * rule's findings, and a custom rule per environment.
 */
export const REVOCABLE_TOKEN_TYPES: readonly string[] = [`gitleaks_rule_id_${GITLEAKS_RULE_ID.replaceAll("-", "_")}`, "keyport_live_key", "keyport_test_key"];

/**
 * GitLab's revoke_tokens body: a JSON array of `{type, token, location?}`. A type this
 * server does not revoke is a 400, as GitLab's specification asks (the request is not
 * retried).
 */
export function parseRevocationRequest(bytes: Uint8Array): Parsed<RevocationReport[]> {
  const items = itemsOf(revocationSchema, bytes, "{type, token, location} tokens");
  if (!items.ok) return items;
  const unsupported = items.value.flatMap((t, i) => (REVOCABLE_TOKEN_TYPES.includes(t.type) ? [] : [{ field: `${i}.type`, message: `is not a type this server revokes (${REVOCABLE_TOKEN_TYPES.join(", ")})` }]));
  if (unsupported.length > 0) return { ok: false, detail: "A token's type is not one this server revokes.", errors: unsupported.slice(0, 20) };
  return items;
}

export type FeedbackLabel = "true_positive" | "false_positive";

/**
 * GitHub's false-positive feedback, in its hashed form: for each report, the SHA-256 of the
 * token (never the token itself), its type, and whether it is a key of ours that exists.
 */
export function scannerFeedback(reports: ScannerReport[], recorded: RecordedReport[]): { token_hash: string; token_type: string; label: FeedbackLabel }[] {
  return reports.map((r, i) => ({ token_hash: recorded[i]!.keyHash, token_type: r.type, label: recorded[i]!.known ? "true_positive" : "false_positive" }));
}

/**
 * Whether an Authorization header carries the pre-shared token: GitLab sends the token as
 * the whole header; `Bearer <token>` is taken too. Both sides are hashed to one length
 * first, so the comparison takes the same time whatever the guess.
 */
export function presharedTokenCheck(header: string | null, token: string): "missing" | "wrong" | "ok" {
  if (header === null || header.trim() === "") return "missing";
  const digest = (s: string) => createHash("sha256").update(s).digest();
  const expected = digest(token);
  const bare = timingSafeEqual(digest(header), expected);
  const bearer = timingSafeEqual(digest(header.replace(/^Bearer +/i, "")), expected);
  return bare || bearer ? "ok" : "wrong";
}

/** The processing runs started off intakes' requests and not finished yet, per database. */
const running = new WeakMap<object, { run: Promise<void>; again: boolean }>();

/**
 * Acts on the reports just filed, off the request: the intake has answered already. Kicks
 * arriving while a run is under way make it run once more when it ends rather than start
 * runs side by side (each claims its own reports, so they would only contend). The timer
 * (src/jobs.ts) takes up whatever a failed run left pending.
 */
export function kickLeakProcessing(deps: Pick<Deps, "db" | "clock" | "config" | "keyCache" | "log" | "products" | "state">): void {
  const current = running.get(deps.db);
  if (current) {
    current.again = true;
    return;
  }
  const entry = { run: Promise.resolve(), again: false };
  running.set(deps.db, entry);
  entry.run = (async () => {
    try {
      // A run takes a batch: one that acted on some runs again, until one finds none.
      let acted = 0;
      do {
        entry.again = false;
        acted = (await processLeaks(deps)).length;
      } while (entry.again || acted > 0);
    } catch (err) {
      deps.log.error("leak reports not processed; the timer takes them up", { error: (err as Error).message });
    } finally {
      running.delete(deps.db);
    }
  })();
}

/** Resolves when the processing an intake started has ended (tests; the shutdown hook). */
export async function leakProcessingSettled(deps: Pick<Deps, "db">): Promise<void> {
  for (let entry = running.get(deps.db); entry; entry = running.get(deps.db)) await entry.run;
}
