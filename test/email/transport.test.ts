import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { simpleParser, type ParsedMail } from "mailparser";
import { fileTransport, smtpTransport, type MailMessage } from "../../src/email/transport.ts";
import { createLogger } from "../../src/ops/log.ts";
import { renderMail, type MailContent } from "../../views/email/mail.tsx";
import { testConfig } from "../support/backends.ts";
import { rejection } from "../support/fixtures.ts";
import { TestSmtpServer } from "../support/smtp.ts";

/** A message with everything a template can hold, and text that must be escaped in the HTML part. */
const CONTENT: MailContent = {
  subject: "Reset your <Keyport> password & more",
  paragraphs: ["Someone asked to reset the password of <b>dev@example.com</b> & \"friends\".", "A second paragraph, plain."],
  action: { label: "Choose a new password", url: "http://localhost:3000/reset-password?token=abc&x=%3Cy%3E" },
  notes: ["The link works once, for 30 minutes.", "If you did not ask, ignore this mail."],
  unsubscribeUrl: "http://localhost:3000/email/unsubscribe?a=acct_1&c=keys&t=tok",
};

function message(to: string): MailMessage {
  const { subject, text, html } = renderMail(CONTENT);
  return { to, subject, text, html, headers: { "List-Unsubscribe": `<${CONTENT.unsubscribeUrl}>`, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click" } };
}

const decode = (s: string) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, "&");

/** What a reader of the HTML part sees and can follow: its text without tags, and its links' targets. */
function htmlSays(html: string): string {
  const body = html.replace(/<head>[\s\S]*<\/head>/, "");
  const links = [...body.matchAll(/href="([^"]*)"/g)].map((m) => decode(m[1]!));
  return [decode(body.replace(/<[^>]+>/g, " ")).replace(/\s+/g, " "), ...links].join("\n");
}

/** A header as it was written (mailparser folds the List-* headers into one structured `list`). */
const headerLine = (mail: ParsedMail, key: string) => mail.headerLines.find((l) => l.key === key)?.line;

/** Every piece of the content, each of which both parts must say. */
const PIECES = [...CONTENT.paragraphs, CONTENT.action!.label, CONTENT.action!.url, ...CONTENT.notes!, "Stop these notices", CONTENT.unsubscribeUrl!];

const MAIL_FROM = testConfig().mailFrom;

describe("smtpTransport", () => {
  let smtp: TestSmtpServer;
  beforeAll(async () => {
    smtp = await new TestSmtpServer().start();
  });
  afterAll(() => smtp.stop());

  it("upgrades with STARTTLS, logs in with the URL's percent-decoded password, and sends both parts from MAIL_FROM", async () => {
    // The password has an @, a space and a slash: the URL can only carry it percent-encoded.
    expect(smtp.url()).toContain(`:${encodeURIComponent(smtp.password)}@`);
    expect(smtp.url()).toMatch(/%40.*%20.*%2F/);
    const transport = smtp.transport();
    try {
      await transport.send(MAIL_FROM, message("dev@example.com"), "mail_starttls");
    } finally {
      transport.close();
    }
    const got = smtp.to("dev@example.com");
    expect(got.length).toBe(1);
    const mail = got[0]!;
    expect(mail.secure).toBe(true);
    expect(mail.user).toBe("keyport");
    expect(mail.envelope.from).toBe("keyport@localhost");
    expect(mail.parsed.from?.value[0]).toEqual({ address: "keyport@localhost", name: "Keyport" });
    expect(mail.parsed.subject).toBe(CONTENT.subject);
    expect(mail.parsed.messageId).toBe("<mail_starttls@keyport>");
    expect(headerLine(mail.parsed, "list-unsubscribe-post")).toBe("List-Unsubscribe-Post: List-Unsubscribe=One-Click");
    const text = mail.parsed.text ?? "";
    const html = typeof mail.parsed.html === "string" ? mail.parsed.html : "";
    expect(text).not.toBe("");
    expect(html).not.toBe("");
    const seen = htmlSays(html);
    const missing = PIECES.filter((p) => !text.includes(p) || !seen.includes(p));
    expect({ missing, text, seen }).toEqual({ missing: [], text, seen });
    // The HTML part escapes what it was given; the one link is the action's, with no image or tracking.
    expect(html).toContain("&lt;b&gt;dev@example.com&lt;/b&gt;");
    expect(html).not.toContain("<b>");
    expect(html).not.toMatch(/<img|<script/i);
  });

  it("rejects the send when the server refuses the password, and nothing is delivered", async () => {
    const before = smtp.received.length;
    const wrong = smtpTransport(`smtp://keyport:${encodeURIComponent("not the password")}@127.0.0.1:${smtp.port}`, { ca: smtp.cert, servername: "localhost" });
    try {
      const err = await rejection(wrong.send(MAIL_FROM, message("refused@example.com"), "mail_wrong_password"));
      expect(err.message).toMatch(/Invalid login|535/);
    } finally {
      wrong.close();
    }
    expect(smtp.received.length).toBe(before);
  });

  it("verifies the certificate of a server named by its IP address against the certificate's IP names", async () => {
    // SNI cannot carry an IP address (Node refuses it); the first version of smtpTransport
    // sent the URL's host as SNI and so could not reach any server by address.
    const byAddress = smtpTransport(smtp.url(), { ca: smtp.cert });
    try {
      await byAddress.send(MAIL_FROM, message("by-address@example.com"), "mail_by_address");
    } finally {
      byAddress.close();
    }
    expect(smtp.to("by-address@example.com").map((m) => m.secure)).toEqual([true]);
  });

  it("refuses a server whose certificate it does not trust, before logging in", async () => {
    const before = smtp.received.length;
    const untrusting = smtpTransport(smtp.url());
    try {
      const err = await rejection(untrusting.send(MAIL_FROM, message("untrusted@example.com"), "mail_untrusted"));
      expect(err.message).toMatch(/certificate/i);
    } finally {
      untrusting.close();
    }
    expect(smtp.received.length).toBe(before);
  });
});

describe("smtpTransport over smtps://", () => {
  let smtps: TestSmtpServer;
  beforeAll(async () => {
    smtps = await new TestSmtpServer("keyport", "s3cret:with/colon", { secure: true }).start();
  });
  afterAll(() => smtps.stop());

  it("speaks TLS from the first byte to a server that expects it, and logs in", async () => {
    expect(smtps.url()).toStartWith("smtps://");
    const transport = smtps.transport();
    try {
      await transport.send(MAIL_FROM, message("tls@example.com"), "mail_smtps");
    } finally {
      transport.close();
    }
    const [mail] = smtps.to("tls@example.com");
    expect(mail?.secure).toBe(true);
    expect(mail?.user).toBe("keyport");
    expect(mail?.parsed.subject).toBe(CONTENT.subject);
  });
});

describe("fileTransport", () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "keyport-file-transport-"));
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it("writes each message as an .eml file only its owner reads, which parses back, and logs one line naming it", async () => {
    // The folder does not exist yet: the transport makes it (DATA_DIR/mail/ on a first run).
    const dir = join(root, "data", "mail");
    const lines: string[] = [];
    const transport = fileTransport(dir, createLogger("debug", (l) => void lines.push(l)));
    try {
      await transport.send(MAIL_FROM, message("file@example.com"), "mail_file1");
    } finally {
      transport.close();
    }
    const files = readdirSync(dir);
    expect(files.length).toBe(1);
    expect(files[0]).toEndWith("-mail_file1.eml");
    const file = join(dir, files[0]!);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);

    const parsed = await simpleParser(readFileSync(file));
    expect(parsed.subject).toBe(CONTENT.subject);
    expect(parsed.from?.value[0]).toEqual({ address: "keyport@localhost", name: "Keyport" });
    const to = Array.isArray(parsed.to) ? parsed.to[0] : parsed.to;
    expect(to?.value[0]?.address).toBe("file@example.com");
    expect(parsed.messageId).toBe("<mail_file1@keyport>");
    expect(headerLine(parsed, "list-unsubscribe-post")).toBe("List-Unsubscribe-Post: List-Unsubscribe=One-Click");
    const text = parsed.text ?? "";
    const seen = htmlSays(typeof parsed.html === "string" ? parsed.html : "");
    expect(PIECES.filter((p) => !text.includes(p) || !seen.includes(p))).toEqual([]);

    expect(lines.length).toBe(1);
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(line).toMatchObject({ level: "info", to: "file@example.com", subject: CONTENT.subject, file });
    // The line names the message; the link it carries stays in the file.
    expect(lines[0]).not.toContain("token=abc");
  });
});
