import type { Logger } from "../ops/log.ts";
import { createLogger } from "../ops/log.ts";
import { MemoryState } from "./memory.ts";
import { RedisState } from "./redis.ts";
import { ResilientState, type RedisErrorPolicy } from "./resilient.ts";
import type { SharedState } from "./types.ts";

export type { SharedState } from "./types.ts";

/** In-process state, or Redis behind the circuit breaker with the configured outage policy. */
export async function openState(opts: {
  redisUrl?: string;
  prefix?: string;
  clock?: { now(): number };
  policy?: RedisErrorPolicy;
  instanceCount?: number;
  log?: Logger;
}): Promise<SharedState> {
  if (!opts.redisUrl) return new MemoryState(opts.clock);
  const redis = await RedisState.connect(opts.redisUrl, { prefix: opts.prefix });
  return new ResilientState(redis, {
    policy: opts.policy ?? "local",
    instanceCount: opts.instanceCount ?? 1,
    log: opts.log ?? createLogger("info"),
    clock: opts.clock,
  });
}
