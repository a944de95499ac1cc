import { createHmac } from "node:crypto";
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { and, desc, eq, lte } from "drizzle-orm";
import type { Deps } from "../deps.ts";
import { recordAudit, type Actor } from "../audit/service.ts";
import { Sealer } from "../crypto/seal.ts";
import { analyzeIp } from "../data-api/ip.ts";
import { newId, randomBase62 } from "../ids.ts";
import { DomainError, notFound } from "../errors.ts";
import type { DeliveryView, WebhookInput } from "./model.ts";
import { notifications, webhookDeliveries, webhookEndpoints } from "./notify.sql.ts";

type HookDeps = Pick<Deps, "db" | "clock" | "config" | "log">;

export const DELIVERY_TIMEOUT_MS = 10_000;
export const RETRY_WINDOW_MS = 24 * 3_600_000;
const FIRST_RETRY_MS = 30_000;
const MAX_RETRY_MS = 2 * 3_600_000;

function sealer(deps: Pick<Deps, "config">): Sealer {
  if (!deps.config.secretKey) throw new Error("SECRET_KEY is not set");
  return new Sealer(deps.config.secretKey, "webhook-secrets");
}

/** `Keyport-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (Stripe's scheme). */
export function signPayload(secret: string, body: string, unixSeconds: number): string {
  const mac = createHmac("sha256", secret).update(`${unixSeconds}.${body}`).digest("hex");
  return `t=${unixSeconds},v1=${mac}`;
}

const LOCAL_NAMES = new Set(["localhost", "127.0.0.1", "::1", "[::1]"]);

function fieldError(message: string): DomainError {
  return new DomainError("invalid_request", "The webhook URL is not valid.", [{ field: "url", message }]);
}

/** https anywhere; plain http only for localhost (development). */
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
  if (url.protocol === "http:" && !LOCAL_NAMES.has(url.hostname)) throw fieldError("must use https (plain http only for localhost)");
  if (url.protocol !== "https:" && url.protocol !== "http:") throw fieldError("must use https");
  return url;
}

/**
 * SSRF guard: the host must resolve only to public addresses; private, loopback,
 * link-local (incl. the 169.254.169.254 metadata service) and other non-global ranges are
 * refused unless an operator allowed private targets for this endpoint.
 */
export async function assertPublicTarget(url: URL, allowPrivate: boolean): Promise<void> {
  if (allowPrivate) return;
  const host = url.hostname.replace(/^\[|\]$/g, "");
  let addresses: string[];
  if (isIP(host)) addresses = [host];
  else {
    try {
      addresses = (await lookup(host, { all: true })).map((a) => a.address);
    } catch {
      throw new DomainError("invalid_request", "The webhook URL is not valid.", [{ field: "url", message: `host ${host} does not resolve` }]);
    }
  }
  for (const a of addresses) {
    const info = analyzeIp(a);
    if (!info || info.private || info.loopback || info.reserved) {
      throw new DomainError("webhook_target_refused", `The webhook host resolves to a non-public address (${a}); an operator must allow private targets for it.`, [
        { field: "url", message: "resolves to a private, loopback, link-local or reserved address" },
      ]);
    }
  }
}

/** Sets the account's endpoint; the signing secret is returned this once. */
export async function setWebhook(
  deps: HookDeps,
  accountId: string,
  input: WebhookInput,
  who: Actor,
  callerIsOperator: boolean,
): Promise<{ url: string; secret: string; allowPrivate: boolean }> {
  const url = parseWebhookUrl(input.url);
  const allowPrivate = callerIsOperator && input.allowPrivate === true;
  await assertPublicTarget(url, allowPrivate);
  const secret = `whsec_${randomBase62(32)}`;
  const now = new Date(deps.clock.now());
  await deps.db.transaction(async (tx) => {
    const values = { url: url.toString(), secretSealed: sealer(deps).seal(secret, accountId), allowPrivate, createdAt: now };
    await tx
      .insert(webhookEndpoints)
      .values({ accountId, ...values })
      .onConflictDoUpdate({ target: webhookEndpoints.accountId, set: values });
    await recordAudit(tx, who, { accountId, action: "webhook.set", changes: { url: url.toString(), allowPrivate } }, now);
  });
  return { url: url.toString(), secret, allowPrivate };
}

export async function getWebhook(deps: Pick<Deps, "db">, accountId: string): Promise<{ url: string; allowPrivate: boolean; createdAt: string } | null> {
  const [row] = await deps.db.select().from(webhookEndpoints).where(eq(webhookEndpoints.accountId, accountId));
  return row ? { url: row.url, allowPrivate: row.allowPrivate, createdAt: row.createdAt.toISOString() } : null;
}

export async function deleteWebhook(deps: Pick<Deps, "db" | "clock">, accountId: string, who: Actor): Promise<void> {
  const now = new Date(deps.clock.now());
  await deps.db.transaction(async (tx) => {
    await tx.delete(webhookEndpoints).where(eq(webhookEndpoints.accountId, accountId));
    await recordAudit(tx, who, { accountId, action: "webhook.deleted" }, now);
  });
}

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

/** "Resend": a fresh delivery of the same notification, due now, with a fresh retry window. */
export async function resendDelivery(deps: Pick<Deps, "db" | "clock">, accountId: string, deliveryId: string): Promise<string> {
  const [d] = await deps.db
    .select()
    .from(webhookDeliveries)
    .where(and(eq(webhookDeliveries.id, deliveryId), eq(webhookDeliveries.accountId, accountId)));
  if (!d) throw notFound("delivery");
  const [endpoint] = await deps.db.select().from(webhookEndpoints).where(eq(webhookEndpoints.accountId, accountId));
  if (!endpoint) throw new DomainError("no_webhook", "Set a webhook URL first.");
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
export async function deliverDue(deps: HookDeps, opts: { fetch?: typeof fetch; limit?: number } = {}): Promise<DeliveryRun> {
  const doFetch = opts.fetch ?? fetch;
  const now = deps.clock.now();
  const run: DeliveryRun = { attempted: 0, delivered: 0, failed: 0, gaveUp: 0 };
  const due = await deps.db
    .select({ d: webhookDeliveries, n: notifications, e: webhookEndpoints })
    .from(webhookDeliveries)
    .innerJoin(notifications, eq(notifications.id, webhookDeliveries.notificationId))
    .innerJoin(webhookEndpoints, eq(webhookEndpoints.accountId, webhookDeliveries.accountId))
    .where(and(eq(webhookDeliveries.state, "pending"), lte(webhookDeliveries.nextAttemptAt, new Date(now))))
    .orderBy(webhookDeliveries.nextAttemptAt)
    .limit(opts.limit ?? 50);
  for (const { d, n, e } of due) {
    run.attempted++;
    const body = JSON.stringify({ id: n.id, type: n.event, createdAt: n.createdAt.toISOString(), data: { keyId: n.keyId, ...n.data } });
    let status: number | null = null;
    let error: string | null = null;
    try {
      const url = new URL(e.url);
      await assertPublicTarget(url, e.allowPrivate);
      const secret = sealer(deps).open(e.secretSealed, e.accountId);
      const res = await doFetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "Keyport-Webhooks/1",
          "keyport-signature": signPayload(secret, body, Math.floor(deps.clock.now() / 1000)),
          "keyport-event": n.event,
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
