/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import { z } from "zod";
import type { Deps } from "../deps.ts";
import { DomainError, parseInput, zodFieldErrors } from "../errors.ts";
import { formEntries, formFields, formList, formNumber, formText } from "../portal/form.ts";
import { pageSession } from "../portal/page.ts";
import { authPlugin } from "../portal/plugin.ts";
import { htmlResponse, messagePage, notFoundPage, ownedOr404, redirectAfterPost, wantsFragment } from "../portal/respond.ts";
import { KeyDetailPage } from "../../views/keys/key-detail.tsx";
import { KeysPage, KeysSection, type KeyFormState, type KeyFormValues } from "../../views/keys/keys.tsx";
import { paths } from "../../views/components.tsx";
import { usageRangeQuery } from "../usage/model.ts";
import { createKeySchema, rollKeySchema, updateKeySchema, type KeyView } from "./model.ts";
import { NEW_KEY_FORM, keyDetailModel, keysSectionModel } from "./pages.ts";
import { createKey, revokeKey, rollKey, updateKey } from "./service.ts";
import { liveKeysAwaitVerification } from "../accounts/verification.ts";
import type { Session } from "../accounts/sessions.ts";

/** Fields a form leaves empty are left out, so the schema's defaults (or "unchanged") apply. */
const present = <T extends Record<string, unknown>>(o: T) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

const keyFields = {
  name: formText,
  scopes: formList,
  rateLimit: formNumber(undefined),
  // A date alone means "valid through that UTC day".
  expiresAt: formText.transform((raw) => {
    const s = raw.trim();
    return s === "" ? null : /^\d{4}-\d{2}-\d{2}$/.test(s) ? `${s}T23:59:59.999Z` : s;
  }),
  ipAllowlist: formEntries,
  monthlyQuota: formNumber(null),
};
const createKeyForm = z
  .object({ ...keyFields, environment: formText.transform((s) => s || "live") })
  .transform(present)
  .pipe(createKeySchema);
const updateKeyForm = z.object(keyFields).transform(present).pipe(updateKeySchema);
/** The list's filters from the query; anything unknown is no filter. */
const keySearchQuery = z.object({
  q: formText.transform((s) => s.slice(0, 100)),
  status: z.enum(["", "active", "expiring", "expired", "revoked"]).catch(""),
  environment: z.enum(["", "live", "test"]).catch(""),
  revoked: formText.transform((s) => s === "1"),
  page: z.coerce.number().int().min(1).catch(1),
});

const rollForm = z.object({ gracePeriodHours: formNumber(24) }).transform(present).pipe(rollKeySchema);

/** The text of each field as submitted, for a form shown again with its errors. */
function submitted(body: unknown): KeyFormValues {
  const f = formFields(body);
  const text = (name: string) => formText.parse(f[name]);
  return {
    name: text("name"),
    environment: text("environment"),
    scopes: formList.parse(f.scopes),
    rateLimit: text("rateLimit"),
    expiresAt: text("expiresAt"),
    ipAllowlist: text("ipAllowlist"),
    monthlyQuota: text("monthlyQuota"),
  };
}

/** A refused form: its values again, each message beside its field, or the refusal at its top. */
function refused(body: unknown, err: DomainError): KeyFormState {
  return err.errors?.length ? { values: submitted(body), errors: err.errors } : { values: submitted(body), message: err.detail };
}

/**
 * A key form checked in one pass: every field's schema errors, and an expiry in the past
 * among them (the service checks it too, against the clock, but only once the rest passed).
 */
function parseKeyForm<S extends z.ZodType>(schema: S, body: unknown, what: string, now: number): z.output<S> {
  const fields = formFields(body);
  const r = schema.safeParse(fields);
  const raw = formText.parse(fields.expiresAt).trim();
  const expires = raw === "" ? null : new Date(/^\d{4}-\d{2}-\d{2}$/.test(raw) ? `${raw}T23:59:59.999Z` : raw);
  const past = expires !== null && !Number.isNaN(expires.getTime()) && expires.getTime() <= now;
  if (r.success && !past) return r.data;
  const errors = r.success ? [] : zodFieldErrors(r.error);
  if (past && !errors.some((e) => e.field === "expiresAt")) errors.push({ field: "expiresAt", message: "must be in the future" });
  throw new DomainError("invalid_request", `The ${what} is not valid.`, errors);
}

