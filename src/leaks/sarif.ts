import { pathToFileURL } from "node:url";
import type { Log, ReportingDescriptor, Result } from "sarif";
import { version } from "../../package.json";
import { keyLength, type Environment } from "../keys/format.ts";
import type { Find, ScanResult } from "./scan.ts";

/** The rule each key environment is reported under: one rule per environment, so a team can gate on live keys alone. */
export const SARIF_RULE: Record<Environment, string> = { live: "keyport/live-key", test: "keyport/test-key" };

/** Where the results' relative URIs start: the scan's root (SARIF §3.14.14; GitHub resolves it to the checkout). */
const SRCROOT = "%SRCROOT%";
const FINGERPRINT = "keyportKey/v1";

function rules(): ReportingDescriptor[] {
  const help = (env: Environment) =>
    env === "live"
      ? "Revoke the key, or roll it (`keyport key roll KEY`) if callers need time to move, then remove it from the file. Removing it from the file does not make it secret again: it stays in the history."
      : "A test key only reaches the sandbox, but it is still a credential: roll it and keep it out of files that are committed.";
  const rule = (env: Environment): ReportingDescriptor => ({
    id: SARIF_RULE[env],
    name: env === "live" ? "KeyportLiveKey" : "KeyportTestKey",
    shortDescription: { text: `Keyport ${env} API key` },
    fullDescription: { text: `A Keyport ${env} key with a valid checksum: a real key of this format, not a look-alike.` },
    help: { text: help(env), markdown: help(env) },
    defaultConfiguration: { level: env === "live" ? "error" : "warning" },
    properties: {
      tags: ["security", "secret", "external/cwe/cwe-798"],
      precision: "very-high",
      // GitHub ranks code-scanning alerts by this CVSS-like score (critical ≥ 9.0).
      "security-severity": env === "live" ? "9.1" : "5.0",
    },
  });
  return [rule("live"), rule("test")];
}

/** Each path segment percent-encoded: a relative URI reference (RFC 3986), whatever the file is called. */
const uriOf = (path: string) => path.split("/").map(encodeURIComponent).join("/");

/**
 * Derived from the key's SHA-256 and the file, never from the key: the same key in the same
 * file is the same alert from one run to the next, wherever the line moves; in another file,
 * another alert (each place has to be cleaned).
 */
const fingerprintOf = (f: Find) => Bun.SHA256.hash(`${f.hash}\0${f.path}`, "hex");

/**
 * A SARIF 2.1.0 log of a scan, as GitHub code scanning accepts it (`github/codeql-action/
 * upload-sarif`): relative `artifactLocation.uri`s under `%SRCROOT%`, 1-based regions, one
 * rule per key environment, `partialFingerprints` from the key's hash. `status` adds what
 * `--check` learned of each key.
 */
export function sarifLog(scan: ScanResult, options: { prefix: string; informationUri: string; status?: (f: Find) => string | undefined }): Log {
  const length = keyLength(options.prefix);
  const results: Result[] = scan.finds.map((f) => {
    const status = options.status?.(f);
    const where = f.commits?.length ? ` (in commit ${f.commits[0]!.slice(0, 12)}${f.commits.length > 1 ? ` and ${f.commits.length - 1} more` : ""})` : "";
    const properties = { ...(f.commits ? { commits: f.commits, blob: f.blob } : {}), ...(status ? { status } : {}) };
    return {
      ruleId: SARIF_RULE[f.environment],
      ruleIndex: f.environment === "live" ? 0 : 1,
      level: f.environment === "live" ? "error" : "warning",
      message: { text: `Keyport ${f.environment} key ${f.display}${where}${status ? `: ${status}` : ""}` },
      locations: [
        {
          physicalLocation: {
            artifactLocation: { uri: uriOf(f.path), uriBaseId: SRCROOT },
            region: { startLine: f.line, startColumn: f.column, endLine: f.line, endColumn: f.column + length },
          },
        },
      ],
      partialFingerprints: { [FINGERPRINT]: fingerprintOf(f) },
      ...(Object.keys(properties).length ? { properties } : {}),
    };
  });
  return {
    $schema: "https://json.schemastore.org/sarif-2.1.0.json",
    version: "2.1.0",
    runs: [
      {
        tool: { driver: { name: "keyport", version, semanticVersion: version, informationUri: options.informationUri, rules: rules() } },
        originalUriBaseIds: { [SRCROOT]: { uri: `${pathToFileURL(scan.root).href.replace(/\/?$/, "/")}` } },
        columnKind: "utf16CodeUnits",
        results,
      },
    ],
  };
}
