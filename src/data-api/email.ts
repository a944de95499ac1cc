import blocklist from "disposable-email-domains-js/dist/dict/disposable_email_blocklist.json";
import type { EmailAnalysis } from "./model.ts";

/**
 * The community-curated list of disposable email domains (disposable-email-domains on GitHub,
 * republished to npm as JSON, CC0). A JSON import is bundled into the compiled binary as code.
 */
const DISPOSABLE: ReadonlySet<string> = new Set(blocklist);

/** Consumer mailbox providers that give an address to anyone who signs up. */
const FREE_PROVIDERS: ReadonlySet<string> = new Set([
  "gmail.com", "googlemail.com", "icloud.com", "me.com", "mac.com", "msn.com", "passport.com",
  "ymail.com", "rocketmail.com", "proton.me", "protonmail.com", "protonmail.ch", "pm.me",
  "tutanota.com", "tutanota.de", "tuta.io", "tutamail.com", "zoho.com", "zohomail.com",
  "mail.com", "email.com", "usa.com", "post.com", "inbox.com", "fastmail.com", "fastmail.fm",
  "hushmail.com", "mailfence.com", "posteo.de", "mailbox.org", "hey.com", "aim.com",
  "mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru", "ya.ru", "rambler.ru", "ukr.net",
  "web.de", "t-online.de", "freenet.de", "mail.de", "libero.it", "virgilio.it", "tiscali.it",
  "orange.fr", "wanadoo.fr", "laposte.net", "free.fr", "sfr.fr", "seznam.cz", "centrum.cz",
  "wp.pl", "o2.pl", "interia.pl", "onet.pl", "qq.com", "163.com", "126.com", "yeah.net",
  "sina.com", "sohu.com", "naver.com", "daum.net", "hanmail.net", "rediffmail.com",
  "uol.com.br", "bol.com.br", "terra.com.br", "comcast.net", "verizon.net", "att.net",
  "sbcglobal.net", "cox.net", "btinternet.com", "sky.com", "bigpond.com", "shaw.ca", "rogers.com",
]);

/**
 * Brands that run the same free service under many country domains (yahoo.co.jp, hotmail.fr,
 * gmx.at, yandex.com.tr …): the brand label followed by a ccTLD, `co.`/`com.` + ccTLD, .com or .net.
 */
const FREE_BRANDS: ReadonlySet<string> = new Set(["yahoo", "hotmail", "outlook", "live", "gmx", "yandex", "aol"]);
const BRAND_SUFFIX = /^(?:(?:com?\.)?[a-z]{2}|com|net)$/;

/** Mailboxes that belong to a function rather than a person (RFC 2142 and common practice). */
const ROLE_ACCOUNTS: ReadonlySet<string> = new Set([
  "abuse", "accounting", "accounts", "admin", "administrator", "billing", "careers", "contact",
  "customerservice", "devnull", "dns", "do-not-reply", "donotreply", "enquiries", "feedback",
  "finance", "ftp", "hello", "help", "helpdesk", "hostmaster", "hr", "info", "inquiries", "it",
  "jobs", "legal", "mail", "mailer-daemon", "marketing", "media", "news", "newsletter", "no-reply",
  "noc", "noreply", "null", "office", "orders", "postmaster", "press", "privacy", "recruitment",
  "root", "sales", "security", "service", "support", "sysadmin", "team", "tech", "usenet", "uucp",
  "webmaster", "www",
]);

/** Typo targets, most used first: the first at the smallest distance wins a tie. */
const POPULAR_DOMAINS = [
  "gmail.com", "yahoo.com", "hotmail.com", "outlook.com", "icloud.com", "aol.com", "live.com",
  "msn.com", "me.com", "mac.com", "googlemail.com", "protonmail.com", "proton.me", "gmx.com",
  "gmx.de", "gmx.net", "web.de", "yandex.ru", "yandex.com", "mail.ru", "zoho.com", "comcast.net",
  "verizon.net", "att.net", "sbcglobal.net", "hotmail.co.uk", "yahoo.co.uk", "yahoo.fr",
  "hotmail.fr", "btinternet.com", "qq.com", "163.com", "naver.com", "ymail.com", "rocketmail.com",
  "fastmail.com",
];

/** Misspelt TLDs that are not themselves delegated (so `.co` and `.cm`, real ccTLDs, are absent). */
const TLD_TYPOS: ReadonlyMap<string, string> = new Map([
  ...["con", "cmo", "cpm", "comm", "coom", "ocm", "vom", "xom", "cim", "clm", "copm"].map((t) => [t, "com"] as const),
  ...["nte", "ney", "nett", "nrt"].map((t) => [t, "net"] as const),
  ...["ogr", "orgg", "prg", "rog"].map((t) => [t, "org"] as const),
]);

/**
 * A name this short has too many real neighbours (gm.com, aim.com …): only its TLD is corrected.
 * Five letters and up (gmail, yahoo) tolerate Damerau-Levenshtein distance 2.
 */
const MIN_FUZZY_LABEL = 5;
const MAX_DISTANCE = 2;

// RFC 5322 §3.2.3 atext; the dot-atom form excludes quoted strings and comments.
const DOT_ATOM = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/i;
// RFC 1035 §2.3.1 label, as relaxed by RFC 1123 §2.1 to allow a leading digit.
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/i;
// Every delegated TLD is letters only, or an IDN in its A-label form (RFC 5890).
const TLD = /^(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})$/i;

