import { Counter, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export interface Metrics {
  registry: Registry;
  httpRequests: Counter<"method" | "route" | "status">;
  httpDuration: Histogram<"method" | "route">;
  /** One answered request into httpRequests and httpDuration. */
  recordRequest(method: string, route: string, status: number, seconds: number): void;
}

/** Counts kept by the stores themselves, exposed as counters read at scrape time. */
export interface MetricSources {
  /** Statements sent to the database (Database.queryCount). */
  dbQueries?: () => number;
  /** Commands sent to Redis (SharedState.commandCount). */
  redisCommands?: () => number;
  /** Statements sent by usage flushes, a background part of dbQueries (UsageMeter.queries). */
  usageFlushQueries?: () => number;
  /** Key verifications that went to the database: the request path's only statements (KeyCache.misses). */
  keyLookups?: () => number;
}

/** A counter whose value is read from `read` at each scrape: the hot path pays nothing. */
function readCounter(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** A registry per app, so tests that build several apps do not share counters. */
export function createMetrics(sources: MetricSources = {}): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "keyport_" });
  if (sources.dbQueries) readCounter(registry, "keyport_db_queries_total", "Statements sent to the database", sources.dbQueries);
  if (sources.usageFlushQueries) readCounter(registry, "keyport_usage_flush_queries_total", "Statements sent by usage flushes (part of keyport_db_queries_total)", sources.usageFlushQueries);
  if (sources.keyLookups) readCounter(registry, "keyport_key_lookups_total", "Key verifications that missed the cache and queried the database", sources.keyLookups);
  if (sources.redisCommands) readCounter(registry, "keyport_redis_commands_total", "Commands sent to Redis (a script call counts once)", sources.redisCommands);
  const httpRequests = new Counter({
    name: "keyport_http_requests_total",
    help: "HTTP requests answered, by route template and status",
    labelNames: ["method", "route", "status"] as const,
    registers: [registry],
  });
  const httpDuration = new Histogram({
    name: "keyport_http_request_duration_seconds",
    help: "Time to answer an HTTP request, by route template",
    labelNames: ["method", "route"] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  return {
    registry,
    httpRequests,
    httpDuration,
    recordRequest(method, route, status, seconds) {
      httpRequests.inc({ method, route, status: String(status) });
      httpDuration.observe({ method, route }, seconds);
    },
  };
}
