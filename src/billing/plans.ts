import { readFileSync } from "node:fs";
import { isNull, notInArray, sql } from "drizzle-orm";
import { z } from "zod";
import { ConfigError } from "../config.ts";
import type { Db } from "../db/client.ts";
import DEFAULT_PLANS from "./plans.json" with { type: "json" };
import { plans } from "./billing.sql.ts";

/**
 * Products and plans: one file, checked by zod, shipped as plans.json and replaced by the
 * file PLANS_FILE names. Seeded into the `plans` table at every start (assembleDeps) and
 * kept in memory: the gateway, the pricing page and the invoices read the same catalog.
 */
const id = z.string().regex(/^[a-z][a-z0-9-]{1,31}$/, "must be 2-32 lowercase letters, digits or dashes, starting with a letter");
const cents = z.number().int().min(0).max(100_000_000);

export const planSchema = z.object({
  id,
  name: z.string().min(1).max(60),
  description: z.string().max(300).default(""),
  /** Base fee per calendar month, US cents. */
  priceCents: cents,
  includedCalls: z.number().int().min(0).max(1_000_000_000),
  /** Cents per started 1,000 calls over the included ones; null: a hard cap. */
  overageCentsPer1000: cents.nullable(),
  requestsPerSecond: z.number().int().min(1).max(100_000),
  /**
   * The products the plan includes, by id: Keyport's own and registered ones (a product
   * registered later may be listed before it exists). Absent: every product.
   */
  products: z.array(id).max(200).optional(),
});

export const catalogSchema = z
  .object({
    products: z.array(z.object({ id, name: z.string().min(1).max(60), description: z.string().max(300).default("") })).min(1),
    plans: z.array(planSchema).min(1),
  })
  .superRefine((c, ctx) => {
    const ids = c.plans.map((p) => p.id);
    if (new Set(ids).size !== ids.length) ctx.addIssue({ code: "custom", path: ["plans"], message: "plan ids must be unique" });
    if (!ids.includes("free")) ctx.addIssue({ code: "custom", path: ["plans"], message: 'needs a plan "free" (new accounts start on it)' });
  });

export type Plan = z.output<typeof planSchema>;
export type Catalog = z.output<typeof catalogSchema> & {
  byId: ReadonlyMap<string, Plan>;
  /** The products of each plan that lists them; a plan absent here includes every product. */
  includes: ReadonlyMap<string, ReadonlySet<string>>;
};

/** A bad plans file stops the start like any bad setting: one line naming the field. */
export class PlansFileError extends ConfigError {
  override name = "PlansFileError";
}

/** A catalog from parsed JSON; throws a PlansFileError naming the first bad field. */
export function parseCatalog(raw: unknown, source: string): Catalog {
  const r = catalogSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new PlansFileError(`${source}: ${issue.path.join(".") || "the file"} ${issue.message}`);
  }
  const includes = new Map<string, ReadonlySet<string>>();
  for (const p of r.data.plans) if (p.products) includes.set(p.id, new Set(p.products));
  return { ...r.data, byId: new Map(r.data.plans.map((p) => [p.id, p])), includes };
}

/** The plans file PLANS_FILE names, or the shipped one. */
export function loadCatalog(file: string | undefined): Catalog {
  if (!file) return parseCatalog(DEFAULT_PLANS, "the shipped plans");
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new PlansFileError(`PLANS_FILE ${file} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new PlansFileError(`PLANS_FILE ${file} is not JSON: ${(err as Error).message}`);
  }
  return parseCatalog(json, `PLANS_FILE ${file}`);
}

/** Writes the catalog's plans into the table (insert or update); plans no longer in it are marked retired. */
export async function seedPlans(db: Db, catalog: Catalog, now: Date): Promise<void> {
  await db.transaction(async (tx) => {
    for (const [position, p] of catalog.plans.entries()) {
      const row = { id: p.id, name: p.name, description: p.description, priceCents: p.priceCents, includedCalls: p.includedCalls, overageCentsPer1000: p.overageCentsPer1000, requestsPerSecond: p.requestsPerSecond, position, retiredAt: null, updatedAt: now };
      await tx.insert(plans).values(row).onConflictDoUpdate({ target: plans.id, set: row });
    }
    await tx
      .update(plans)
      .set({ retiredAt: now, updatedAt: now })
      .where(sql`${notInArray(plans.id, catalog.plans.map((p) => p.id))} and ${isNull(plans.retiredAt)}`);
  });
}
