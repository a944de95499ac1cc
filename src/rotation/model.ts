import { z } from "zod";
import { idParams } from "../ids.ts";
import { MAX_GRACE_HOURS } from "../keys/model.ts";

/** Whole hours: what the portal's fields, the audit lines and the notices say. */
const hours = (field: string) =>
  z
    .number({ error: `must be a whole number of hours from 0 to ${MAX_GRACE_HOURS}` })
    .int("must be a whole number of hours")
    .min(0, "must be at least 0")
    .max(MAX_GRACE_HOURS, `must be at most ${MAX_GRACE_HOURS}`)
    .describe(field);

export const policySchema = z.strictObject({
  maxKeyAgeDays: z.number({ error: "must be a whole number of days (0 = off)" }).int("must be a whole number").min(0, "must be at least 0").max(3650, "must be at most 3650"),
  defaultGraceHours: hours("defaultGraceHours"),
  emergencyGraceHours: hours("emergencyGraceHours"),
});
export type RotationPolicy = z.output<typeof policySchema>;
export const DEFAULT_POLICY: RotationPolicy = { maxKeyAgeDays: 90, defaultGraceHours: 72, emergencyGraceHours: 4 };

export const scheduleSchema = z.strictObject({
  at: z
    .string({ error: "must be an ISO 8601 date-time" })
    .refine((s) => !Number.isNaN(Date.parse(s)) && /^\d{4}-\d{2}-\d{2}/.test(s), "must be an ISO 8601 date-time")
    .transform((s) => new Date(s)),
  gracePeriodHours: hours("gracePeriodHours").optional(),
  reason: z.string({ error: "must be text" }).trim().min(1, "must not be empty").max(500, "must be at most 500 characters").default("scheduled rotation"),
});

export const emergencySchema = z.strictObject({
  reason: z.string({ error: "is required" }).trim().min(1, "must not be empty").max(500, "must be at most 500 characters"),
});

export type ScheduleInput = z.output<typeof scheduleSchema>;
export type EmergencyInput = z.output<typeof emergencySchema>;

export const rotationIdParams = idParams("The rotation's id (`rot_…`).");
export const rotationsQuery = z.object({ state: z.enum(["in_flight"]).optional().describe("`in_flight`: scheduled or in their grace period.") });

const isoTime = z.string().describe("An ISO 8601 time, UTC.");

export const rotationViewSchema = z.object({
  id: z.string(),
  keyId: z.string().describe("The key being replaced."),
  newKeyId: z.string().nullable().describe("The replacement, once the rotation started."),
  state: z.enum(["scheduled", "grace_period", "completed", "cancelled", "failed"]),
  reason: z.string(),
  actor: z.string(),
  emergency: z.boolean(),
  gracePeriodHours: z.number(),
  scheduledAt: isoTime,
  startedAt: isoTime.nullable(),
  graceEndsAt: isoTime.nullable(),
  completedAt: isoTime.nullable(),
  cancelledAt: isoTime.nullable(),
  failure: z.string().nullable(),
  secretAvailable: z.boolean().describe("The new secret waits, sealed, to be revealed once."),
  revealedAt: isoTime.nullable(),
});
export type RotationView = z.output<typeof rotationViewSchema>;

export const rotationListSchema = z.object({ data: z.array(rotationViewSchema) });
export const rotationWithSecretSchema = rotationViewSchema.extend({ secret: z.string().describe("The new key: shown in this answer once.") });
