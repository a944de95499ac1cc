import { z } from "zod";

/** ISO 3166-1 alpha-2, as the registries publish it (upper case). */
const countryCode = z.string().regex(/^[A-Z]{2}$/);

export const emailAnalysisSchema = z.object({
  input: z.string(),
  /** Syntax only (RFC 5321 lengths, RFC 5322 dot-atom local part); no DNS or SMTP probe. */
  valid: z.boolean(),
  /** Trimmed and lower-cased; null when the address is not valid. */
  normalized: z.string().nullable(),
  local: z.string().nullable(),
  domain: z.string().nullable(),
  disposable: z.boolean(),
  freeProvider: z.boolean(),
  role: z.boolean(),
  /** A corrected address when the domain looks like a typo of a popular one. */
  suggestion: z.string().nullable(),
});
export type EmailAnalysis = z.infer<typeof emailAnalysisSchema>;

export const ipAnalysisSchema = z.object({
  /** Canonical text: dotted quad without leading zeros, or RFC 5952 for IPv6. */
  ip: z.string(),
  version: z.union([z.literal(4), z.literal(6)]),
  private: z.boolean(),
  loopback: z.boolean(),
  /** Not globally reachable (IANA special-purpose registries, multicast, unallocated); implied by private and loopback. */
  reserved: z.boolean(),
  /** Country of the registry record for the range; null for non-global or unlisted addresses. */
  country: countryCode.nullable(),
});
export type IpAnalysis = z.infer<typeof ipAnalysisSchema>;

export const batchItemSchema = z.object(
  {
    type: z.enum(["email", "ip"], { error: 'must be "email" or "ip"' }),
    value: z.string({ error: "must be text" }).min(1, "must not be empty").max(512, "must be at most 512 characters"),
  },
  { error: "must be an object with type and value" },
);
export type BatchItem = z.infer<typeof batchItemSchema>;

export const batchRequestSchema = z.object(
  {
    items: z.array(batchItemSchema, { error: "must be a list of {type, value} items" }).min(1, "must hold at least one item").max(100, "must hold at most 100 items"),
  },
  { error: "must be a JSON object with items" },
);
export type BatchRequest = z.infer<typeof batchRequestSchema>;

export const batchResultSchema = z.union([
  z.object({ type: z.literal("email"), value: z.string(), result: emailAnalysisSchema }),
  z.object({ type: z.literal("ip"), value: z.string(), result: ipAnalysisSchema }),
  z.object({
    type: batchItemSchema.shape.type,
    value: z.string(),
    error: z.object({ code: z.literal("invalid_request"), detail: z.string() }),
  }),
]);
export type BatchResult = z.infer<typeof batchResultSchema>;

export const batchResponseSchema = z.object({
  results: z.array(batchResultSchema),
});
export type BatchResponse = z.infer<typeof batchResponseSchema>;