/**
 * Syntax and reputation of one email address. Never throws: a malformed address answers
 * `valid: false` with the derived fields null or false.
 *
 * @example
 * analyzeEmail(" Info@GMIAL.com ")
 * // { valid: true, normalized: "info@gmial.com", role: true, disposable: true,
 * //   suggestion: "info@gmail.com", … }
 */
export function analyzeEmail(input: string): EmailAnalysis {
  // Checked before lower-casing: toLowerCase() maps some non-ASCII letters to ASCII (U+212A
  // KELVIN SIGN → "k"), which would let such an address pass as valid.
  const address = input.trim();
  const at = address.lastIndexOf("@");
  if (at < 0 || !isValidAddress(address, address.slice(0, at), address.slice(at + 1))) {
    return { input, valid: false, normalized: null, local: null, domain: null, disposable: false, freeProvider: false, role: false, suggestion: null };
  }
  const normalized = address.toLowerCase();
  const local = normalized.slice(0, at);
  const domain = normalized.slice(at + 1);
  const suggested = suggestDomain(domain);
  return {
    input,
    valid: true,
    normalized,
    local,
    domain,
    disposable: isDisposableDomain(domain),
    freeProvider: isFreeProvider(domain),
    role: ROLE_ACCOUNTS.has(local.split("+", 1)[0]!),
    suggestion: suggested === null ? null : `${local}@${suggested}`,
  };
}

// RFC 5321 §4.5.3.1: local part ≤ 64 octets; a path is ≤ 256 octets with its angle brackets.
function isValidAddress(address: string, local: string, domain: string): boolean {
  if (address.length > 254 || local.length > 64) return false;
  if (!DOT_ATOM.test(local)) return false;
  const labels = domain.split(".");
  if (labels.length < 2 || !labels.every((l) => LABEL.test(l))) return false;
  return TLD.test(labels[labels.length - 1]!);
}

/** True for a listed domain or any subdomain of one (sub.mailinator.com). */
function isDisposableDomain(domain: string): boolean {
  const labels = domain.split(".");
  for (let i = 0; i < labels.length - 1; i++) {
    if (DISPOSABLE.has(labels.slice(i).join("."))) return true;
  }
  return false;
}

function isFreeProvider(domain: string): boolean {
  if (FREE_PROVIDERS.has(domain)) return true;
  const dot = domain.indexOf(".");
  return FREE_BRANDS.has(domain.slice(0, dot)) && BRAND_SUFFIX.test(domain.slice(dot + 1));
}

/** The popular domain this one is probably a typo of, the TLD-corrected domain, or null. */
function suggestDomain(domain: string): string | null {
  if (isFreeProvider(domain)) return null;
  const dot = domain.lastIndexOf(".");
  const fixedTld = TLD_TYPOS.get(domain.slice(dot + 1));
  const candidate = fixedTld === undefined ? domain : `${domain.slice(0, dot)}.${fixedTld}`;
  let best: string | null = null;
  let bestDistance = MAX_DISTANCE + 1;
  for (const popular of POPULAR_DOMAINS) {
    if (popular === candidate) return popular === domain ? null : popular;
    if (popular.indexOf(".") < MIN_FUZZY_LABEL) continue;
    const d = osaDistance(candidate, popular, bestDistance);
    if (d < bestDistance) {
      best = popular;
      bestDistance = d;
    }
  }
  return best ?? (fixedTld === undefined ? null : candidate);
}

/** osaDistance's three rows, reused from call to call (each address is compared with ~30 domains). */
let rows = new Int32Array(3 * 64);

/**
 * Damerau-Levenshtein distance in its optimal-string-alignment form (adjacent transpositions
 * count 1: "gmial" → "gmail"). Stops early and answers `limit` once every cell of a row
 * reaches it, so a far-off domain costs one or two rows. Compares UTF-16 code units and
 * allocates nothing: the rows live in one buffer, at offsets that rotate.
 */
export function osaDistance(a: string, b: string, limit = Infinity): number {
  if (Math.abs(a.length - b.length) >= limit) return limit;
  const width = b.length + 1;
  if (rows.length < 3 * width) rows = new Int32Array(3 * width);
  const r = rows;
  // Offsets of the rows i-2, i-1 and i.
  let prev2 = 0;
  let prev = width;
  let row = 2 * width;
  for (let j = 0; j < width; j++) r[prev + j] = j;
  for (let i = 1; i <= a.length; i++) {
    const ai = a.charCodeAt(i - 1);
    r[row] = i;
    let rowMin = i;
    for (let j = 1; j < width; j++) {
      const bj = b.charCodeAt(j - 1);
      let d = Math.min(r[prev + j]! + 1, r[row + j - 1]! + 1, r[prev + j - 1]! + (ai === bj ? 0 : 1));
      if (i > 1 && j > 1 && ai === b.charCodeAt(j - 2) && a.charCodeAt(i - 2) === bj) d = Math.min(d, r[prev2 + j - 2]! + 1);
      r[row + j] = d;
      if (d < rowMin) rowMin = d;
    }
    if (rowMin >= limit) return limit;
    const oldest = prev2;
    prev2 = prev;
    prev = row;
    row = oldest;
  }
  return Math.min(r[prev + b.length]!, limit);
}
