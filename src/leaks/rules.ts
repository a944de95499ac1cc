import { BASE62 } from "../ids.ts";
import { CHECKSUM_LENGTH, keyPattern } from "../keys/format.ts";

/**
 * Our keys in the words of the scanners teams already run, and a pre-commit hook: what
 * `keyport rules gitleaks|secretlint` and `keyport hook pre-commit` print. Each is made for
 * the configured KEY_PREFIX.
 */

/** `kp_live_`, `kp_test_`: the literal every key starts with (what gitleaks' keyword prefilter looks for). */
const keywords = (prefix: string) => [`${prefix}_live_`, `${prefix}_test_`];

/**
 * A gitleaks rule (TOML). gitleaks' regexes are Go's RE2, which reads our pattern as
 * JavaScript does; it cannot check the CRC32, so a look-alike is reported too (`keyport
 * scan` does check it).
 */
export function gitleaksRule(prefix: string): string {
  return `# Keyport API keys for gitleaks, made by \`keyport rules gitleaks\` for KEY_PREFIX ${prefix}.
# Add this table to your .gitleaks.toml. A file holding only this table replaces gitleaks'
# default rules; to keep them as well, start the file with:
#   [extend]
#   useDefault = true
# gitleaks cannot check a key's CRC32 checksum: \`keyport scan\` tells a real key from a look-alike.
[[rules]]
id = "keyport-api-key"
description = "Keyport API key (${prefix}_live_… or ${prefix}_test_…)"
regex = '''${keyPattern(prefix).source}'''
keywords = [${keywords(prefix).map((k) => JSON.stringify(k)).join(", ")}]
tags = ["keyport", "api-key"]
`;
}

/**
 * A secretlint rule module (ESM) that reports our keys whose checksum is valid: the CRC32
 * (IEEE, the polynomial Bun.hash.crc32 and zlib use) and the base62 digits are embedded, so
 * the module needs nothing but secretlint. The message holds the masked key only.
 */
export function secretlintRule(prefix: string): string {
  return `// Keyport API keys for secretlint, made by \`keyport rules secretlint\` for KEY_PREFIX ${prefix}.
// Reports ${prefix}_live_… and ${prefix}_test_… keys whose CRC32 checksum is valid (look-alikes are not
// reported), showing only the masked key. To use it, make it a package of its own:
//   mkdir secretlint-rule-keyport && keyport rules secretlint > secretlint-rule-keyport/index.mjs
//   echo '{"name":"secretlint-rule-keyport","version":"1.0.0","type":"module","main":"index.mjs"}' > secretlint-rule-keyport/package.json
//   npm install --save-dev ./secretlint-rule-keyport
// and list it in .secretlintrc.json: {"rules": [{"id": "secretlint-rule-keyport"}]}

const PREFIX = ${JSON.stringify(prefix)};
const PATTERN = /${keyPattern(prefix).source}/g;
const BASE62 = ${JSON.stringify(BASE62)};
const CHECKSUM_LENGTH = ${CHECKSUM_LENGTH};

const CRC_TABLE = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  CRC_TABLE[n] = c >>> 0;
}

/** CRC-32 (IEEE 802.3) of the text's UTF-8 bytes. */
function crc32(text) {
  let c = 0xffffffff;
  for (const b of new TextEncoder().encode(text)) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A key ends with the CRC32 of everything before it, as six base62 digits. */
function validChecksum(key) {
  let n = crc32(key.slice(0, -CHECKSUM_LENGTH));
  let digits = "";
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    digits = BASE62[n % 62] + digits;
    n = Math.floor(n / 62);
  }
  return digits === key.slice(-CHECKSUM_LENGTH);
}

export const messages = {
  KEYPORT_KEY: {
    en: (props) => \`found a Keyport \${props.ENV} key: \${props.KEY}\`,
  },
};

export const creator = {
  messages,
  meta: {
    id: "secretlint-rule-keyport",
    recommended: true,
    type: "scanner",
    supportedContentTypes: ["text"],
  },
  create(context) {
    const t = context.createTranslator(messages);
    return {
      file(source) {
        for (const match of source.content.matchAll(PATTERN)) {
          const key = match[0];
          if (!validChecksum(key)) continue;
          const body = key.slice(PREFIX.length + 6);
          const masked = \`\${PREFIX}_\${match[1]}_\${body.slice(0, 4)}…\${body.slice(-4)}\`;
          const index = match.index ?? 0;
          context.report({ message: t("KEYPORT_KEY", { ENV: match[1], KEY: masked }), range: [index, index + key.length] });
        }
      },
    };
  },
};
`;
}

/** A word for sh: single-quoted, a quote inside written as '\'' . */
export const shellWord = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * A POSIX sh pre-commit hook. It scans what the commit will hold — the staged content,
 * checked out of the index (`git checkout-index`, which honours the temporary index of
 * `git commit -a`) into a temporary folder — not the working tree, where a key may already
 * be deleted while still staged. `command` is how this keyport is run (its binary, or bun
 * and src/main.ts); `$KEYPORT` overrides it when the hook runs.
 */
export function preCommitHook(prefix: string, command: string[]): string {
  return `#!/bin/sh
# Keyport pre-commit hook, made by \`keyport hook pre-commit\`: refuses a commit whose staged
# files hold a Keyport key (one with a valid checksum). Install it:
#   keyport hook pre-commit > .git/hooks/pre-commit && chmod +x .git/hooks/pre-commit
# It scans the staged content (what the commit will hold), not the working tree. To commit
# anyway: git commit --no-verify. KEYPORT names another keyport command to run.
set -u
KEY_PREFIX=\${KEY_PREFIX:-${prefix}}
export KEY_PREFIX

run_keyport() {
  if [ -n "\${KEYPORT:-}" ]; then
    $KEYPORT "$@"
  else
    ${command.map(shellWord).join(" ")} "$@"
  fi
}

tmp=$(mktemp -d "\${TMPDIR:-/tmp}/keyport-pre-commit.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

if ! git diff --cached --name-only --diff-filter=ACM -z | git checkout-index --stdin -z --prefix="$tmp/"; then
  echo "keyport: could not read the staged files: the commit is refused" >&2
  exit 1
fi
cd "$tmp" || exit 1
[ -n "$(ls -A)" ] || exit 0

# --no-ignore: a staged file is committed even if a .gitignore names it (git add -f).
run_keyport scan --no-ignore .
status=$?
case $status in
  0) exit 0 ;;
  1) echo "keyport: the commit would hold the key(s) above: unstage them (git restore --staged FILE), and revoke or roll any key that has left this machine" >&2 ;;
  *) echo "keyport: the scan did not run (exit $status), so the commit is refused; set KEYPORT to the keyport command, or commit with --no-verify" >&2 ;;
esac
exit 1
`;
}
