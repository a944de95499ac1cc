import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric, type MetricValueWithName } from "prom-client";
import { logLinesDropped } from "./log.ts";

/** One (method, route template) series: counts by status, latency histogram buckets (not cumulative), sum. */
interface Series {
  method: string;
  route: string;
  statuses: Map<number, number>;
  buckets: number[];
  sum: number;
  count: number;
}

/**
 * Answered requests counted in plain maps and arrays, read into prom-client when /metrics
 * is scraped. prom-client's own inc/observe validate and hash their labels on every call:
 * a sixth of the data API's request path (measured by CPU profile), for two numbers.
 */
class RequestStats {
  private readonly byRoute = new Map<string, Map<string, Series>>();

  record(method: string, route: string, status: number, seconds: number, bucket: number): void {
    let byMethod = this.byRoute.get(route);
    if (!byMethod) this.byRoute.set(route, (byMethod = new Map()));
    let s = byMethod.get(method);
    if (!s) byMethod.set(method, (s = { method, route, statuses: new Map(), buckets: [], sum: 0, count: 0 }));
    s.statuses.set(status, (s.statuses.get(status) ?? 0) + 1);
    s.buckets[bucket] = (s.buckets[bucket] ?? 0) + 1;
    s.sum += seconds;
    s.count++;
  }

  *all(): Generator<Series> {
    for (const byMethod of this.byRoute.values()) yield* byMethod.values();
  }
}

/**
 * A histogram by method and route whose observations RequestStats keeps; at each scrape it
 * hands prom-client's registry the series in the shape of prom-client's own histograms
 * (cumulative `_bucket` with `le`, `_sum`, `_count`), and the registry writes the text.
 */
class AccumulatedHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly bounds: number[],
    private readonly stats: RequestStats,
  ) {}

  /** Index of the first bound ≥ seconds; bounds.length for +Inf. */
  bucketOf(seconds: number): number {
    const b = this.bounds;
    for (let i = 0; i < b.length; i++) if (seconds <= b[i]!) return i;
    return b.length;
  }

  async get(): Promise<{ name: string; help: string; type: "histogram"; aggregator: "sum"; values: MetricValueWithName<string>[] }> {
    const values: MetricValueWithName<string>[] = [];
    for (const s of this.stats.all()) {
      const labels = { method: s.method, route: s.route };
      let acc = 0;
      for (let i = 0; i < this.bounds.length; i++) {
        acc += s.buckets[i] ?? 0;
        values.push({ labels: { le: this.bounds[i]!, ...labels }, value: acc, metricName: `${this.name}_bucket` });
      }
      values.push({ labels: { le: "+Inf", ...labels }, value: s.count, metricName: `${this.name}_bucket` });
      values.push({ labels, value: s.sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: s.count, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: "histogram", aggregator: "sum", values };
  }

  reset(): void {}
}

export interface Metrics {
  registry: Registry;
  /** One answered request: keyport_http_requests_total and keyport_http_request_duration_seconds. */
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
  /** The usage meter's batches written, their rows, and the last one's span (UsageMeter.flushes, flushedRows, lastFlush). */
  usageFlushes?: () => { flushes: number; rows: number; last: { startedAt: number; endedAt: number; rows: number } | undefined };
  /** Key verifications that went to the database: the request path's only statements (KeyCache.misses). */
  keyLookups?: () => number;
  /** Mail accepted by the SMTP server (or written to a file), and failed attempts (src/email/outbox.ts). */
  mailSent?: () => number;
  mailFailed?: () => number;
  /** Messages waiting in the outbox (a query at scrape time). */
  mailQueued?: () => Promise<number>;
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

/** A gauge whose value is read from `read` at each scrape. */
function readGauge(registry: Registry, name: string, help: string, read: () => number): void {
  new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read());
    },
  });
}

/** A registry per app, so tests that build several apps do not share counters. */
export function createMetrics(sources: MetricSources = {}): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "keyport_" });
  if (sources.dbQueries) readCounter(registry, "keyport_db_queries_total", "Statements sent to the database", sources.dbQueries);
  if (sources.usageFlushQueries) readCounter(registry, "keyport_usage_flush_queries_total", "Statements sent by usage flushes (part of keyport_db_queries_total)", sources.usageFlushQueries);
  const flushes = sources.usageFlushes;
  if (flushes) {
    readCounter(registry, "keyport_usage_flushes_total", "Usage batches written to the database", () => flushes().flushes);
    readCounter(registry, "keyport_usage_flushed_rows_total", "Usage rows (key, day, endpoint) written by those batches", () => flushes().rows);
    readGauge(registry, "keyport_usage_last_flush_duration_seconds", "How long the last usage batch took to write, from its first row built to its last part committed", () => {
      const last = flushes().last;
      return last ? (last.endedAt - last.startedAt) / 1000 : Number.NaN;
    });
    readGauge(registry, "keyport_usage_last_flush_end_timestamp_seconds", "When the last usage batch was written (Unix time)", () => {
      const last = flushes().last;
      return last ? last.endedAt / 1000 : Number.NaN;
    });
    readGauge(registry, "keyport_usage_last_flush_rows", "Rows in the last usage batch written", () => flushes().last?.rows ?? Number.NaN);
  }
  if (sources.keyLookups) readCounter(registry, "keyport_key_lookups_total", "Key verifications that missed the cache and queried the database", sources.keyLookups);
  if (sources.mailSent) readCounter(registry, "keyport_mail_sent_total", "Mail accepted by the SMTP server or written to DATA_DIR/mail", sources.mailSent);
  if (sources.mailFailed) readCounter(registry, "keyport_mail_failed_total", "Mail send attempts that failed (each retried until 24 h have passed)", sources.mailFailed);
  const mailQueued = sources.mailQueued;
  if (mailQueued) {
    new Gauge({
      name: "keyport_mail_queued",
      help: "Mail waiting in the outbox",
      registers: [registry],
      async collect() {
        this.set(await mailQueued().catch(() => Number.NaN));
      },
    });
  }
  if (sources.redisCommands) readCounter(registry, "keyport_redis_commands_total", "Commands sent to Redis (a script call counts once)", sources.redisCommands);
  readCounter(registry, "keyport_log_lines_dropped_total", "Log lines dropped because stdout was slower than them and the log buffer was full", logLinesDropped);
  const stats = new RequestStats();
  new Counter({
    name: "keyport_http_requests_total",
    help: "HTTP requests answered, by route template and status",
    labelNames: ["method", "route", "status"] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const s of stats.all()) for (const [status, n] of s.statuses) this.inc({ method: s.method, route: s.route, status: String(status) }, n);
    },
  });
  const httpDuration = new AccumulatedHistogram(
    "keyport_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template",
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    stats,
  );
  registry.registerMetric(httpDuration as unknown as Metric);
  return {
    registry,
    recordRequest(method, route, status, seconds) {
      stats.record(method, route, status, seconds, httpDuration.bucketOf(seconds));
    },
  };
}
