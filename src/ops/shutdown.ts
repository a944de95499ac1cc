import type { Logger } from "./log.ts";

export type ShutdownHook = { name: string; run: () => Promise<void> | void };

/** Hooks run in registration order at SIGTERM/SIGINT (e.g. the last usage flush). */
export class Shutdown {
  private readonly hooks: ShutdownHook[] = [];
  register(name: string, run: ShutdownHook["run"]): void {
    this.hooks.push({ name, run });
  }
  async run(log: Logger): Promise<boolean> {
    let ok = true;
    for (const hook of this.hooks.splice(0)) {
      const started = performance.now();
      try {
        await hook.run();
        log.info("shutdown step done", { step: hook.name, ms: Math.round(performance.now() - started) });
      } catch (err) {
        ok = false;
        log.error("shutdown step failed", { step: hook.name, error: (err as Error).message });
      }
    }
    return ok;
  }
}
