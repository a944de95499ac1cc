import { sql } from "drizzle-orm";
import { boolean, index, integer, pgTable, real, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";
import { accounts } from "../accounts/accounts.sql.ts";

/** Per-account rotation policy; an account without a row has the defaults. */
export const rotationPolicies = pgTable("rotation_policies", {
  accountId: text("account_id")
    .primaryKey()
    .references(() => accounts.id, { onDelete: "cascade" }),
  maxKeyAgeDays: integer("max_key_age_days").notNull().default(90),
  defaultGraceHours: real("default_grace_hours").notNull().default(72),
  emergencyGraceHours: real("emergency_grace_hours").notNull().default(4),
  updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

export const ROTATION_STATES = ["scheduled", "grace_period", "completed", "cancelled", "failed"] as const;
export type RotationState = (typeof ROTATION_STATES)[number];

export const keyRotations = pgTable(
  "key_rotations",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id").notNull(),
    oldKeyId: text("old_key_id").notNull(),
    newKeyId: text("new_key_id"),
    state: text("state", { enum: ROTATION_STATES }).notNull(),
    reason: text("reason").notNull(),
    actor: text("actor").notNull(),
    emergency: boolean("emergency").notNull().default(false),
    gracePeriodHours: real("grace_period_hours").notNull(),
    scheduledAt: timestamp("scheduled_at", { withTimezone: true, mode: "date" }).notNull(),
    startedAt: timestamp("started_at", { withTimezone: true, mode: "date" }),
    graceEndsAt: timestamp("grace_ends_at", { withTimezone: true, mode: "date" }),
    completedAt: timestamp("completed_at", { withTimezone: true, mode: "date" }),
    cancelledAt: timestamp("cancelled_at", { withTimezone: true, mode: "date" }),
    failure: text("failure"),
    /** The new secret sealed with AES-256-GCM (src/crypto/seal.ts) until revealed or expired. */
    secretSealed: text("secret_sealed"),
    /** When the sealed secret is deleted if nobody revealed it: the grace end, or a day after start for no grace. */
    revealUntil: timestamp("reveal_until", { withTimezone: true, mode: "date" }),
    revealedAt: timestamp("revealed_at", { withTimezone: true, mode: "date" }),
    expiringNotifiedAt: timestamp("expiring_notified_at", { withTimezone: true, mode: "date" }),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [
    index("key_rotations_account_idx").on(t.accountId, t.createdAt),
    index("key_rotations_due_idx").on(t.state, t.scheduledAt),
    // At most one rotation in flight per key: two sweepers cannot both schedule or start one.
    uniqueIndex("key_rotations_one_active_idx")
      .on(t.oldKeyId)
      .where(sql`state in ('scheduled', 'grace_period')`),
  ],
);
