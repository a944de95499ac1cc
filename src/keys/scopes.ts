/** Every scope a key can hold: the data API's routes and the management API. */
export const SCOPES = {
  "email:read": "Validate and enrich email addresses (GET /v1/email/:address)",
  "ip:read": "Look up IP addresses (GET /v1/ip/:address)",
  "batch:write": "Run batches of lookups (POST /v1/batch)",
  "keys:manage": "Manage this account's keys through /api",
} as const;

export type Scope = keyof typeof SCOPES;
export const SCOPE_NAMES = Object.keys(SCOPES) as Scope[];

export function isScope(s: string): s is Scope {
  return Object.hasOwn(SCOPES, s);
}
