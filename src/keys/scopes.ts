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

/** The shape of a registered product's scope: `<product>:<action>` (src/products/spec.ts). */
const PRODUCT_SCOPE = /^[a-z][a-z0-9-]{0,31}:[a-z][a-z0-9_-]{0,31}$/;
const OWN_PREFIXES = new Set(SCOPE_NAMES.map((s) => s.slice(0, s.indexOf(":"))));

/**
 * Whether a scope name may be a registered product's: shaped like one and not under one of
 * Keyport's own prefixes (`email:write` is a typo, never a product's). Whether such a product
 * exists is the service's to check (requireKnownScopes): the registry is not a schema's.
 */
export function mayBeProductScope(s: string): boolean {
  return PRODUCT_SCOPE.test(s) && !OWN_PREFIXES.has(s.slice(0, s.indexOf(":")));
}

/** Every scope a key can hold now: Keyport's own, then the registered products'. */
export function knownScopes(products: { scopes(): { name: string; description: string }[] }): { name: string; description: string }[] {
  return [...SCOPE_NAMES.map((name) => ({ name, description: SCOPES[name] })), ...products.scopes()];
}

/** The message a scope no one grants gets, listing those that exist. */
export function unknownScopeMessage(s: string, known: string[]): string {
  return `unknown scope "${s.slice(0, 40)}" (known: ${known.join(", ")})`;
}
