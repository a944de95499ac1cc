import { heapStats } from "bun:jsc";
import { MemoryState } from "../../src/state/memory.ts";

function heapBytes(): number {
  Bun.gc(true);
  return heapStats().heapSize;
}

/**
 * Bytes per rate-limited key held in process: `keys` distinct keys each given one decision
 * at limit 10,000/min, measured as the heap's growth after full collections.
 */
export async function bytesPerKeyInProcess(make: () => { rateLimit(key: string, limit: number, windowMs: number, now: number): unknown; close(): Promise<void> }, keys = 100_000): Promise<number> {
  const state = make();
  const before = heapBytes();
  const now = Date.now();
  // The limiter's key string (`rl:` + a 20-character key id, built per request as the chain
  // does) is part of what it keeps per key, so it is made inside the measurement.
  for (let i = 0; i < keys; i++) await state.rateLimit(`rl:key_${String(i).padStart(16, "0")}`, 10_000, 60_000, now);
  const after = heapBytes();
  await state.close();
  return (after - before) / keys;
}

export const memoryStateBytesPerKey = () => bytesPerKeyInProcess(() => new MemoryState());

/**
 * The same for the service mode's limiter: the lease state a RedisState keeps per key in
 * process (src/state/lease.ts), every key holding a live lease. The store answers at once
 * and grants what is asked, as Redis does for keys far from their limit; Redis' own side
 * is measured with MEMORY USAGE in the service rows.
 */
export async function leaseBytesPerKey(): Promise<number> {
  const { RateLeases } = await import("../../src/state/lease.ts");
  const leases = new RateLeases(
    {
      take: async (_key, _limit, _windowMs, nowUs, _cost, want) => ({ granted: want, base: nowUs, retryUs: 0 }),
      giveBack: async () => {},
    },
    { sweepMs: 3_600_000 },
  );
  return bytesPerKeyInProcess(() => ({
    rateLimit: (k, l, w, n) => leases.decide(k, l, w, n),
    close: () => leases.close(),
  }));
}
