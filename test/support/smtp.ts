import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { simpleParser, type ParsedMail } from "mailparser";
import { SMTPServer } from "smtp-server";
import { smtpTransport, type MailTransport } from "../../src/email/transport.ts";

/** A self-signed certificate for 127.0.0.1 and localhost, made by openssl for one test run. */
function throwawayCertificate(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), "keyport-smtp-cert-"));
  try {
    const out = Bun.spawnSync([
      // P-256 rather than RSA: made and used in a fraction of the time on a loaded machine.
      "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
      "-keyout", join(dir, "key.pem"), "-out", join(dir, "cert.pem"),
      "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]);
    if (out.exitCode !== 0) throw new Error(`openssl failed: ${out.stderr.toString()}`);
    return { key: readFileSync(join(dir, "key.pem"), "utf8"), cert: readFileSync(join(dir, "cert.pem"), "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface ReceivedMail {
  envelope: { from: string; to: string[] };
  /** The user the client logged in as. */
  user: string | undefined;
  /** Whether the session ran over TLS (STARTTLS) when the message came. */
  secure: boolean;
  parsed: ParsedMail;
  raw: string;
}

/**
 * A real SMTP server in the test process (smtp-server): STARTTLS with a throwaway certificate,
 * AUTH required (PLAIN/LOGIN over TLS only), every accepted message parsed (mailparser).
 * With `{ secure: true }` it speaks TLS from the first byte instead (port 465's way, `smtps://`).
 * `stop()` closes the port, `start()` opens the same one again (an outage and its end).
 */
export class TestSmtpServer {
  readonly received: ReceivedMail[] = [];
  readonly cert: string;
  private readonly key: string;
  private server: SMTPServer | undefined;
  port = 0;

  constructor(
    readonly user = "keyport",
    readonly password = "p@ss word/1",
    readonly options: { secure?: boolean } = {},
  ) {
    const c = throwawayCertificate();
    this.cert = c.cert;
    this.key = c.key;
  }

  async start(): Promise<this> {
    const server = new SMTPServer({
      secure: this.options.secure === true,
      // No reverse DNS of the client: the test asks nothing of any resolver.
      disableReverseLookup: true,
      // stop() is an outage: connections still open are cut after 0.1 s, not the default 30 s
      // (a client's socket that lingers after QUIT would otherwise hold the close that long).
      closeTimeout: 100,
      key: this.key,
      cert: this.cert,
      authMethods: ["PLAIN", "LOGIN"],
      authOptional: false,
      allowInsecureAuth: false,
      logger: false,
      onAuth: (auth, _session, done) => {
        if (auth.username === this.user && auth.password === this.password) done(null, { user: auth.username });
        else done(new Error("Invalid username or password"));
      },
      onData: (stream, session, done) => {
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("end", async () => {
          const raw = Buffer.concat(chunks).toString("utf8");
          this.received.push({
            envelope: { from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "", to: session.envelope.rcptTo.map((r) => r.address) },
            user: typeof session.user === "string" ? session.user : undefined,
            secure: session.secure,
            parsed: await simpleParser(raw),
            raw,
          });
          done();
        });
      },
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.port, "127.0.0.1", () => resolve());
    });
    this.port = (server.server.address() as { port: number }).port;
    this.server = server;
    return this;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** `smtp://user:pass@127.0.0.1:port` (`smtps://` when secure), the password percent-encoded as SMTP_URL carries it. */
  url(): string {
    return `${this.options.secure ? "smtps" : "smtp"}://${encodeURIComponent(this.user)}:${encodeURIComponent(this.password)}@127.0.0.1:${this.port}`;
  }

  /** The transport Keyport uses for SMTP_URL, trusting this server's certificate. */
  transport(): MailTransport {
    return smtpTransport(this.url(), { ca: this.cert, servername: "localhost" });
  }

  /** Messages to one address, oldest first. */
  to(address: string): ReceivedMail[] {
    return this.received.filter((m) => m.envelope.to.includes(address));
  }
}

/** The first link in a message's text part that starts with `prefix`. */
export function linkIn(mail: ReceivedMail, prefix: string): string {
  const text = mail.parsed.text ?? "";
  const at = text.indexOf(prefix);
  if (at < 0) throw new Error(`no link starting ${prefix} in:\n${text}`);
  return text.slice(at).split(/\s/)[0]!;
}
