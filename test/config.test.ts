import { describe, expect, it } from "bun:test";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, ensureSecretKey, parseConfig } from "../src/config.ts";

describe("config", () => {
  it("applies the documented defaults to an empty environment", () => {
    const c = parseConfig({});
    expect(c).toMatchObject({ port: 3000, keyPrefix: "kp", usageFlushMs: 5000, logLevel: "info", logBufferBytes: 4 * 1024 * 1024, databaseUrl: undefined, redisUrl: undefined });
    expect(c.dataDir.endsWith("/data")).toBe(true);
  });

  it("leaves /metrics open unless METRICS_TOKEN is set, and keeps the token as given", () => {
    expect(parseConfig({}).metricsToken).toBeUndefined();
    expect(parseConfig({ METRICS_TOKEN: "" }).metricsToken).toBeUndefined();
    expect(parseConfig({ METRICS_TOKEN: "t".repeat(16) }).metricsToken).toBe("t".repeat(16));
  });

  it.each([
    [{ PORT: "abc" }, 'PORT must be an integer 1-65535, got "abc"'],
    [{ PORT: "70000" }, 'PORT must be an integer 1-65535, got "70000"'],
    [{ USAGE_FLUSH_MS: "-5" }, 'USAGE_FLUSH_MS must be an integer 100-3600000, got "-5"'],
    [{ LOG_LEVEL: "loud" }, 'LOG_LEVEL must be one of debug, info, warn, error, silent, got "loud"'],
    [{ LOG_BUFFER_BYTES: "1000" }, 'LOG_BUFFER_BYTES must be an integer 65536-1073741824, got "1000"'],
    [{ DATABASE_URL: "mysql://x" }, "DATABASE_URL must start with postgres:// or postgresql://"],
    [{ REDIS_URL: "not a url" }, "REDIS_URL must be a URL"],
    [{ KEY_PREFIX: "sk" }, "KEY_PREFIX must be 2-8 lowercase letters"],
    [{ SECRET_KEY: "short" }, "SECRET_KEY must be at least 32 characters, got 5"],
    [{ METRICS_TOKEN: "too-short" }, "METRICS_TOKEN must be at least 16 characters, got 9"],
  ])("names the variable and the problem for %p", (env, message) => {
    expect(() => parseConfig(env)).toThrow(ConfigError);
    try {
      parseConfig(env);
    } catch (err) {
      expect((err as Error).message).toContain(message);
      expect((err as Error).message).not.toContain("\n");
    }
  });

  it("generates SECRET_KEY once into DATA_DIR with mode 0600 and reuses it", () => {
    const dir = mkdtempSync(join(tmpdir(), "kp-cfg-"));
    const first = ensureSecretKey(parseConfig({ DATA_DIR: dir }));
    const second = ensureSecretKey(parseConfig({ DATA_DIR: dir }));
    expect(first.secretKey).toBeString();
    expect(first.secretKey!.length).toBeGreaterThanOrEqual(32);
    expect(second.secretKey).toBe(first.secretKey);
    expect(statSync(join(dir, "secret.key")).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, "secret.key"), "utf8").trim()).toBe(first.secretKey!);
  });

  it("keeps a configured SECRET_KEY and writes no file", () => {
    const dir = mkdtempSync(join(tmpdir(), "kp-cfg-"));
    const c = ensureSecretKey(parseConfig({ DATA_DIR: dir, SECRET_KEY: "x".repeat(40) }));
    expect(c.secretKey).toBe("x".repeat(40));
    expect(() => statSync(join(dir, "secret.key"))).toThrow();
  });
});
