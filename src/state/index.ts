import { MemoryState } from "./memory.ts";
import { RedisState } from "./redis.ts";
import type { SharedState } from "./types.ts";

export type { SharedState } from "./types.ts";

export async function openState(opts: { redisUrl?: string; prefix?: string; clock?: { now(): number } }): Promise<SharedState> {
  return opts.redisUrl ? RedisState.connect(opts.redisUrl, { prefix: opts.prefix }) : new MemoryState(opts.clock);
}