/**
 * While live keys wait for the account's address to be confirmed: the notice beside the
 * create form, and a new form that starts on a test key (which works now).
 */
async function verificationGate(deps: Deps, session: Session, sent: boolean) {
  if (!(await liveKeysAwaitVerification(deps, session.accountId))) return { form: NEW_KEY_FORM, verification: undefined };
  return { form: { values: { ...NEW_KEY_FORM.values, environment: "test" } }, verification: { email: session.email, sent } };
}

/** The keys pages: the list with the create form, a key's page, edit, roll and revoke. */
export const keysPortal = (deps: Deps) =>
  new Elysia({ name: "keys-portal" })
    .use(authPlugin(deps))
    .get("/portal/keys", async ({ session, request, query }) => {
      const { page, ...search } = keySearchQuery.parse(query);
      const gate = await verificationGate(deps, session, query.verification === "sent");
      const data = await keysSectionModel(deps, session, gate.form, new URL(request.url).origin, undefined, search, page);
      return htmlResponse(KeysPage({ ...data, verification: gate.verification, session: await pageSession(deps, session) }));
    }, { page: true })
    .post("/portal/keys", async ({ session, actor, request, body }) => {
      let created: { key: KeyView; secret: string } | undefined;
      let state = NEW_KEY_FORM;
      let status = 201;
      try {
        const input = parseKeyForm(createKeyForm, body, "key", deps.clock.now());
        created = await createKey(deps, session.accountId, input, actor);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        state = refused(body, err);
        status = 422;
      }
      const gate = await verificationGate(deps, session, false);
      const data = { ...(await keysSectionModel(deps, session, created ? gate.form : state, new URL(request.url).origin, created)), verification: gate.verification };
      // The secret is in this answer: never cached, never stored in history.
      const headers = { "cache-control": "no-store", vary: "HX-Request" };
      if (wantsFragment(request)) return htmlResponse(KeysSection(data), status, headers);
      return htmlResponse(KeysPage({ ...data, session: await pageSession(deps, session) }), status, headers);
    }, { page: true })
    .get("/portal/keys/:id", async ({ session, params, query }) => {
      const data = await ownedOr404(session, () => keyDetailModel(deps, session, params.id, usageRangeQuery.parse(query).days));
      return data instanceof Response ? data : htmlResponse(KeyDetailPage(data));
    }, { page: true })
    .post("/portal/keys/:id", async ({ session, actor, params, request, body }) => {
      try {
        const input = parseKeyForm(updateKeyForm, body, "change", deps.clock.now());
        await updateKey(deps, session.accountId, params.id, input, actor);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        const data = await ownedOr404(session, () => keyDetailModel(deps, session, params.id, 7, { edit: refused(body, err) }));
        return data instanceof Response ? data : htmlResponse(KeyDetailPage(data), 422, { "hx-push-url": paths.key(params.id) });
      }
      return redirectAfterPost(request, paths.key(params.id));
    }, { page: true })
    .post("/portal/keys/:id/revoke", async ({ session, actor, params, request }) => {
      const done = await ownedOr404(session, () => revokeKey(deps, session.accountId, params.id, actor));
      return done instanceof Response ? done : redirectAfterPost(request, paths.key(params.id));
    }, { page: true })
    .post("/portal/keys/:id/roll", async ({ session, actor, params, body }) => {
      let rolled: Awaited<ReturnType<typeof rollKey>>;
      try {
        const input = parseInput(rollForm, formFields(body), "roll");
        rolled = await rollKey(deps, session.accountId, params.id, input, actor);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        if (err.code === "not_found") return notFoundPage(session);
        return messagePage(422, "Not rolled", err.errors?.map((e) => e.message).join("; ") || err.detail, session);
      }
      const data = await keyDetailModel(deps, session, rolled.key.id, 7, { rolled: { secret: rolled.secret } });
      // htmx records the address of what it swapped in: the new key's page (a reload shows
      // it without the secret), not this POST-only URL.
      return htmlResponse(KeyDetailPage(data), 200, { "cache-control": "no-store", "hx-push-url": paths.key(rolled.key.id) });
    }, { page: true });
