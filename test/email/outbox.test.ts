import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import { simpleParser } from "mailparser";
import { createAccount } from "../../src/accounts/service.ts";
import { cliActor } from "../../src/audit/service.ts";
import type { Config } from "../../src/config.ts";
import { emailOutbox } from "../../src/email/email.sql.ts";
import type { MailKind } from "../../src/email/messages.ts";
import { deliverMail, enqueueMail, MAIL_RETRY_WINDOW_MS, queuedMail, type MailDeps } from "../../src/email/outbox.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { createLogger } from "../../src/ops/log.ts";
import { assembleDeps, type OwnedDeps } from "../../src/runtime.ts";
import { backends, freshDatabase, freshState, testConfig, UNMETERED_PLANS, type Backend } from "../support/backends.ts";
import { Browser } from "../support/browser.ts";
import { rejection } from "../support/fixtures.ts";
import { startHarness, TEST_PASSWORDS, type Harness } from "../support/harness.ts";
import { linkIn, TestSmtpServer } from "../support/smtp.ts";

const OPERATOR_PASSWORD = "operator passphrase 1";
const address = (tag: string) => `${tag}-${randomBytes(4).toString("hex")}@example.com`;

/** A reset mail as the password-reset service queues it: the single-use link is the sealed secret. */
async function queueReset(deps: Pick<MailDeps, "db" | "config" | "clock">, to = address("reset")) {
  const token = randomBytes(32).toString("base64url");
  const url = `${deps.config.publicUrl}/reset-password?token=${token}`;
  const id = await deps.db.transaction((tx) => enqueueMail(tx, deps, { accountId: null, to, kind: "password_reset", secret: { url } }));
  return { id, to, token, url };
}

async function row(deps: Pick<MailDeps, "db">, id: string) {
  const [r] = await deps.db.select().from(emailOutbox).where(eq(emailOutbox.id, id));
  return r;
}

/** Sends whatever is due until nothing is (mail queued by set-up: an operator's account, a sign-up). */
async function drain(deps: MailDeps): Promise<void> {
  for (let i = 0; i < 20; i++) if ((await deliverMail(deps)).attempted === 0) return;
  throw new Error("the outbox did not drain in 20 runs");
}

/** The three mail series of /metrics. */
async function mailMetrics(h: Harness): Promise<{ sent: number; failed: number; queued: number }> {
  const text = await (await h.req("/metrics")).text();
  const value = (name: string) => {
    const m = text.match(new RegExp(`^${name} (\\S+)$`, "m"));
    if (!m) throw new Error(`no ${name} in /metrics:\n${text.slice(0, 2000)}`);
    return Number(m[1]);
  };
  return { sent: value("keyport_mail_sent_total"), failed: value("keyport_mail_failed_total"), queued: value("keyport_mail_queued") };
}

/**
 * Deps as buildDeps assembles them over a fresh database and DATA_DIR, with no mailTransport:
 * the runtime picks the transport from the config.
 */
async function assembleLikeBuildDeps(backend: Backend, dataDir: string, lines: string[], overrides: Partial<Config> = {}): Promise<OwnedDeps> {
  const config: Config = { ...testConfig(), plansFile: UNMETERED_PLANS, dataDir, databaseUrl: backend.databaseUrl, redisUrl: backend.redisUrl, ...overrides };
  const log = createLogger("debug", (l) => void lines.push(l));
  return assembleDeps(config, await freshDatabase(backend), await freshState(backend), { clock: new ManualClock(), log, passwords: TEST_PASSWORDS });
}

