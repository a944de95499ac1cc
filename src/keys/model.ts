import { z } from "zod";
import { idParams } from "../ids.ts";
import { SCOPE_NAMES, isScope, mayBeProductScope, unknownScopeMessage } from "./scopes.ts";
import { parseAllowEntry } from "./ips.ts";

export const MAX_ACTIVE_KEYS = 25;
export const MAX_GRACE_HOURS = 168;

/**
 * Bidirectional embeddings, overrides, isolates and marks (U+202A-U+202E, U+2066-U+2069,
 * U+200E, U+200F): they reorder how a name reads in a list, an audit line or a CSV, so one
 * key could pass for another ("Trojan Source", CVE-2021-42574). Right-to-left text itself
 * needs none of them.
 */
const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069\u200E\u200F]/;

const name = z
  .string({ error: "is required" })
  .trim()
  .min(1, "must not be empty")
  .max(100, "must be at most 100 characters")
  .refine((s) => !BIDI_CONTROLS.test(s), "must not contain bidirectional control characters (U+202A-U+202E, U+2066-U+2069, U+200E, U+200F)");

const scopes = z
  .array(z.string({ error: "must be a list of scope names" }), { error: "must be a list of scope names" })
  .min(1, "must hold at least one scope")
  .max(200, "has too many entries")
  .superRefine((list, ctx) => {
    // A registered product's scope is checked by the service, against the registry.
    for (const s of list) {
      if (!isScope(s) && !mayBeProductScope(s)) ctx.addIssue({ code: "custom", message: unknownScopeMessage(s, SCOPE_NAMES) });
    }
  })
  .transform((list) => [...new Set(list)].sort());

const rateLimit = z
  .number({ error: "must be a whole number from 1 to 100000" })
  .int("must be a whole number from 1 to 100000")
  .min(1, "must be at least 1")
  .max(100_000, "must be at most 100000");

const ipAllowlist = z
  .array(z.string({ error: "must be a list of IP addresses or CIDR ranges" }), { error: "must be a list of IP addresses or CIDR ranges" })
  .max(100, "may hold at most 100 entries")
  .transform((list, ctx) => {
    const out: string[] = [];
    for (const entry of list) {
      const r = parseAllowEntry(entry);
      if (r.ok) out.push(r.value);
      else ctx.addIssue({ code: "custom", message: r.message });
    }
    return [...new Set(out)];
  });

const monthlyQuota = z
  .number({ error: "must be a whole number from 1 to 1000000000, or null" })
  .int("must be a whole number")
  .min(1, "must be at least 1")
  .max(1_000_000_000, "must be at most 1000000000")
  .nullable();

/** An ISO 8601 date-time with an offset, or null. "Must be in the future" needs the clock: checked in the service. */
const expiresAt = z
  .string({ error: "must be an ISO 8601 date-time, or null" })
  .refine((s) => !Number.isNaN(Date.parse(s)) && /^\d{4}-\d{2}-\d{2}/.test(s), "must be an ISO 8601 date-time")
  .transform((s) => new Date(s))
  .nullable();

export const createKeySchema = z.strictObject(
  {
    name,
    environment: z.enum(["live", "test"], { error: 'must be "live" or "test"' }).default("live"),
    scopes,
    rateLimit: rateLimit.default(60),
    expiresAt: expiresAt.optional().default(null),
    ipAllowlist: ipAllowlist.optional().default([]),
    monthlyQuota: monthlyQuota.optional().default(null),
  },
  { error: (issue) => (issue.code === "unrecognized_keys" ? `unknown field${issue.keys.length > 1 ? "s" : ""}: ${issue.keys.join(", ")}` : undefined) },
);

export const updateKeySchema = z.strictObject(
  {
    name: name.optional(),
    scopes: scopes.optional(),
    rateLimit: rateLimit.optional(),
    expiresAt: expiresAt.optional(),
    ipAllowlist: ipAllowlist.optional(),
    monthlyQuota: monthlyQuota.optional(),
  },
  { error: (issue) => (issue.code === "unrecognized_keys" ? `unknown field${issue.keys.length > 1 ? "s" : ""}: ${issue.keys.join(", ")}` : undefined) },
);

export const rollKeySchema = z.strictObject({
  gracePeriodHours: z
    .number({ error: `must be a whole number of hours from 0 to ${MAX_GRACE_HOURS}` })
    .int("must be a whole number of hours")
    .min(0, "must be at least 0")
    .max(MAX_GRACE_HOURS, `must be at most ${MAX_GRACE_HOURS}`)
    .default(24),
});

/** What a client sends to create a key (the API's body, the CLI's flags). */
export type CreateKeyInput = z.input<typeof createKeySchema>;
/** A checked new key, as services take it. */
export type NewKey = z.output<typeof createKeySchema>;
export type UpdateKeyInput = z.input<typeof updateKeySchema>;
export type KeyPatch = z.output<typeof updateKeySchema>;
export type RollInput = z.output<typeof rollKeySchema>;

/** A body that may be left out: none is `{}` (a roll with the default grace, say). */
export const optionalBody = <S extends z.ZodType>(schema: S) => z.preprocess((v) => v ?? {}, schema);

export const keyIdParams = idParams("The key's id (`key_…`).");

const isoTime = z.string().describe("An ISO 8601 time, UTC.");

/** What the API, the CLI and the portal show of a key: never the secret, never the hash. */
export const keyViewSchema = z.object({
  id: z.string(),
  name: z.string(),
  environment: z.enum(["live", "test"]),
  display: z.string().describe("The key shortened for lists: `kp_live_AbCd…wxyz`."),
  scopes: z.array(z.string()),
  rateLimit: z.number().int().describe("Requests per minute."),
  ipAllowlist: z.array(z.string()),
  monthlyQuota: z.number().int().nullable(),
  status: z.enum(["active", "expiring", "expired", "revoked"]),
  expiresAt: isoTime.nullable(),
  graceEndsAt: isoTime.nullable().describe("While `expiring`: when the key stops working."),
  replacedBy: z.string().nullable(),
  lastUsedAt: isoTime.nullable(),
  createdAt: isoTime,
  revokedAt: isoTime.nullable(),
  sandbox: z.boolean().describe("A try-it key of the API reference: a test key minted for one portal session, revoked at its logout."),
  leakedAt: isoTime.nullable().optional().describe("When the key was reported found in public (a leak report: src/leaks/); null if it never was."),
  leakedUrl: z.string().nullable().optional().describe("Where the leak was seen, as the report gave it (a commit's or a file's URL); null when it gave none."),
});
export type KeyView = z.output<typeof keyViewSchema>;
export type KeyStatus = KeyView["status"];

const secret = z.string().describe("The key itself: shown in this answer once and never again.");
export const createdKeySchema = keyViewSchema.extend({ secret });
export const rolledKeySchema = keyViewSchema.extend({ secret, previous: keyViewSchema });
export const keyListSchema = z.object({ data: z.array(keyViewSchema) });
