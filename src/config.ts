import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { randomBytes } from "node:crypto";
import { z } from "zod";
import { DEFAULT_LOG_BUFFER_BYTES } from "./ops/log.ts";

/** The one place that reads the environment. Every variable, its default and its check. */
const intIn = (name: string, min: number, max: number, fallback: number) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw === "") return fallback;
      const n = Number(raw);
      if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
        ctx.addIssue({ code: "custom", message: `${name} must be an integer ${min}-${max}, got ${JSON.stringify(raw)}` });
        return z.NEVER;
      }
      return n;
    });

const urlWith = (name: string, protocols: string[]) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw === "") return undefined;
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        ctx.addIssue({ code: "custom", message: `${name} must be a URL (${protocols.join(" or ")}), got an unparsable value` });
        return z.NEVER;
      }
      if (!protocols.includes(url.protocol)) {
        ctx.addIssue({ code: "custom", message: `${name} must start with ${protocols.map((p) => p + "//").join(" or ")}, got "${url.protocol}//…"` });
        return z.NEVER;
      }
      return raw;
    });

const oneOf = <T extends string>(name: string, values: readonly T[], fallback: T) =>
  z
    .string()
    .optional()
    .transform((raw, ctx): T => {
      if (raw === undefined || raw === "") return fallback;
      const v = raw.trim().toLowerCase() as T;
      if (!values.includes(v)) {
        ctx.addIssue({ code: "custom", message: `${name} must be one of ${values.join(", ")}, got ${JSON.stringify(raw)}` });
        return z.NEVER;
      }
      return v;
    });

const bool = (name: string) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw === "") return false;
      const v = raw.trim().toLowerCase();
      if (["1", "true", "yes", "on"].includes(v)) return true;
      if (["0", "false", "no", "off"].includes(v)) return false;
      ctx.addIssue({ code: "custom", message: `${name} must be true or false, got ${JSON.stringify(raw)}` });
      return z.NEVER;
    });

/** true, false, or unset (undefined): the caller picks the default. */
const optionalBool = (name: string) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw === "") return undefined;
      const v = raw.trim().toLowerCase();
      if (["1", "true", "yes", "on"].includes(v)) return true;
      if (["0", "false", "no", "off"].includes(v)) return false;
      ctx.addIssue({ code: "custom", message: `${name} must be true or false, got ${JSON.stringify(raw)}` });
      return z.NEVER;
    });

/** A secret of at least `min` characters, or unset. */
const secretOf = (name: string, min: number) =>
  z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw === "") return undefined;
      if (raw.length < min) {
        ctx.addIssue({ code: "custom", message: `${name} must be at least ${min} characters, got ${raw.length}` });
        return z.NEVER;
      }
      return raw;
    });

/** A path to a file, absolute, or unset. */
const fileOf = () =>
  z
    .string()
    .optional()
    .transform((v) => (v ? resolve(v) : undefined));

/** `Name <user@host>` or `user@host`: what a From header holds. */
const MAIL_ADDRESS = /^(?:[^<>\r\n]*<[^\s@<>]+@[^\s@<>]+>|[^\s@<>]+@[^\s@<>]+)$/;

