import type { Deps } from "../deps.ts";
import type { Session } from "../accounts/sessions.ts";
import { pageSession } from "../portal/page.ts";
import { getPolicy, listRotations } from "../rotation/service.ts";
import { accountOverview, keyUsageReport } from "../usage/queries.ts";
import type { KeyDetailProps } from "../../views/keys/key-detail.tsx";
import type { RotationFormState } from "../../views/rotation/rotations.tsx";
import type { KeyFormState, KeyFormValues, KeySearchValues, KeysSectionProps } from "../../views/keys/keys.tsx";
import type { Environment } from "./format.ts";
import type { KeyStatus, KeyView } from "./model.ts";
import { knownScopes } from "./scopes.ts";
import { getKey, keyLineage, searchKeys } from "./service.ts";

/**
 * The key pages' models: plain functions of the account's data, so a page can be tested
 * without a request. The routes in portal.tsx (and the usage and rotation pages, which are
 * parts of a key's page) render them.
 */


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

/** The list as a new visit shows it: every key that is not revoked, first page. */
export const DEFAULT_SEARCH: KeySearchValues = { q: "", status: "", environment: "", revoked: false };

/** The keys table (filtered, a page), the create form (fresh or failed) and a just-created key's secret. */
export async function keysSectionModel(
  deps: Deps,
  s: Session,
  form: KeyFormState,
  origin: string,
  created?: { key: KeyView; secret: string },
  search: KeySearchValues = DEFAULT_SEARCH,
  page = 1,
): Promise<KeysSectionProps> {
  const [found, overview] = await Promise.all([
    searchKeys(deps, s.accountId, {
      q: search.q.trim() || undefined,
      status: (search.status || undefined) as KeyStatus | undefined,
      environment: (search.environment || undefined) as Environment | undefined,
      includeRevoked: search.revoked,
      page,
    }),
    accountOverview(deps.db, s.accountId, deps.clock.now()),
  ]);
  return {
    keys: found.keys,
    total: found.total,
    page: found.page,
    pages: found.pages,
    search,
    anyKeys: found.all > 0,
    perKeyMonth: overview.perKeyMonth,
    form,
    scopes: knownScopes(deps.products),
    created,
    csrf: s.csrfToken,
    origin,
    prefix: deps.config.keyPrefix,
    now: deps.clock.now(),
  };
}

export interface KeyDetailExtras {
  /** The edit form after a refused change. */
  edit?: KeyFormState;
  /** The new secret after a roll, shown once. */
  rolled?: { secret: string };
  /** A refused rotation: its messages and what was typed, in the rotation panel. */
  rotation?: RotationFormState;
}

/** A key's page: its settings, usage over `range` days, rotations. Another account's key is not_found. */
export async function keyDetailModel(deps: Deps, s: Session, id: string, range: number, extras: KeyDetailExtras = {}): Promise<KeyDetailProps> {
  const k = await getKey(deps, s.accountId, id);
  const now = deps.clock.now();
  const [usage, rotations, policy, session, lineage] = await Promise.all([
    keyUsageReport(deps.db, k.id, range, now),
    listRotations(deps, s.accountId, { keyId: k.id }),
    getPolicy(deps, s.accountId),
    pageSession(deps, s),
    keyLineage(deps, s.accountId, k),
  ]);
  return {
    session,
    k,
    usage,
    edit: extras.edit ?? { values: keyFormValues(k) },
    scopes: knownScopes(deps.products),
    rolled: extras.rolled,
    replacedBy: lineage.replacedBy,
    replaces: lineage.replaces,
    defaultGraceHours: policy.defaultGraceHours,
    now,
    rotation: { keyId: k.id, active: k.status === "active", rotations, csrf: s.csrfToken, now, defaultGraceHours: policy.defaultGraceHours, form: extras.rotation },
  };
}
