import { createHmac } from "node:crypto";
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { and, desc, eq, lte, sql } from "drizzle-orm";
import type { Deps } from "../deps.ts";
import { isOperator } from "../accounts/service.ts";
import { recordAudit, type Actor } from "../audit/service.ts";
import { Sealer } from "../crypto/seal.ts";
import { analyzeIp } from "../data-api/ip.ts";
import { newId, randomBase62 } from "../ids.ts";
import { DomainError, notFound } from "../errors.ts";
import { TEST_EVENT, type DeliveryView, type WebhookInput, type WebhookSettings, type WebhookView } from "./model.ts";
import { NOTIFICATION_EVENTS, notifications, webhookDeliveries, webhookEndpoints } from "./notify.sql.ts";

type HookDeps = Pick<Deps, "db" | "clock" | "config" | "log">;
type SendDeps = Pick<Deps, "db" | "clock" | "state">;

export const DELIVERY_TIMEOUT_MS = 10_000;
export const RETRY_WINDOW_MS = 24 * 3_600_000;
const FIRST_RETRY_MS = 30_000;
const MAX_RETRY_MS = 2 * 3_600_000;
/** How long a rotated-out signing secret still signs deliveries (Stripe's default for a roll). */
export const SECRET_OVERLAP_MS = 24 * 3_600_000;

function sealer(deps: Pick<Deps, "config">): Sealer {
  if (!deps.config.secretKey) throw new Error("SECRET_KEY is not set");
  return new Sealer(deps.config.secretKey, "webhook-secrets");
}

/**
 * `Keyport-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (Stripe's scheme),
 * one `v1` per secret: during a rotation's overlap the new secret's first, then the old one's.
 * A receiver accepts the delivery when any `v1` matches a secret it holds.
 *
 * @example
 * signPayload(["whsec_new", "whsec_old"], body, 1700000000) // "t=1700000000,v1=<new>,v1=<old>"
 */
export function signPayload(secrets: string | readonly string[], body: string, unixSeconds: number): string {
  const macs = (typeof secrets === "string" ? [secrets] : secrets).map((secret) => `v1=${createHmac("sha256", secret).update(`${unixSeconds}.${body}`).digest("hex")}`);
  return [`t=${unixSeconds}`, ...macs].join(",");
}

/**
 * Test events and resends an account may ask for in an hour, together: each makes this
 * server send a request to a URL the account chose, so without a limit a script could use it
 * to flood a third party from our address.
 */
export const WEBHOOK_SENDS_PER_HOUR = 20;
const HOUR = 3_600_000;

const LOCAL_NAMES = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

function fieldError(message: string): DomainError {
  return new DomainError("invalid_request", "The webhook URL is not valid.", [{ field: "url", message }]);
}

/** https anywhere; plain http only for localhost (development, so a private target: operators only). */
export function parseWebhookUrl(raw: string): URL {
  if (raw.length === 0) throw fieldError("is required");
  if (raw.length > 2000) throw fieldError("must be at most 2000 characters");
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw fieldError("is not a URL");
  }
  if (url.username || url.password) throw fieldError("must not contain credentials");
  if (url.protocol === "http:" && !LOCAL_NAMES.has(url.hostname)) throw fieldError("must use https (plain http only for localhost, where an operator allows private targets)");
  if (url.protocol !== "https:" && url.protocol !== "http:") throw fieldError("must use https");
  return url;
}

/** A host name's addresses. The system's resolver by default; tests inject one that answers as they need. */
export type Resolve = (host: string) => Promise<string[]>;

export const systemResolve: Resolve = async (host) => (await lookup(host, { all: true })).map((a) => a.address);

/**
 * SSRF guard: the host must resolve only to public addresses; private, loopback,
 * link-local (incl. the 169.254.169.254 metadata service) and other non-global ranges are
 * refused unless an operator allowed private targets for this endpoint. Returns the
 * addresses checked: a delivery connects to one of them and resolves nothing again, so a
 * name that answers differently the next time (DNS rebinding) cannot redirect it. The
 * refusal does not name the address it found: that would let anyone read private DNS.
 */
export async function assertPublicTarget(url: URL, allowPrivate: boolean, resolve: Resolve = systemResolve): Promise<string[]> {
  const host = url.hostname.replace(/^\[|\]$/g, "");
  let addresses: string[];
  if (isIP(host)) addresses = [host];
  else {
    try {
      addresses = await resolve(host);
    } catch {
      addresses = [];
    }
    if (!addresses.length) throw new DomainError("invalid_request", "The webhook URL is not valid.", [{ field: "url", message: `host ${host} does not resolve` }]);
  }
  if (allowPrivate) return addresses;
  for (const a of addresses) {
    const info = analyzeIp(a);
    if (!info || info.private || info.loopback || info.reserved) {
      throw new DomainError("webhook_target_refused", "The webhook host is not a public address; only an operator's account may allow private targets.", [
        { field: "url", message: "is not a public address" },
      ]);
    }
  }
  return addresses;
}

