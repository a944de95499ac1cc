import { setDefaultTimeout } from "bun:test";

// bunfig preload: tests never inherit the developer's Keyport environment.
for (const name of ["DATABASE_URL", "REDIS_URL", "PORT", "DATA_DIR", "SECRET_KEY", "KEY_PREFIX"]) delete process.env[name];

// Tests that start processes or databases take seconds; none may take minutes.
setDefaultTimeout(60_000);
