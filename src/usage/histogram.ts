/**
 * Latency histogram bucket upper bounds in milliseconds; the last bucket is open (+Inf).
 * Usage rows store one count per bucket, and p95 is read from them in SQL.
 */
export const LATENCY_BOUNDS_MS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000] as const;
export const BUCKET_COUNT = LATENCY_BOUNDS_MS.length + 1;

export function bucketOf(ms: number): number {
  for (let i = 0; i < LATENCY_BOUNDS_MS.length; i++) if (ms <= LATENCY_BOUNDS_MS[i]!) return i;
  return LATENCY_BOUNDS_MS.length;
}
