import { migratedTemplate, prewarm } from "./support/embedded.ts";
import { timeHooks } from "./support/timings.ts";

// bunfig preload: tests never inherit the developer's Keyport environment.
for (const name of ["DATABASE_URL", "REDIS_URL", "PORT", "DATA_DIR", "SECRET_KEY", "KEY_PREFIX"]) delete process.env[name];

// CI reads how long each hook took (.ci/slowest.ts).
if (process.env.KP_TEST_TIMINGS) timeHooks(process.env.KP_TEST_TIMINGS);

// The migrated embedded database every harness copies: made here, before any test or hook
// runs, so its one initdb (seconds, on the first run after a migration changes; cached
// after that) counts against no test's timeout.
// Two workers holding it are started too: suites hold up to two harnesses at once.
await migratedTemplate();
await prewarm(2);
