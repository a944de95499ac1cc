import { runBillingSweep } from "./billing/service.ts";
import type { Deps } from "./deps.ts";
import { deliverDue } from "./notify/webhooks.ts";
import { runSweep } from "./rotation/service.ts";
import { deliverMail } from "./email/outbox.ts";
import { processLeaks } from "./leaks/service.ts";

/**
 * Background timers of a serving process besides the usage flush: the rotation sweep, the
 * billing sweep (due plan changes, the previous month's invoices), webhook and mail
 * delivery, and leak reports (an intake acts on its reports at once; this takes up the ones
 * a failed or interrupted run left pending, on the webhooks' pace). A
 * run never overlaps the previous one; errors are logged, not thrown. Stopped by a
 * shutdown hook (the last run is awaited).
 */
export function startJobs(deps: Deps): void {
  const every = (name: string, ms: number, job: () => Promise<unknown>) => {
    let running: Promise<unknown> | undefined;
    const timer = setInterval(() => {
      if (running) return;
      running = job()
        .catch((err) => deps.log.error(`${name} failed`, { error: (err as Error).message }))
        .finally(() => (running = undefined));
    }, ms);
    timer.unref?.();
    deps.shutdown.register(`${name} stopped`, async () => {
      clearInterval(timer);
      await running;
    });
  };
  every("rotation sweep", deps.config.rotationSweepMs, () => runSweep(deps));
  every("billing sweep", deps.config.rotationSweepMs, () => runBillingSweep(deps));
  every("webhook delivery", deps.config.webhookDeliveryMs, () => deliverDue(deps));
  every("mail delivery", deps.config.mailDeliveryMs, () => deliverMail(deps));
  every("leak processing", deps.config.webhookDeliveryMs, () => processLeaks(deps));
}
