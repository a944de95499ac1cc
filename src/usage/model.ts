import { z } from "zod";

/** `?days=N`: a whole number within [min, max], `fallback` when absent or empty. */
export const daysQuery = (min: number, max: number, fallback: number) => {
  const message = `must be a whole number from ${min} to ${max}`;
  return z.preprocess(
    (v) => (v === undefined || v === "" ? undefined : v),
    z
      .string()
      .regex(/^\d+$/, message)
      .transform(Number)
      .pipe(z.number().min(min, message).max(max, message))
      .optional()
      .default(fallback),
  );
};

/** The ranges a key's page charts, in days; any other `?days=` shows the first. */
export const USAGE_RANGES = [7, 30, 90] as const;
export const usageRangeQuery = z.object({
  days: z
    .preprocess(Number, z.number())
    .refine((n) => (USAGE_RANGES as readonly number[]).includes(n))
    .catch(USAGE_RANGES[0]),
});

export const usageQuery = z.object({ days: daysQuery(1, 366, 30).describe("Days back from today, 1-366 (default 30).") });

const latency = z.number().nullable().describe("Milliseconds; null when there were no requests.");

export const usageReportSchema = z.object({
  keyId: z.string(),
  days: z.number().int(),
  from: z.string().describe("The first day, YYYY-MM-DD (UTC)."),
  to: z.string().describe("The last day, today (UTC)."),
  daily: z.array(z.object({ day: z.string(), successes: z.number().int(), errors: z.number().int(), avgLatencyMs: latency, p95LatencyMs: latency })),
  topEndpoints: z.array(z.object({ endpoint: z.string(), requests: z.number().int(), errors: z.number().int() })),
  summary: z.object({
    total: z.number().int(),
    successes: z.number().int(),
    errors: z.number().int(),
    errorRate: z.number().describe("errors / total, 0-1."),
    avgLatencyMs: latency,
    p95LatencyMs: latency,
  }),
});
export type UsageReport = z.output<typeof usageReportSchema>;
export type DailyUsage = UsageReport["daily"][number];
export type EndpointUsage = UsageReport["topEndpoints"][number];
