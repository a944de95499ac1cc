import { z } from "zod";
import { PRODUCT_STATUSES, type ProductStatus } from "./products.sql.ts";

/**
 * The largest request body any product may take: the server refuses bodies over it before
 * the app sees them (src/main.ts). Routes other than the proxy keep their 1 MiB limit.
 */
export const PROXY_BODY_CAP = 64 * 1024 * 1024;
export const DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024;
export const DEFAULT_TIMEOUT_MS = 30_000;

/** Ids the gateway's own routes and scopes use. */
export const RESERVED_PRODUCT_IDS = ["email", "ip", "batch", "keys", "api", "docs", "admin", "v1"];

export const productIdSchema = z
  .string({ error: "is required" })
  .regex(/^[a-z][a-z0-9-]*$/, "must be lowercase letters, digits and dashes, starting with a letter")
  .max(32, "must be at most 32 characters")
  .refine((id) => !RESERVED_PRODUCT_IDS.includes(id), { message: `is taken by Keyport itself (${RESERVED_PRODUCT_IDS.join(", ")})` });

/** An upstream's base URL: http or https, no query or fragment (the request's own path and query are appended). */
export const baseUrlSchema = z
  .string({ error: "must be an http or https URL" })
  .trim()
  .transform((s, ctx) => {
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      ctx.addIssue({ code: "custom", message: "must be an http or https URL" });
      return z.NEVER;
    }
    if (u.protocol !== "http:" && u.protocol !== "https:") {
      ctx.addIssue({ code: "custom", message: "must be an http or https URL" });
      return z.NEVER;
    }
    if (u.search || u.hash) {
      ctx.addIssue({ code: "custom", message: "must not carry a query or a fragment" });
      return z.NEVER;
    }
    return `${u.origin}${u.pathname.replace(/\/+$/, "")}`;
  });

const settings = {
  name: z.string({ error: "must be text" }).trim().min(1, "must not be empty").max(60, "must be at most 60 characters"),
  description: z.string({ error: "must be text" }).trim().max(300, "must be at most 300 characters"),
  status: z.enum(PRODUCT_STATUSES, { error: `must be one of ${PRODUCT_STATUSES.join(", ")}` }),
  upstreamUrl: baseUrlSchema,
  sandboxUrl: baseUrlSchema.nullable(),
  timeoutMs: z
    .number({ error: "must be a whole number of milliseconds from 100 to 300000" })
    .int("must be a whole number of milliseconds")
    .min(100, "must be at least 100 ms")
    .max(300_000, "must be at most 300000 ms (5 minutes)"),
  maxBodyBytes: z
    .number({ error: `must be a whole number of bytes from 0 to ${PROXY_BODY_CAP}` })
    .int("must be a whole number of bytes")
    .min(0, "must be at least 0")
    .max(PROXY_BODY_CAP, `must be at most ${PROXY_BODY_CAP} (64 MiB)`),
  validateRequests: z.boolean({ error: "must be true or false" }),
};

export const registerProductSchema = z.strictObject({
  id: productIdSchema,
  name: settings.name.optional(),
  description: settings.description.default(""),
  status: settings.status.default("active"),
  upstreamUrl: settings.upstreamUrl,
  sandboxUrl: settings.sandboxUrl.default(null),
  timeoutMs: settings.timeoutMs.default(DEFAULT_TIMEOUT_MS),
  maxBodyBytes: settings.maxBodyBytes.default(DEFAULT_MAX_BODY_BYTES),
  validateRequests: settings.validateRequests.default(false),
});
export type RegisterProductInput = z.input<typeof registerProductSchema>;

export const updateProductSchema = z.strictObject({
  name: settings.name.optional(),
  description: settings.description.optional(),
  status: settings.status.optional(),
  upstreamUrl: settings.upstreamUrl.optional(),
  sandboxUrl: settings.sandboxUrl.optional(),
  timeoutMs: settings.timeoutMs.optional(),
  maxBodyBytes: settings.maxBodyBytes.optional(),
  validateRequests: settings.validateRequests.optional(),
});
export type UpdateProductInput = z.input<typeof updateProductSchema>;

/** A product as operators see it: never its secret. */
export interface ProductView {
  id: string;
  name: string;
  description: string;
  status: ProductStatus;
  upstreamUrl: string;
  sandboxUrl: string | null;
  timeoutMs: number;
  maxBodyBytes: number;
  validateRequests: boolean;
  activeVersion: number;
  /** The active spec's operations and the scopes they need. */
  operations: { method: string; path: string; operationId: string; scope: string; summary: string }[];
  scopes: string[];
  createdAt: string;
  updatedAt: string;
}

/** Where a spec comes from: its text (a file's) or a URL the server fetches once. */
export type SpecSource = { text: string; name: string } | { url: string };