/** The codes of a connection that never opened: the next checked address may still answer. */
const NOT_CONNECTED = new Set(["ECONNREFUSED", "ConnectionRefused", "EHOSTUNREACH", "ENETUNREACH", "EADDRNOTAVAIL", "FailedToOpenSocket"]);

/**
 * A request to `url` sent to one of the checked `addresses`, in order, and never to what the
 * name resolves to by then: the URL names the address, the Host header and (https) the TLS
 * server name — so SNI and the certificate check — name the host as the receiver expects.
 * The next address is tried only when a connection could not be opened. No connection is
 * kept for reuse: one opened for another host name must not carry this request.
 */
async function pinnedFetch(doFetch: typeof fetch, url: URL, addresses: string[], init: RequestInit): Promise<Response> {
  const named = isIP(url.hostname.replace(/^\[|\]$/g, "")) === 0;
  let last: unknown;
  for (const address of addresses) {
    const target = new URL(url);
    target.hostname = address.includes(":") ? `[${address}]` : address;
    const headers = new Headers(init.headers);
    headers.set("host", url.host);
    try {
      return await doFetch(target, { ...init, headers, keepalive: false, ...(named && url.protocol === "https:" ? { tls: { serverName: url.hostname } } : {}) });
    } catch (err) {
      // The delivery's error names the endpoint's host, as the account wrote it.
      if (err instanceof Error && named) err.message = err.message.replaceAll(target.host, url.host);
      if (!NOT_CONNECTED.has(String((err as { code?: unknown }).code))) throw err;
      last = err;
    }
  }
  throw last;
}

/**
 * Sets the account's endpoint: its URL, the events it gets and (an operator's account only)
 * whether private targets are allowed. Creating it makes the signing secret, returned this
 * once; changing it keeps its secrets, so a receiver's verification goes on working.
 */
export async function setWebhook(
  deps: HookDeps,
  accountId: string,
  input: WebhookInput,
  who: Actor,
  callerIsOperator: boolean,
  resolve: Resolve = systemResolve,
): Promise<{ url: string; allowPrivate: boolean; events: string[]; secret?: string }> {
  const url = parseWebhookUrl(input.url);
  const allowPrivate = callerIsOperator && input.allowPrivate === true;
  // An operator's private target may be a name only the delivering host resolves.
  if (!allowPrivate) await assertPublicTarget(url, false, resolve);
  // Every event is stored as "all", so events added in a later version are sent too.
  const events = input.events && input.events.length < NOTIFICATION_EVENTS.length ? input.events : null;
  const secret = `whsec_${randomBase62(32)}`;
  const now = new Date(deps.clock.now());
  const values = { url: url.toString(), allowPrivate, events };
  const created = await deps.db.transaction(async (tx) => {
    const inserted = await tx
      .insert(webhookEndpoints)
      .values({ accountId, ...values, secretSealed: sealer(deps).seal(secret, accountId), createdAt: now })
      .onConflictDoNothing({ target: webhookEndpoints.accountId })
      .returning({ accountId: webhookEndpoints.accountId });
    if (!inserted.length) await tx.update(webhookEndpoints).set(values).where(eq(webhookEndpoints.accountId, accountId));
    await recordAudit(tx, who, { accountId, action: "webhook.set", changes: { url: url.toString(), allowPrivate, events: events ?? "all" } }, now);
    return inserted.length > 0;
  });
  return { url: url.toString(), allowPrivate, events: events ?? [...NOTIFICATION_EVENTS], ...(created ? { secret } : {}) };
}

/** Until when the secret a rotation replaced still signs, or null once it no longer does (an expired one is never used). */
function overlapEnd(e: typeof webhookEndpoints.$inferSelect, now: number): Date | null {
  return e.previousSecretSealed && e.previousSecretExpiresAt && e.previousSecretExpiresAt.getTime() > now ? e.previousSecretExpiresAt : null;
}

/** The account's endpoint as the API shows it (never a secret), or null. */
export async function webhookEndpoint(deps: Pick<Deps, "db" | "clock">, accountId: string): Promise<WebhookView | null> {
  const [row] = await deps.db.select().from(webhookEndpoints).where(eq(webhookEndpoints.accountId, accountId));
  if (!row) return null;
  return {
    url: row.url,
    allowPrivate: row.allowPrivate,
    events: row.events ?? [...NOTIFICATION_EVENTS],
    previousSecretExpiresAt: overlapEnd(row, deps.clock.now())?.toISOString() ?? null,
    createdAt: row.createdAt.toISOString(),
  };
}

