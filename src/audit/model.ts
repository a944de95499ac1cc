import { z } from "zod";

export const auditQuery = z.object({
  keyId: z.string().optional().describe("Only this key's events."),
  action: z.string().optional().describe("Only this action, e.g. `key.revoked`."),
  cursor: z.string().optional().describe("`nextCursor` of the previous page."),
});

export const auditEventSchema = z.object({
  id: z.string(),
  action: z.string(),
  actor: z.string().describe("`account:acct_…`, `key:key_…`, `cli` or `system`."),
  keyId: z.string().nullable(),
  ip: z.string().nullable(),
  userAgent: z.string().nullable(),
  changes: z.record(z.string(), z.unknown()),
  createdAt: z.string(),
});
export type AuditEventView = z.output<typeof auditEventSchema>;

export const auditPageSchema = z.object({ data: z.array(auditEventSchema), nextCursor: z.string().nullable() });