const envSchema = z.object({
  PORT: intIn("PORT", 1, 65535, 3000),
  HOST: z.string().optional().transform((v) => v || "0.0.0.0"),
  DATA_DIR: z.string().optional().transform((v) => resolve(v || "./data")),
  DATABASE_URL: urlWith("DATABASE_URL", ["postgres:", "postgresql:"]),
  REDIS_URL: urlWith("REDIS_URL", ["redis:", "rediss:"]),
  KEY_PREFIX: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      const v = raw || "kp";
      if (!/^[a-z][a-z0-9]{1,7}$/.test(v) || v === "sk") {
        ctx.addIssue({ code: "custom", message: `KEY_PREFIX must be 2-8 lowercase letters or digits starting with a letter (and not "sk"), got ${JSON.stringify(raw)}` });
        return z.NEVER;
      }
      return v;
    }),
  USAGE_FLUSH_MS: intIn("USAGE_FLUSH_MS", 100, 3_600_000, 5000),
  SECRET_KEY: secretOf("SECRET_KEY", 32),
  LOG_LEVEL: oneOf("LOG_LEVEL", ["debug", "info", "warn", "error", "silent"] as const, "info"),
  LOG_BUFFER_BYTES: intIn("LOG_BUFFER_BYTES", 65_536, 1_073_741_824, DEFAULT_LOG_BUFFER_BYTES),
  TRUST_PROXY: bool("TRUST_PROXY"),
  INSTANCE_COUNT: intIn("INSTANCE_COUNT", 1, 1000, 1),
  RATE_LIMIT_ON_REDIS_ERROR: oneOf("RATE_LIMIT_ON_REDIS_ERROR", ["local", "allow", "deny"] as const, "local"),
  COOKIE_SECURE: oneOf("COOKIE_SECURE", ["auto", "true", "false"] as const, "auto"),
  ROTATION_SWEEP_MS: intIn("ROTATION_SWEEP_MS", 1000, 86_400_000, 60_000),
  WEBHOOK_DELIVERY_MS: intIn("WEBHOOK_DELIVERY_MS", 200, 3_600_000, 5000),
  SMTP_URL: urlWith("SMTP_URL", ["smtp:", "smtps:"]),
  MAIL_FROM: z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === "") return "Keyport <keyport@localhost>";
      const v = raw.trim();
      if (!MAIL_ADDRESS.test(v)) {
        ctx.addIssue({ code: "custom", message: `MAIL_FROM must be an address like "Keyport <keys@example.com>", got ${JSON.stringify(raw)}` });
        return z.NEVER;
      }
      return v;
    }),
  REQUIRE_EMAIL_VERIFICATION: optionalBool("REQUIRE_EMAIL_VERIFICATION"),
  PUBLIC_URL: urlWith("PUBLIC_URL", ["http:", "https:"]),
  MAIL_DELIVERY_MS: intIn("MAIL_DELIVERY_MS", 200, 3_600_000, 5000),
  PLANS_FILE: fileOf(),
  METRICS_TOKEN: secretOf("METRICS_TOKEN", 16),
  LEAK_KEYS_GITHUB: fileOf(),
  LEAK_KEYS_GITLAB: fileOf(),
  // GitLab sends it as the whole Authorization header, whose surrounding spaces no server
  // keeps: 32 random base62 characters are 190 bits.
  LEAK_GITLAB_TOKEN: secretOf("LEAK_GITLAB_TOKEN", 32).refine((v) => v === undefined || v.trim() === v, "LEAK_GITLAB_TOKEN must not start or end with a space"),
  LEAK_FEEDBACK: bool("LEAK_FEEDBACK"),
});

export type LogLevel = "debug" | "info" | "warn" | "error" | "silent";

