import type { Actor } from "../audit/service.ts";
import type { Deps } from "../deps.ts";
import { deriveKey } from "../keys/format.ts";
import { SCOPES, type Scope } from "../keys/scopes.ts";
import { activeSandboxKey, ensureSandboxKey, toView, type KeyRow } from "../keys/service.ts";
import type { KeyView } from "../keys/model.ts";

/** A sandbox key's limits (the reference's try-it key, one per portal session). */
export const SANDBOX = {
  rateLimit: 60,
  calls: 200,
  lifetimeMs: 30 * 60_000,
} as const;

/** The data API's scopes: a sandbox key can try every /v1 operation. */
export const SANDBOX_SCOPES: Scope[] = (Object.keys(SCOPES) as Scope[]).filter((s) => s !== "keys:manage");

type SandboxDeps = Pick<Deps, "db" | "clock" | "config" | "keyCache" | "products">;

/** The portal session a sandbox key belongs to, and the secret half of its cookie token. */
export interface SandboxSession {
  id: string;
  accountId: string;
  expiresAt: Date;
  /** The `<secret>` of the cookie's `<id>.<secret>`: known only to the browser that holds the cookie. */
  cookieSecret: string;
}

/** The secret half of a session cookie token `<id>.<secret>`. */
export function cookieSecret(token: string | undefined): string | undefined {
  const dot = token?.indexOf(".") ?? -1;
  return token && dot > 0 ? token.slice(dot + 1) : undefined;
}

/**
 * The sandbox key's secret, derived from the server's SECRET_KEY, the key's id and the
 * session cookie's secret. Nothing holds the key: the database keeps its hash like any
 * key's, the cookie keeps the session secret (whose hash alone the database has), and the
 * key is made again from both on each try-it request — so only the browser holding the
 * session can use it, and a copy of the database cannot.
 */
function secretFor(deps: SandboxDeps, s: SandboxSession): (keyId: string) => string {
  const serverSecret = deps.config.secretKey;
  if (!serverSecret) throw new Error("SECRET_KEY is not set");
  return (keyId) => deriveKey(deps.config.keyPrefix, "test", serverSecret, `sandbox-key\0${keyId}\0${s.cookieSecret}`);
}

export interface SandboxKey {
  key: KeyView;
  secret: string;
  /** Made by this call (the first try-it of the session, or after the last one expired). */
  created: boolean;
}

function asSandboxKey(deps: SandboxDeps, s: SandboxSession, row: KeyRow, created = false): SandboxKey {
  return { key: toView(row, deps.config.keyPrefix, deps.clock.now()), secret: secretFor(deps, s)(row.id), created };
}

/** The session's sandbox key if one is active, without making one (the reference's samples). */
export async function currentSandboxKey(deps: SandboxDeps, s: SandboxSession): Promise<SandboxKey | undefined> {
  const row = await activeSandboxKey(deps, s.accountId, s.id);
  return row && asSandboxKey(deps, s, row);
}

/**
 * The session's sandbox key, minted on first use: a test key with the data API's scopes,
 * 60 requests a minute, 200 calls, for 30 minutes (never past the session's end).
 */
export async function sandboxKey(deps: SandboxDeps, s: SandboxSession, who: Actor): Promise<SandboxKey> {
  const now = deps.clock.now();
  const expiresAt = new Date(Math.min(now + SANDBOX.lifetimeMs, s.expiresAt.getTime()));
  const { row, created } = await ensureSandboxKey(
    deps,
    s.accountId,
    s.id,
    { scopes: [...SANDBOX_SCOPES, ...deps.products.scopes().map((s) => s.name)], rateLimit: SANDBOX.rateLimit, monthlyQuota: SANDBOX.calls, expiresAt },
    secretFor(deps, s),
    who,
  );
  return asSandboxKey(deps, s, row, created);
}
