import type { Deps } from "../deps.ts";
import type { Session } from "../accounts/sessions.ts";
import { pageSession } from "../portal/page.ts";
import { getPolicy, listRotations } from "../rotation/service.ts";
import { accountOverview, keyUsageReport } from "../usage/queries.ts";
import type { KeyDetailProps } from "../../views/keys/key-detail.tsx";
import type { KeyFormState, KeyFormValues, KeysSectionProps } from "../../views/keys/keys.tsx";
import type { KeyView } from "./model.ts";
import { SCOPES, SCOPE_NAMES } from "./scopes.ts";
import { getKey, listKeys } from "./service.ts";

/**
 * The key pages' models: plain functions of the account's data, so a page can be tested
 * without a request. The routes in portal.tsx (and the usage and rotation pages, which are
 * parts of a key's page) render them.
 */

export const SCOPE_LIST = SCOPE_NAMES.map((name) => ({ name, description: SCOPES[name] }));

/** The create form as a new user finds it. */
export const NEW_KEY_FORM: KeyFormState = { values: { environment: "live", scopes: ["email:read"], rateLimit: 60 } };

/** A key's settings as its edit form shows them. */
export function keyFormValues(k: KeyView): KeyFormValues {
  return {
    name: k.name,
    scopes: k.scopes,
    rateLimit: k.rateLimit,
    expiresAt: k.expiresAt ? k.expiresAt.slice(0, 10) : "",
    ipAllowlist: k.ipAllowlist.join("\n"),
    monthlyQuota: k.monthlyQuota ?? "",
  };
}

/** The keys table, the create form (fresh or failed) and a just-created key's secret. */
export async function keysSectionModel(
  deps: Deps,
  s: Session,
  form: KeyFormState,
  origin: string,
  created?: { key: KeyView; secret: string },
): Promise<KeysSectionProps> {
  const [keys, overview] = await Promise.all([listKeys(deps, s.accountId), accountOverview(deps.db, s.accountId, deps.clock.now())]);
  return { keys, perKeyMonth: overview.perKeyMonth, form, scopes: SCOPE_LIST, created, csrf: s.csrfToken, origin, prefix: deps.config.keyPrefix, now: deps.clock.now() };
}

export interface KeyDetailExtras {
  /** The edit form after a refused change. */
  edit?: KeyFormState;
  /** The new secret after a roll, shown once. */
  rolled?: { secret: string };
  /** Why a rotation was refused, beside the rotation panel. */
  rotationError?: string;
}

/** A key's page: its settings, usage over `range` days, rotations. Another account's key is not_found. */
export async function keyDetailModel(deps: Deps, s: Session, id: string, range: number, extras: KeyDetailExtras = {}): Promise<KeyDetailProps> {
  const k = await getKey(deps, s.accountId, id);
  const now = deps.clock.now();
  const [usage, rotations, policy, session] = await Promise.all([
    keyUsageReport(deps.db, k.id, range, now),
    listRotations(deps, s.accountId, { keyId: k.id }),
    getPolicy(deps, s.accountId),
    pageSession(deps, s),
  ]);
  return {
    session,
    k,
    usage,
    edit: extras.edit ?? { values: keyFormValues(k) },
    scopes: SCOPE_LIST,
    rolled: extras.rolled,
    now,
    rotation: { keyId: k.id, active: k.status === "active", rotations, csrf: s.csrfToken, now, defaultGraceHours: policy.defaultGraceHours, error: extras.rotationError },
  };
}
