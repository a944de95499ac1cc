import { boolean, integer, jsonb, pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";

export const PRODUCT_STATUSES = ["active", "beta", "deprecated"] as const;
export type ProductStatus = (typeof PRODUCT_STATUSES)[number];

/**
 * A team's own API behind the gateway (src/products/proxy.ts): registered by an operator
 * from its OpenAPI spec, proxied at /v1/<id>/… to its upstream (live keys) or its sandbox
 * (test keys). Each instance keeps the active version of every product compiled in memory
 * (src/products/registry.ts): the proxy never queries this table on a request.
 */
export const products = pgTable("products", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  description: text("description").notNull().default(""),
  status: text("status", { enum: PRODUCT_STATUSES }).notNull().default("active"),
  /** Where live keys' calls go: a base URL the operation's path is appended to. */
  upstreamUrl: text("upstream_url").notNull(),
  /** Where test keys' calls go; null: test keys are refused (403 sandbox_unavailable). */
  sandboxUrl: text("sandbox_url"),
  /** How long the upstream has to start answering (504 upstream_timeout after). */
  timeoutMs: integer("timeout_ms").notNull().default(30_000),
  /** The largest request body forwarded (413 over it). */
  maxBodyBytes: integer("max_body_bytes").notNull().default(10 * 1024 * 1024),
  /** Check requests against the spec before forwarding them (400 invalid_request). */
  validateRequests: boolean("validate_requests").notNull().default(false),
  /**
   * The Keyport-Gateway-Secret sent to the upstream, sealed: Keyport must send it, so it
   * cannot be a hash. Shown once when made (registration, rotation).
   */
  secretSealed: text("secret_sealed").notNull(),
  /** The spec version that serves. */
  activeVersion: integer("active_version").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  updatedAt: timestamp("updated_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
});

/** Every spec uploaded for a product, numbered from 1; the product's active_version serves. */
export const productSpecs = pgTable(
  "product_specs",
  {
    productId: text("product_id")
      .notNull()
      .references(() => products.id, { onDelete: "cascade" }),
    version: integer("version").notNull(),
    /** The OpenAPI 3.0 or 3.1 document, as uploaded (parsed from JSON or YAML). */
    spec: jsonb("spec").$type<Record<string, unknown>>().notNull(),
    /** Where it came from: a file's name or the URL it was fetched from. */
    source: text("source").notNull(),
    /** The spec's info.version, for the version list. */
    specVersion: text("spec_version").notNull().default(""),
    operations: integer("operations").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true, mode: "date" }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.productId, t.version] })],
);
