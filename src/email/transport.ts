import { mkdirSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { join } from "node:path";
import nodemailer from "nodemailer";
import type SMTPTransport from "nodemailer/lib/smtp-transport";
import type { Logger } from "../ops/log.ts";

/** A rendered message: both parts come from the same template (src/email/templates.tsx). */
export interface MailMessage {
  to: string;
  subject: string;
  text: string;
  html: string;
  /** Extra headers: List-Unsubscribe and List-Unsubscribe-Post on notices that can be turned off. */
  headers: Record<string, string>;
}

/** Where mail goes: an SMTP server, or `.eml` files (the embedded default: nothing leaves the machine). */
export interface MailTransport {
  kind: "smtp" | "file";
  /** Resolves when the server accepted the message (or the file is written); rejects with the reason otherwise. */
  send(from: string, message: MailMessage, id: string): Promise<void>;
  close(): void;
}

/** How long an SMTP server has to connect, greet and answer each command. */
const SMTP_TIMEOUT_MS = 15_000;

/**
 * Over SMTP with nodemailer: `smtp://` upgrades with STARTTLS when the server offers it,
 * `smtps://` is TLS from the first byte; the URL's user and password (percent-decoded) log in.
 * `tls` passes options to Node's TLS (a test's own CA); certificates are verified.
 *
 * @example
 * smtpTransport("smtp://keyport:s%40cret@mail.example.com:587")
 */
export function smtpTransport(url: string, tls?: SMTPTransport.Options["tls"]): MailTransport {
  const u = new URL(url);
  const secure = u.protocol === "smtps:";
  const host = u.hostname.replace(/^\[|\]$/g, "");
  const options: SMTPTransport.Options = {
    host,
    port: u.port ? Number(u.port) : secure ? 465 : 587,
    secure,
    auth: u.username ? { user: decodeURIComponent(u.username), pass: decodeURIComponent(u.password) } : undefined,
    connectionTimeout: SMTP_TIMEOUT_MS,
    greetingTimeout: SMTP_TIMEOUT_MS,
    socketTimeout: SMTP_TIMEOUT_MS,
    // SNI takes a host name only (RFC 6066 §3; Node refuses an IP): to an address, the
    // certificate is checked against its IP names instead.
    tls: { ...(isIP(host) ? {} : { servername: host }), ...(tls ?? {}) },
  };
  const transporter = nodemailer.createTransport(options);
  return {
    kind: "smtp",
    async send(from, m, id) {
      await transporter.sendMail({ from, to: m.to, subject: m.subject, text: m.text, html: m.html, headers: m.headers, messageId: `<${id}@keyport>` });
    },
    close: () => transporter.close(),
  };
}

/**
 * Without SMTP_URL: each message as an `.eml` file in `dir` (DATA_DIR/mail/), mode 0600 (a
 * reset mail holds a live link), and one log line naming the recipient, subject and file.
 * The message is built by nodemailer's stream transport, so the file is what SMTP would carry.
 */
export function fileTransport(dir: string, log: Logger): MailTransport {
  const builder = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: "unix" });
  return {
    kind: "file",
    async send(from, m, id) {
      const info = await builder.sendMail({ from, to: m.to, subject: m.subject, text: m.text, html: m.html, headers: m.headers, messageId: `<${id}@keyport>` });
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const file = join(dir, `${new Date().toISOString().replace(/[:.]/g, "-")}-${id}.eml`);
      writeFileSync(file, info.message as Buffer, { mode: 0o600 });
      log.info("mail written", { to: m.to, subject: m.subject, file });
    },
    close: () => builder.close(),
  };
}
