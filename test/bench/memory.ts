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
export async function bytesPerKeyInProcess(make: () => { rateLimit(key: string, limit: number, windowMs: number, now: number): Promise<unknown>; close(): Promise<void> }, keys = 100_000): Promise<number> {
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

/** The same for the service mode's limiter: what a RedisState keeps in process per key (its Redis keys are purged after). */
export async function redisLimiterBytesPerKey(redisUrl: string): Promise<number> {
  const { RedisState } = await import("../../src/state/redis.ts");
  const { randomBytes } = await import("node:crypto");
  const state = await RedisState.connect(redisUrl, { prefix: `kpbench:${randomBytes(5).toString("hex")}:` });
  const perKey = await bytesPerKeyInProcess(() => ({
    rateLimit: (k, l, w, n) => state.rateLimit(k, l, w, n),
    close: async () => {},
  }));
  await state.purge();
  await state.close();
  return perKey;
}