for (const backend of backends) {
  describe(`mail outbox [${backend.name}]`, () => {
    const clock = new ManualClock();
    let smtp: TestSmtpServer;
    let h: Harness;
    let operator: Browser;
    beforeAll(async () => {
      smtp = await new TestSmtpServer().start();
      h = await startHarness(backend, { clock, mailTransport: smtp.transport(), config: { plansFile: UNMETERED_PLANS } });
      // The first account of a database is an operator.
      const email = address("op");
      await createAccount(h.deps, { email, password: OPERATOR_PASSWORD }, cliActor);
      operator = new Browser(h);
      const login = await operator.post("/login", { email, password: OPERATOR_PASSWORD });
      if (login.status !== 303) throw new Error(`operator login failed: ${login.status}`);
      await drain(h.deps);
    });
    afterAll(async () => {
      await h.close();
      await smtp.stop();
    });

    it("queues nothing when the transaction of the change rolls back, and the message when it commits", async () => {
      const to = address("rolled-back");
      let id = "";
      const err = await rejection(
        h.deps.db.transaction(async (tx) => {
          id = await enqueueMail(tx, h.deps, { accountId: null, to, kind: "password_changed" });
          throw new Error("the change failed");
        }),
      );
      expect(err.message).toBe("the change failed");
      expect(id).toStartWith("mail_");
      expect(await row(h.deps, id)).toBeUndefined();
      expect(await deliverMail(h.deps)).toMatchObject({ attempted: 0 });
      expect(smtp.to(to)).toEqual([]);

      const committed = await h.deps.db.transaction((tx) => enqueueMail(tx, h.deps, { accountId: null, to, kind: "password_changed" }));
      expect(await row(h.deps, committed)).toMatchObject({ status: "queued", attempts: 0, to, kind: "password_changed" });
      expect(await deliverMail(h.deps)).toEqual({ attempted: 1, sent: 1, skipped: 0, retrying: 0, failed: 0 });
      expect(smtp.to(to).map((m) => m.parsed.subject)).toEqual(["Your Keyport password was changed"]);
    });

    it("sends a queued message once, marks it sent and drops its sealed link", async () => {
      const { id, to, url } = await queueReset(h.deps);
      expect((await row(h.deps, id))?.secretSealed).toBeString();
      expect(await deliverMail(h.deps)).toEqual({ attempted: 1, sent: 1, skipped: 0, retrying: 0, failed: 0 });
      const sent = await row(h.deps, id);
      expect(sent).toMatchObject({ status: "sent", attempts: 1, secretSealed: null, lastError: null, sentAt: new Date(clock.now()) });
      const got = smtp.to(to);
      expect(got.length).toBe(1);
      expect(got[0]!.parsed.subject).toBe("Reset your Keyport password");
      expect(got[0]!.parsed.from?.value[0]).toEqual({ address: "keyport@localhost", name: "Keyport" });
      expect(linkIn(got[0]!, `${h.deps.config.publicUrl}/reset-password`)).toBe(url);
      // Sent is sent: the next run finds nothing due.
      expect(await deliverMail(h.deps)).toMatchObject({ attempted: 0 });
      expect(smtp.to(to).length).toBe(1);
    });

    it("keeps a message through an SMTP outage, retries it 30 s later, and sends it exactly once when the server is back", async () => {
      const { id, to, url } = await queueReset(h.deps);
      await smtp.stop();
      try {
        const queuedAt = clock.now();
        expect(await deliverMail(h.deps)).toEqual({ attempted: 1, sent: 0, skipped: 0, retrying: 1, failed: 0 });
        const waiting = await row(h.deps, id);
        expect(waiting).toMatchObject({ status: "queued", attempts: 1, nextAttemptAt: new Date(queuedAt + 30_000) });
        expect(waiting?.lastError).toMatch(/ECONNREFUSED/);
        // Its link is kept for the retry.
        expect(waiting?.secretSealed).toBeString();
        clock.advance(29_999);
        expect(await deliverMail(h.deps)).toMatchObject({ attempted: 0 });
      } finally {
        await smtp.start();
      }
      clock.advance(1);
      expect(await deliverMail(h.deps)).toEqual({ attempted: 1, sent: 1, skipped: 0, retrying: 0, failed: 0 });
      expect(await row(h.deps, id)).toMatchObject({ status: "sent", attempts: 2, secretSealed: null, lastError: null });
      clock.advance(3_600_000);
      expect(await deliverMail(h.deps)).toMatchObject({ attempted: 0 });
      const got = smtp.to(to);
      expect(got.length).toBe(1);
      expect(linkIn(got[0]!, `${h.deps.config.publicUrl}/reset-password`)).toBe(url);
    });

    it("sends nothing twice when deliveries race (two instances in service mode, concurrent runs on one otherwise)", async () => {
      const second = backend.name === "service" ? await startHarness(backend, { share: h, clock, mailTransport: smtp.transport(), config: { plansFile: UNMETERED_PLANS } }) : undefined;
      try {
        const mails = await Promise.all(Array.from({ length: 6 }, () => queueReset(h.deps)));
        const other = second?.deps ?? h.deps;
        // Four runs of two: between them they claim all six, each message by one run only.
        const runs = await Promise.all([deliverMail(h.deps, { limit: 2 }), deliverMail(other, { limit: 2 }), deliverMail(h.deps, { limit: 2 }), deliverMail(other, { limit: 2 })]);
        expect(runs.reduce((n, r) => n + r.sent, 0)).toBe(6);
        expect(runs.every((r) => r.attempted === r.sent)).toBe(true);
        expect(await deliverMail(h.deps)).toMatchObject({ attempted: 0 });
        expect(mails.map((m) => smtp.to(m.to).length)).toEqual([1, 1, 1, 1, 1, 1]);
        for (const m of mails) expect(await row(h.deps, m.id)).toMatchObject({ status: "sent", attempts: 1 });
      } finally {
        await second?.close();
      }
    });

    it("starts no send late in its claim, leaving the rest of the batch to the claim's end, so a slow server cannot make two runs send one message", async () => {
      const mails = [await queueReset(h.deps), await queueReset(h.deps), await queueReset(h.deps)];
      const claimedAt = clock.now();
      const fast = h.deps.mailer.transport;
      // A server that takes 70 s to accept a message (on the test's clock).
      h.deps.mailer.transport = {
        ...fast,
        async send(from, message, id) {
          clock.advance(70_000);
          await fast.send(from, message, id);
        },
      };
      try {
        expect(await deliverMail(h.deps)).toMatchObject({ attempted: 1, sent: 1 });
      } finally {
        h.deps.mailer.transport = fast;
      }
      // The other two stay claimed (another run finds nothing) until the claim's two minutes end.
      const rows = await Promise.all(mails.map((m) => row(h.deps, m.id)));
      expect(rows.map((r) => `${r?.status} ${r?.attempts}`).sort()).toEqual(["queued 0", "queued 0", "sent 1"]);
      for (const r of rows.filter((r) => r?.status === "queued")) expect(r?.nextAttemptAt).toEqual(new Date(claimedAt + 120_000));
      expect(await deliverMail(h.deps)).toMatchObject({ attempted: 0 });
      clock.set(claimedAt + 120_000);
      expect(await deliverMail(h.deps)).toMatchObject({ attempted: 2, sent: 2 });
      expect(mails.map((m) => smtp.to(m.to).length)).toEqual([1, 1, 1]);
    });

    it("retries a failing message after 30 s, doubling to an hour, and marks it failed at the 24 h mark with its link dropped", async () => {
      const reset = await queueReset(h.deps, address("never-delivered"));
      const queuedAt = clock.now();
      const deadline = queuedAt + MAIL_RETRY_WINDOW_MS;
      const failedBefore = h.deps.mailer.failed;
      const attempt = async (at: number) => {
        clock.set(at);
        expect(await deliverMail(h.deps)).toMatchObject({ attempted: 1, sent: 0 });
        return (await row(h.deps, reset.id))!;
      };
      await smtp.stop();
      const gaps: number[] = [];
      try {
        // Each retry when it is due.
        let r = await attempt(queuedAt);
        for (let i = 0; i < 8; i++) {
          gaps.push((r.nextAttemptAt.getTime() - clock.now()) / 1000);
          r = await attempt(r.nextAttemptAt.getTime());
        }
        expect(r.status).toBe("queued");
        // Nearly a day later (say the process was down): one more try, and the next at the 24 h mark itself.
        r = await attempt(deadline - 1);
        expect(r).toMatchObject({ status: "queued", nextAttemptAt: new Date(deadline) });
        expect(r.secretSealed).toBeString();
        r = await attempt(deadline);
      } finally {
        await smtp.start();
      }
      expect(gaps).toEqual([30, 60, 120, 240, 480, 960, 1920, 3600]);
      const failed = await row(h.deps, reset.id);
      expect(failed).toMatchObject({ status: "failed", attempts: 11, secretSealed: null, failedAt: new Date(deadline) });
      expect(failed?.lastError).toMatch(/ECONNREFUSED/);
      expect(h.deps.mailer.failed - failedBefore).toBe(11);
      expect(h.logs.filter((l) => l.includes('"mail failed for good"') && l.includes(reset.id)).length).toBe(1);
      // Failed is final: the server is back, and nothing is sent.
      clock.advance(3_600_000);
      expect(await deliverMail(h.deps)).toMatchObject({ attempted: 0 });
      expect(smtp.to(reset.to)).toEqual([]);
    });

    it("lists failed messages on /admin/mail for operators, every value escaped, and is the 404 page to anyone else", async () => {
      const reset = await queueReset(h.deps, address("undelivered"));
      // A message whose every field is hostile: its template does not exist, so it fails to
      // render (its error names the template) whether or not the server is up.
      const hostile = "<script>alert(1)</script>";
      const hostileId = await h.deps.db.transaction((tx) => enqueueMail(tx, h.deps, { accountId: null, to: `"<img src=x onerror=alert(2)>"@example.com`, kind: hostile as MailKind }));
      await smtp.stop();
      try {
        expect(await deliverMail(h.deps)).toMatchObject({ attempted: 2, retrying: 2 });
        // The next try, a day later, is past the 24 h: both fail for good.
        clock.advance(MAIL_RETRY_WINDOW_MS);
        expect(await deliverMail(h.deps)).toMatchObject({ attempted: 2, failed: 2 });
      } finally {
        await smtp.start();
      }
      expect(await row(h.deps, hostileId)).toMatchObject({ status: "failed", lastError: `no template ${hostile}` });

      const page = await operator.page("/admin/mail");
      expect(page).toContain(reset.to);
      expect(page).toContain("password_reset");
      expect(page).toContain("ECONNREFUSED");
      expect(page).toMatch(/Waiting to be sent<\/dt>\s*<dd>0<\/dd>/);
      expect(page).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
      expect(page).toContain("&lt;img src=x onerror=alert(2)&gt;");
      expect(page).not.toContain(hostile);
      expect(page).not.toContain("<img");
      // The link the mail would have carried is not on the page.
      expect(page).not.toContain(reset.token);

      const customer = new Browser(h);
      await customer.signUp(address("customer"));
      const hidden = await customer.get("/admin/mail");
      expect(hidden.status).toBe(404);
      expect(await hidden.text()).not.toContain(reset.to);
      const visitor = await new Browser(h).get("/admin/mail");
      expect(visitor.status).toBe(303);
    });

    it("counts sent, failed and queued mail on /metrics", async () => {
      await drain(h.deps);
      const start = await mailMetrics(h);
      expect(start.queued).toBe(0);
      const mails = [await queueReset(h.deps), await queueReset(h.deps)];
      expect(await mailMetrics(h)).toEqual({ ...start, queued: 2 });
      await smtp.stop();
      try {
        expect(await deliverMail(h.deps)).toMatchObject({ retrying: 2 });
      } finally {
        await smtp.start();
      }
      expect(await mailMetrics(h)).toEqual({ sent: start.sent, failed: start.failed + 2, queued: 2 });
      clock.advance(30_000);
      expect(await deliverMail(h.deps)).toMatchObject({ sent: 2 });
      expect(await mailMetrics(h)).toEqual({ sent: start.sent + 2, failed: start.failed + 2, queued: 0 });
      expect(mails.map((m) => smtp.to(m.to).length)).toEqual([1, 1]);
    });

    it("keeps the reset link out of every log line and out of the outbox row; only the mail carries it", async () => {
      const { id, to, token, url } = await queueReset(h.deps);
      const queued = await row(h.deps, id);
      expect(JSON.stringify(queued)).not.toContain(token);
      expect(queued?.secretSealed).toBeString();
      expect(queued?.secretSealed).not.toContain(token);
      expect(queued?.secretSealed).not.toContain(Buffer.from(url).toString("base64"));
      expect(queued?.data).toEqual({});
      // One failed attempt (its warning is logged) and one that sends.
      await smtp.stop();
      try {
        expect(await deliverMail(h.deps)).toMatchObject({ retrying: 1 });
      } finally {
        await smtp.start();
      }
      clock.advance(30_000);
      expect(await deliverMail(h.deps)).toMatchObject({ sent: 1 });
      expect(h.logs.some((l) => l.includes('"mail not sent; retrying"') && l.includes(id))).toBe(true);
      expect(h.logs.filter((l) => l.includes(token))).toEqual([]);
      expect(JSON.stringify(await row(h.deps, id))).not.toContain(token);
      expect(linkIn(smtp.to(to)[0]!, `${h.deps.config.publicUrl}/reset-password`)).toBe(url);
    });
  });

  describe(`mail without SMTP_URL, as the runtime assembles it [${backend.name}]`, () => {
    const lines: string[] = [];
    let dataDir: string;
    let deps: OwnedDeps;
    beforeAll(async () => {
      dataDir = mkdtempSync(join(tmpdir(), "keyport-data-"));
      deps = await assembleLikeBuildDeps(backend, dataDir, lines);
    });
    afterAll(async () => {
      await deps.close();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it("writes each message to DATA_DIR/mail/ as an .eml file only its owner reads, with one log line", async () => {
      expect(deps.config.smtpUrl).toBeUndefined();
      expect(deps.mailer.transport.kind).toBe("file");
      const { to, url, token } = await queueReset(deps);
      expect(await queuedMail(deps.db)).toBe(1);
      expect(await deliverMail(deps)).toEqual({ attempted: 1, sent: 1, skipped: 0, retrying: 0, failed: 0 });
      expect(await queuedMail(deps.db)).toBe(0);

      const dir = join(dataDir, "mail");
      const files = readdirSync(dir);
      expect(files.length).toBe(1);
      expect(files[0]).toEndWith(".eml");
      const file = join(dir, files[0]!);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const parsed = await simpleParser(readFileSync(file));
      expect(parsed.subject).toBe("Reset your Keyport password");
      expect(parsed.from?.value[0]).toEqual({ address: "keyport@localhost", name: "Keyport" });
      expect(parsed.text).toContain(url);
      expect(typeof parsed.html === "string" && parsed.html.includes(url)).toBe(true);

      const written = lines.filter((l) => l.includes('"mail written"'));
      expect(written.length).toBe(1);
      expect(JSON.parse(written[0]!)).toMatchObject({ level: "info", to, subject: "Reset your Keyport password", file });
      expect(lines.filter((l) => l.includes(token))).toEqual([]);
    });
  });

  describe(`mail with SMTP_URL, as the runtime assembles it [${backend.name}]`, () => {
    let dataDir: string;
    let smtp: TestSmtpServer;
    let deps: OwnedDeps;
    beforeAll(async () => {
      dataDir = mkdtempSync(join(tmpdir(), "keyport-data-"));
      smtp = await new TestSmtpServer().start();
      deps = await assembleLikeBuildDeps(backend, dataDir, [], { smtpUrl: smtp.url() });
    });
    afterAll(async () => {
      await deps.close();
      await smtp.stop();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it("sends over SMTP instead, verifying the server's certificate", async () => {
      expect(deps.mailer.transport.kind).toBe("smtp");
      const { id } = await queueReset(deps);
      // The test server's certificate is its own, which nothing here trusts: the mail waits.
      expect(await deliverMail(deps)).toMatchObject({ retrying: 1 });
      expect((await row(deps, id))?.lastError).toMatch(/certificate/i);
      expect(smtp.received).toEqual([]);
      expect(readdirSync(dataDir)).not.toContain("mail");
    });
  });
}