export interface Config {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  keyPrefix: string;
  usageFlushMs: number;
  /** Undefined only until `ensureSecretKey` has run (embedded mode generates one). */
  secretKey: string | undefined;
  /** Where the secret key came from: the environment, or DATA_DIR/secret.key. */
  secretKeySource: "env" | "file" | "unset";
  logLevel: LogLevel;
  /** At most this many bytes of log lines wait for a slow stdout; further lines are dropped and counted. */
  logBufferBytes: number;
  trustProxy: boolean;
  instanceCount: number;
  rateLimitOnRedisError: "local" | "allow" | "deny";
  /** `auto`: Secure cookies when the request came over https (or X-Forwarded-Proto https behind TRUST_PROXY). */
  cookieSecure: "auto" | "true" | "false";
  rotationSweepMs: number;
  webhookDeliveryMs: number;
  /** When set, /metrics answers only `Authorization: Bearer <token>`; unset, it is open. */
  metricsToken: string | undefined;
  /** The products and plans file (src/billing/plans.ts); unset, the shipped plans. */
  plansFile: string | undefined;
  /** Where mail goes (`smtp://user:pass@host:587`, `smtps://…:465`); unset: `.eml` files in DATA_DIR/mail/. */
  smtpUrl: string | undefined;
  mailFrom: string;
  /** Unverified accounts cannot create live keys: by default only where mail can be delivered (SMTP_URL set). */
  requireEmailVerification: boolean;
  /** The origin links in mail point to; unset: http://localhost:PORT. */
  publicUrl: string;
  mailDeliveryMs: number;
  /**
   * Files of the scanners' public keys in GitHub's `{"public_keys":[{key_identifier, key,
   * is_current}]}` shape (src/leaks/intake.ts reads and checks them at start); unset, that
   * scanner's intake answers 404.
   */
  leakKeysGithub: string | undefined;
  leakKeysGitlab: string | undefined;
  /** The pre-shared token of GitLab's Token Revocation API; unset, those endpoints answer 404. */
  leakGitlabToken: string | undefined;
  /** Answer scanners' reports with GitHub's true/false-positive feedback instead of `[]`. */
  leakFeedback: boolean;
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Parses an environment; throws a ConfigError whose message is one line naming the variable. */
export function parseConfig(env: Record<string, string | undefined>): Config {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new ConfigError(first ? first.message : "invalid configuration");
  }
  const e = parsed.data;
  return {
    port: e.PORT,
    host: e.HOST,
    dataDir: e.DATA_DIR,
    databaseUrl: e.DATABASE_URL,
    redisUrl: e.REDIS_URL,
    keyPrefix: e.KEY_PREFIX,
    usageFlushMs: e.USAGE_FLUSH_MS,
    secretKey: e.SECRET_KEY,
    secretKeySource: e.SECRET_KEY ? "env" : "unset",
    logLevel: e.LOG_LEVEL,
    logBufferBytes: e.LOG_BUFFER_BYTES,
    trustProxy: e.TRUST_PROXY,
    instanceCount: e.INSTANCE_COUNT,
    rateLimitOnRedisError: e.RATE_LIMIT_ON_REDIS_ERROR,
    cookieSecure: e.COOKIE_SECURE,
    rotationSweepMs: e.ROTATION_SWEEP_MS,
    webhookDeliveryMs: e.WEBHOOK_DELIVERY_MS,
    metricsToken: e.METRICS_TOKEN,
    plansFile: e.PLANS_FILE,
    smtpUrl: e.SMTP_URL,
    mailFrom: e.MAIL_FROM,
    requireEmailVerification: e.REQUIRE_EMAIL_VERIFICATION ?? e.SMTP_URL !== undefined,
    publicUrl: e.PUBLIC_URL ? new URL(e.PUBLIC_URL).origin : `http://localhost:${e.PORT}`,
    mailDeliveryMs: e.MAIL_DELIVERY_MS,
    leakKeysGithub: e.LEAK_KEYS_GITHUB,
    leakKeysGitlab: e.LEAK_KEYS_GITLAB,
    leakGitlabToken: e.LEAK_GITLAB_TOKEN,
    leakFeedback: e.LEAK_FEEDBACK,
  };
}

export function loadConfig(): Config {
  return parseConfig(process.env);
}

/**
 * The configuration of a command that touches no database (`keyport scan`, `rules`, `hook`):
 * KEY_PREFIX, and PUBLIC_URL and PORT for links; every other variable left at its default, so
 * that neither a variable meant for the server nor a missing SECRET_KEY stops a scan in CI or
 * in a hook.
 */
export function loadOfflineConfig(): Config {
  const { KEY_PREFIX, PUBLIC_URL, PORT } = process.env;
  return parseConfig({ KEY_PREFIX, PUBLIC_URL, PORT });
}

/**
 * Embedded mode without SECRET_KEY: generate 32 random bytes once into DATA_DIR/secret.key
 * (mode 0600) and reuse it on every later start. Service mode must configure it, since
 * every instance has to share the same key (main.ts warns when it is generated there).
 */
export function ensureSecretKey(config: Config): Config {
  if (config.secretKey) return config;
  mkdirSync(config.dataDir, { recursive: true });
  const file = join(config.dataDir, "secret.key");
  if (!existsSync(file)) {
    writeFileSync(file, randomBytes(32).toString("base64url") + "\n", { mode: 0o600, flag: "wx" });
  }
  chmodSync(file, 0o600);
  const secretKey = readFileSync(file, "utf8").trim();
  if (secretKey.length < 32) throw new ConfigError(`SECRET_KEY file ${file} is damaged: remove it or set SECRET_KEY`);
  return { ...config, secretKey, secretKeySource: "file" };
}