/** The webhook section of Settings (src/accounts/settings.ts loads it by this name). */
export async function getWebhook(deps: Pick<Deps, "db" | "clock">, accountId: string): Promise<WebhookSettings> {
  const [endpoint, mayAllowPrivate] = await Promise.all([webhookEndpoint(deps, accountId), isOperator(deps, accountId)]);
  return { endpoint, mayAllowPrivate };
}

/** Removes the endpoint; its pending deliveries are given up (a later endpoint must not get them). */
export async function deleteWebhook(deps: Pick<Deps, "db" | "clock">, accountId: string, who: Actor): Promise<void> {
  const now = new Date(deps.clock.now());
  await deps.db.transaction(async (tx) => {
    const gone = await tx.delete(webhookEndpoints).where(eq(webhookEndpoints.accountId, accountId)).returning({ url: webhookEndpoints.url });
    if (!gone.length) return;
    await tx
      .update(webhookDeliveries)
      .set({ state: "gave_up", lastError: "the endpoint was removed" })
      .where(and(eq(webhookDeliveries.accountId, accountId), eq(webhookDeliveries.state, "pending")));
    await recordAudit(tx, who, { accountId, action: "webhook.deleted", changes: { url: gone[0]!.url } }, now);
  });
}

/**
 * A new signing secret, returned this once. The replaced one goes on signing deliveries
 * (a second `v1`) for 24 h, so receivers can switch to the new one without refusing any;
 * a second rotation within them drops the oldest.
 */
export async function rotateWebhookSecret(deps: HookDeps, accountId: string, who: Actor): Promise<{ secret: string; previousSecretExpiresAt: string }> {
  const secret = `whsec_${randomBase62(32)}`;
  const now = new Date(deps.clock.now());
  const expires = new Date(now.getTime() + SECRET_OVERLAP_MS);
  await deps.db.transaction(async (tx) => {
    // One UPDATE: its SET reads the row as it was, so the current secret becomes the previous one atomically.
    const rotated = await tx
      .update(webhookEndpoints)
      .set({ previousSecretSealed: sql`${webhookEndpoints.secretSealed}`, previousSecretExpiresAt: expires, secretSealed: sealer(deps).seal(secret, accountId) })
      .where(eq(webhookEndpoints.accountId, accountId))
      .returning({ url: webhookEndpoints.url });
    if (!rotated.length) throw noWebhook();
    await recordAudit(tx, who, { accountId, action: "webhook.secret_rotated", changes: { previousSecretExpiresAt: expires.toISOString() } }, now);
  });
  return { secret, previousSecretExpiresAt: expires.toISOString() };
}

/** Spends one of the account's manual sends (test events and resends), or refuses with too_many_attempts. */
async function spendManualSend(deps: SendDeps, accountId: string): Promise<void> {
  const decision = await deps.state.rateLimit(`webhook-sends:${accountId}`, WEBHOOK_SENDS_PER_HOUR, HOUR, deps.clock.now());
  if (!decision.allowed) {
    throw new DomainError("too_many_attempts", `Too many test events and resends: at most ${WEBHOOK_SENDS_PER_HOUR} an hour. Try again later.`, undefined, Math.max(1, Math.ceil(decision.retryAfterMs / 1000)));
  }
}

/** A `webhook.test` delivery to the endpoint, due now: sent, signed and retried like any other. Throttled with resends. */
export async function sendTestEvent(deps: SendDeps, accountId: string): Promise<string> {
  const [endpoint] = await deps.db.select({ url: webhookEndpoints.url }).from(webhookEndpoints).where(eq(webhookEndpoints.accountId, accountId));
  if (!endpoint) throw noWebhook();
  await spendManualSend(deps, accountId);
  const now = new Date(deps.clock.now());
  const id = newId("dlv");
  await deps.db.insert(webhookDeliveries).values({ id, accountId, notificationId: null, event: TEST_EVENT, url: endpoint.url, state: "pending", nextAttemptAt: now, createdAt: now });
  return id;
}

const noWebhook = () => new DomainError("no_webhook", "Set a webhook URL first.");

export async function listDeliveries(deps: Pick<Deps, "db">, accountId: string, limit = 50): Promise<DeliveryView[]> {
  const rows = await deps.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.accountId, accountId)).orderBy(desc(webhookDeliveries.createdAt), desc(webhookDeliveries.id)).limit(limit);
  return rows.map((d) => ({
    id: d.id,
    event: d.event,
    url: d.url,
    state: d.state,
    attempts: d.attempts,
    lastStatus: d.lastStatus,
    lastError: d.lastError,
    nextAttemptAt: d.nextAttemptAt.toISOString(),
    createdAt: d.createdAt.toISOString(),
    deliveredAt: d.deliveredAt?.toISOString() ?? null,
  }));
}

