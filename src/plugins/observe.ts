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
  return `req_${instanceTag}${(++sequence).toString(36)}`;
}

/** Records one answered request: the counter and latency histogram by route template, and the access log line. */
export type RequestRecorder = (method: string, route: string, status: number, ms: number, requestId: string | undefined) => void;

/**
 * Route templates whose access lines get their own child logger (method and route serialised
 * once). Templates are bounded by the app's routes, methods of unmatched requests are not:
 * past this many, lines carry the two fields themselves, as every line did before.
 */
const MAX_ROUTE_LOGGERS = 1024;

export function requestRecorder(log: Logger, metrics: Metrics): RequestRecorder {
  // The level is fixed at start: with the access log off, no line's fields are built.
  const logRequests = log.enabled("info");
  // route → method → a logger bound to both: pino writes the pair from its cache, where
  // serialising them on every line was a third of the line's cost (src/ops/log.ts).
  const byRoute = new Map<string, Map<string, Logger>>();
  let routeLoggers = 0;
  const lineLogger = (method: string, route: string): Logger | undefined => {
    let byMethod = byRoute.get(route);
    const found = byMethod?.get(method);
    if (found !== undefined || routeLoggers >= MAX_ROUTE_LOGGERS) return found;
    if (byMethod === undefined) byRoute.set(route, (byMethod = new Map()));
    const child = log.child({ method, route });
    byMethod.set(method, child);
    routeLoggers++;
    return child;
  };
  return (method, route, status, ms, requestId) => {
    metrics.recordRequest(method, route, status, ms / 1000);
    if (!logRequests) return;
    const rounded = Math.round(ms * 100) / 100;
    const bound = lineLogger(method, route);
    if (bound !== undefined) bound.info("request", { requestId, status, ms: rounded });
    else log.info("request", { requestId, method, route, status, ms: rounded });
  };
}

/**
 * X-Request-Id on every answer, one JSON log line per request, and the request counter and
 * latency histogram by route template (the template, not the path: bounded label values).
 * The data API's routes (src/gateway/route.ts) do the same in their own handler, without
 * Elysia's per-request hooks; they are registered before this plugin, so it skips them.
 */
export const observePlugin = (record: RequestRecorder, inflight: InFlight) =>
  new Elysia({ name: "observe" })
    // Counted from the route's first hook, not onRequest: onRequest runs for every request,
    // also the data API's, whose handlers count themselves.
    .derive({ as: "global" }, ({ set }) => {
      inflight.n++;
      const requestId = newRequestId();
      set.headers["x-request-id"] = requestId;
      return { requestId, startedAt: performance.now() };
    })
    .onAfterResponse({ as: "global" }, (ctx) => {
      const { request, set, route } = ctx;
      const startedAt = (ctx as { startedAt?: number }).startedAt;
      // A request refused before the derive ran (an unparsable body, no route) was not counted.
      if (startedAt !== undefined) inflight.n--;
      const ms = startedAt === undefined ? 0 : performance.now() - startedAt;
      const answered = (ctx as { responseValue?: unknown }).responseValue;
      const status = answered instanceof Response ? answered.status : typeof set.status === "number" ? set.status : 200;
      record(request.method, route || "unmatched", status, ms, (ctx as { requestId?: string }).requestId);
    });
