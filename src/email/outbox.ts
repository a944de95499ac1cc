import { and, count, eq, gte, inArray, sql } from "drizzle-orm";
import { Sealer } from "../crypto/seal.ts";
import type { Db, Tx } from "../db/client.ts";
import type { Deps } from "../deps.ts";
import { newId } from "../ids.ts";
import { emailOutbox } from "./email.sql.ts";
import type { MailTransport } from "./transport.ts";
import { renderMessage, type MailKind } from "./messages.ts";

/** What the outbox needs: the store, the clock, the sealing key, the transport and the counters. */
export type MailDeps = Pick<Deps, "db" | "clock" | "config" | "log" | "mailer">;

/** The mail side of Deps: the transport and what it has done (read by /metrics). */
export interface Mailer {
  transport: MailTransport;
  sent: number;
  failed: number;
}

/** First retry after 30 s, doubling to at most an hour; after 24 h of failures the message is failed for good. */
const FIRST_RETRY_MS = 30_000;
const MAX_RETRY_MS = 3_600_000;
export const MAIL_RETRY_WINDOW_MS = 24 * 3_600_000;
/** A claimed message not marked sent or failed within this is claimable again (its sender died). */
const CLAIM_MS = 120_000;
/**
 * A run starts no send this long after its claim: the rest of the batch is left to the claim's
 * end, when any run takes it again. A slow server (each send may wait out nodemailer's 15 s
 * timeouts) would otherwise have this run send a message another run had claimed meanwhile.
 */
const CLAIM_SEND_MS = CLAIM_MS / 2;

function sealer(config: Deps["config"]): Sealer {
  if (!config.secretKey) throw new Error("SECRET_KEY is not set");
  return new Sealer(config.secretKey, "mail-outbox");
}

/** A message to queue: its template and data; `secret` is the template's sealed part (a single-use link). */
export interface OutgoingMail {
  accountId: string | null;
  to: string;
  kind: MailKind;
  data?: Record<string, unknown>;
  secret?: Record<string, string>;
}

/**
 * Puts a message in the outbox inside the caller's transaction, so it is sent exactly when
 * the change it tells of commits (and never when it rolls back).
 */
export async function enqueueMail(tx: Tx | Db, deps: Pick<Deps, "config" | "clock">, mail: OutgoingMail): Promise<string> {
  const id = newId("mail");
  const now = new Date(deps.clock.now());
  const secretSealed = mail.secret ? sealer(deps.config).seal(JSON.stringify(mail.secret), id) : null;
  await tx.insert(emailOutbox).values({ id, accountId: mail.accountId, to: mail.to, kind: mail.kind, data: mail.data ?? {}, secretSealed, status: "queued", nextAttemptAt: now, createdAt: now });
  return id;
}

/**
 * A notice into the outbox inside the caller's transaction, at the notification's time:
 * emit() (src/notify/service.ts) has the transaction and the instant, not Deps, and a notice
 * carries nothing secret (its data names the notification), so nothing is sealed.
 */
export async function enqueueNotice(tx: Tx | Db, mail: Omit<OutgoingMail, "secret">, at: Date): Promise<string> {
  const id = newId("mail");
  await tx.insert(emailOutbox).values({ id, accountId: mail.accountId, to: mail.to, kind: mail.kind, data: mail.data ?? {}, secretSealed: null, status: "queued", nextAttemptAt: at, createdAt: at });
  return id;
}

export interface MailRun {
  attempted: number;
  sent: number;
  skipped: number;
  retrying: number;
  failed: number;
}

/**
 * Sends what is due. Messages are claimed first (their next attempt moved past the claim
 * window, `FOR UPDATE SKIP LOCKED`), so two instances never send one message twice; a sender
 * that dies mid-send leaves its claim to expire. A refusal or an unreachable server retries
 * with backoff; a message still failing 24 h after it was queued is marked failed (operators
 * see it) and its body dropped.
 */