/** "Resend": a fresh delivery of the same notification, due now, with a fresh retry window. Throttled with test events. */
export async function resendDelivery(deps: SendDeps, accountId: string, deliveryId: string): Promise<string> {
  const [d] = await deps.db
    .select()
    .from(webhookDeliveries)
    .where(and(eq(webhookDeliveries.id, deliveryId), eq(webhookDeliveries.accountId, accountId)));
  if (!d) throw notFound("delivery");
  const [endpoint] = await deps.db.select().from(webhookEndpoints).where(eq(webhookEndpoints.accountId, accountId));
  if (!endpoint) throw noWebhook();
  await spendManualSend(deps, accountId);
  const now = new Date(deps.clock.now());
  const id = newId("dlv");
  await deps.db.insert(webhookDeliveries).values({ id, accountId, notificationId: d.notificationId, event: d.event, url: endpoint.url, state: "pending", nextAttemptAt: now, createdAt: now });
  return id;
}

export interface DeliveryRun {
  attempted: number;
  delivered: number;
  failed: number;
  gaveUp: number;
}

/**
 * Sends the deliveries that are due. Each attempt is signed with a fresh timestamp; a 2xx
 * marks it delivered, anything else (status, timeout, refused target) schedules a retry
 * with exponential backoff until 24 h after it was created, then it is given up.
 */
export async function deliverDue(deps: HookDeps, opts: { fetch?: typeof fetch; limit?: number; resolve?: Resolve } = {}): Promise<DeliveryRun> {
  const doFetch = opts.fetch ?? fetch;
  const now = deps.clock.now();
  const run: DeliveryRun = { attempted: 0, delivered: 0, failed: 0, gaveUp: 0 };
  const due = await deps.db
    .select({ d: webhookDeliveries, n: notifications, e: webhookEndpoints })
    .from(webhookDeliveries)
    .leftJoin(notifications, eq(notifications.id, webhookDeliveries.notificationId))
    .innerJoin(webhookEndpoints, eq(webhookEndpoints.accountId, webhookDeliveries.accountId))
    .where(and(eq(webhookDeliveries.state, "pending"), lte(webhookDeliveries.nextAttemptAt, new Date(now))))
    .orderBy(webhookDeliveries.nextAttemptAt)
    .limit(opts.limit ?? 50);
  for (const { d, n, e } of due) {
    run.attempted++;
    // A test event is no notification: the delivery is the event.
    const body = n
      ? JSON.stringify({ id: n.id, type: n.event, createdAt: n.createdAt.toISOString(), data: { keyId: n.keyId, ...n.data } })
      : JSON.stringify({ id: d.id, type: d.event, createdAt: d.createdAt.toISOString(), data: {} });
    let status: number | null = null;
    let error: string | null = null;
    try {
      const url = new URL(e.url);
      const addresses = await assertPublicTarget(url, e.allowPrivate, opts.resolve);
      const secrets = [sealer(deps).open(e.secretSealed, e.accountId)];
      if (e.previousSecretSealed && overlapEnd(e, deps.clock.now())) secrets.push(sealer(deps).open(e.previousSecretSealed, e.accountId));
      const res = await pinnedFetch(doFetch, url, addresses, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "Keyport-Webhooks/1",
          "keyport-signature": signPayload(secrets, body, Math.floor(deps.clock.now() / 1000)),
          "keyport-event": d.event,
          "keyport-delivery": d.id,
        },
        body,
        redirect: "manual",
        signal: AbortSignal.timeout(DELIVERY_TIMEOUT_MS),
      });
      status = res.status;
      await res.body?.cancel().catch(() => {});
      if (res.status < 200 || res.status >= 300) error = `answered ${res.status}`;
    } catch (err) {
      error = err instanceof DomainError ? err.detail : (err as Error).name === "TimeoutError" ? `no answer within ${DELIVERY_TIMEOUT_MS / 1000} s` : (err as Error).message;
    }
    const attempts = d.attempts + 1;
    const at = new Date(deps.clock.now());
    if (!error) {
      run.delivered++;
      await deps.db.update(webhookDeliveries).set({ state: "delivered", attempts, lastStatus: status, lastError: null, deliveredAt: at }).where(eq(webhookDeliveries.id, d.id));
      continue;
    }
    const next = now + Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** (attempts - 1));
    const giveUp = next - d.createdAt.getTime() > RETRY_WINDOW_MS;
    if (giveUp) run.gaveUp++;
    else run.failed++;
    await deps.db
      .update(webhookDeliveries)
      .set({ state: giveUp ? "gave_up" : "pending", attempts, lastStatus: status, lastError: error.slice(0, 500), nextAttemptAt: new Date(next) })
      .where(eq(webhookDeliveries.id, d.id));
  }
  if (run.attempted) deps.log.info("webhook deliveries", { ...run });
  return run;
}
