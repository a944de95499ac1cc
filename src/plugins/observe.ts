import { Elysia } from "elysia";
import type { Logger } from "../ops/log.ts";
import type { Metrics } from "../ops/metrics.ts";

/**
 * Requests not yet through their after-response hooks (the meter records there). Shutdown
 * waits for zero before the last usage flush, so an answered request is always counted.
 */
export interface InFlight {
  n: number;
}

let sequence = 0;
const instanceTag = crypto.randomUUID().slice(0, 8);

/** Unique per process and cheap: no entropy needed for a correlation id. */
export function newRequestId(): string {
  return `req_${instanceTag}${(++sequence).toString(36).padStart(7, "0")}`;
}

/**
 * X-Request-Id on every answer, one JSON log line per request, and the request counter and
 * latency histogram by route template (the template, not the path: bounded label values).
 */
export const observePlugin = (log: Logger, metrics: Metrics, inflight: InFlight) =>
  new Elysia({ name: "observe" })
    .onRequest(() => void inflight.n++)
    .derive({ as: "global" }, ({ set }) => {
      const requestId = newRequestId();
      set.headers["x-request-id"] = requestId;
      return { requestId, startedAt: performance.now() };
    })
    .onAfterResponse({ as: "global" }, (ctx) => {
      inflight.n--;
      const { request, set, route } = ctx;
      const startedAt = (ctx as { startedAt?: number }).startedAt;
      const ms = startedAt === undefined ? 0 : performance.now() - startedAt;
      const answered = (ctx as { responseValue?: unknown }).responseValue;
      const status = answered instanceof Response ? answered.status : typeof set.status === "number" ? set.status : 200;
      const template = route || "unmatched";
      metrics.httpRequests.inc({ method: request.method, route: template, status: String(status) });
      metrics.httpDuration.observe({ method: request.method, route: template }, ms / 1000);
      log.info("request", {
        requestId: (ctx as { requestId?: string }).requestId,
        method: request.method,
        route: template,
        status,
        ms: Math.round(ms * 100) / 100,
      });
    });