export async function deliverMail(deps: MailDeps, opts: { limit?: number } = {}): Promise<MailRun> {
  const run: MailRun = { attempted: 0, sent: 0, skipped: 0, retrying: 0, failed: 0 };
  const now = deps.clock.now();
  // The instant goes into the raw subquery as ISO text: drizzle maps a Date to the driver only
  // through a column, and postgres.js refuses a bare Date parameter (PGlite takes one).
  const claimed = await deps.db
    .update(emailOutbox)
    .set({ nextAttemptAt: new Date(now + CLAIM_MS) })
    .where(
      inArray(
        emailOutbox.id,
        sql`(select ${emailOutbox.id} from ${emailOutbox} where ${emailOutbox.status} = 'queued' and ${emailOutbox.nextAttemptAt} <= ${new Date(now).toISOString()} order by ${emailOutbox.nextAttemptAt} limit ${opts.limit ?? 20} for update skip locked)`,
      ),
    )
    .returning();
  // In the order they were queued: the newer of two reset links must not arrive first.
  claimed.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const m of claimed) {
    if (deps.clock.now() - now > CLAIM_SEND_MS) break;
    run.attempted++;
    let error: string | null = null;
    let skipped = false;
    try {
      const secret = m.secretSealed ? (JSON.parse(sealer(deps.config).open(m.secretSealed, m.id)) as Record<string, string>) : {};
      const message = await renderMessage(deps, { accountId: m.accountId, to: m.to, kind: m.kind as MailKind, data: m.data }, secret);
      if (message === null) skipped = true;
      else await deps.mailer.transport.send(deps.config.mailFrom, message, m.id);
    } catch (err) {
      error = (err as Error).message || String(err);
    }
    const attempts = m.attempts + 1;
    const at = new Date(deps.clock.now());
    if (skipped) {
      run.skipped++;
      await deps.db.update(emailOutbox).set({ status: "skipped", attempts, secretSealed: null, lastError: null }).where(eq(emailOutbox.id, m.id));
      continue;
    }
    if (!error) {
      run.sent++;
      deps.mailer.sent++;
      await deps.db.update(emailOutbox).set({ status: "sent", attempts, sentAt: at, secretSealed: null, lastError: null }).where(eq(emailOutbox.id, m.id));
      continue;
    }
    // The last retry is at the 24 h mark itself, so a message is failed only once it has
    // really been failing for 24 h (not at the attempt before, when the next would pass it).
    const deadline = m.createdAt.getTime() + MAIL_RETRY_WINDOW_MS;
    const giveUp = at.getTime() >= deadline;
    const next = Math.min(deadline, at.getTime() + Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (attempts - 1)));
    deps.mailer.failed++;
    if (giveUp) {
      run.failed++;
      await deps.db.update(emailOutbox).set({ status: "failed", attempts, failedAt: at, secretSealed: null, lastError: error.slice(0, 500) }).where(eq(emailOutbox.id, m.id));
      deps.log.error("mail failed for good", { id: m.id, kind: m.kind, to: m.to, attempts, error: error.slice(0, 200) });
    } else {
      run.retrying++;
      await deps.db.update(emailOutbox).set({ attempts, nextAttemptAt: new Date(next), lastError: error.slice(0, 500) }).where(eq(emailOutbox.id, m.id));
      deps.log.warn("mail not sent; retrying", { id: m.id, kind: m.kind, attempts, retryAt: new Date(next).toISOString(), error: error.slice(0, 200) });
    }
  }
  return run;
}

/** Messages waiting to be sent (the /metrics gauge). */
export async function queuedMail(db: Db): Promise<number> {
  const [row] = await db.select({ n: count() }).from(emailOutbox).where(eq(emailOutbox.status, "queued"));
  return row?.n ?? 0;
}

/** Messages that failed for good, newest first (the operators' page). */
export async function failedMail(db: Db, limit = 50) {
  return db
    .select({ id: emailOutbox.id, to: emailOutbox.to, kind: emailOutbox.kind, attempts: emailOutbox.attempts, lastError: emailOutbox.lastError, createdAt: emailOutbox.createdAt, failedAt: emailOutbox.failedAt })
    .from(emailOutbox)
    .where(eq(emailOutbox.status, "failed"))
    .orderBy(sql`${emailOutbox.failedAt} desc`)
    .limit(limit);
}

/** An account's queued and sent messages, newest first (tests and the settings page). */
export async function accountMail(db: Db, accountId: string, since?: Date) {
  return db
    .select()
    .from(emailOutbox)
    .where(and(eq(emailOutbox.accountId, accountId), since ? gte(emailOutbox.createdAt, since) : undefined))
    .orderBy(sql`${emailOutbox.createdAt} desc`);
}
