/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import { z } from "zod";
import type { Deps } from "../deps.ts";
import type { Session } from "../accounts/sessions.ts";
import { auditRows } from "../audit/pages.ts";
import { DomainError, zodFieldErrors, type FieldError } from "../errors.ts";
import { formFields, formNumber, formOptionalText, formText } from "../portal/form.ts";
import { pageSession } from "../portal/page.ts";
import { authPlugin } from "../portal/plugin.ts";
import { htmlResponse, notFoundPage, ownedOr404, redirectAfterPost } from "../portal/respond.ts";
import { paths } from "../../views/components.tsx";
import {
  ProductPage,
  ProductSecretPage,
  ProductsPage,
  type ProductDone,
  type ProductEventRow,
  type ProductPageProps,
  type ProductSettingsValues,
  type ProductsPageProps,
  type RegisterFormValues,
} from "../../views/admin/products.tsx";
import { DEFAULT_MAX_BODY_BYTES, DEFAULT_TIMEOUT_MS, registerProductSchema, type SpecSource } from "./model.ts";
import { activateVersion, getProduct, listProducts, registerProduct, removeProduct, rotateGatewaySecret, specDocument, updateProduct, uploadSpec } from "./service.ts";

const EMPTY_REGISTER_FORM: RegisterFormValues = {
  id: "",
  name: "",
  description: "",
  status: "active",
  upstreamUrl: "",
  sandboxUrl: "",
  timeoutMs: String(DEFAULT_TIMEOUT_MS),
  maxBodyBytes: String(DEFAULT_MAX_BODY_BYTES),
  validateRequests: false,
  specUrl: "",
};

const DONE: readonly ProductDone[] = ["updated", "uploaded", "uploaded_inactive", "activated"];
const productQuery = z.object({
  done: z.enum(DONE as [ProductDone, ...ProductDone[]]).optional().catch(undefined),
  version: z.coerce.number().int().min(1).optional().catch(undefined),
});
/** The id of a product just removed, said on the list; anything that is not an id is ignored. */
const productsQuery = z.object({ removed: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/).optional().catch(undefined) });

/** A checkbox: sent (with any value but "") when checked, absent when not. */
const checked = (v: unknown) => v !== undefined && v !== "";

/** A version in a path: a positive integer, else none (the page does not exist). */
function versionParam(raw: string): number | undefined {
  return /^[1-9]\d{0,8}$/.test(raw) ? Number(raw) : undefined;
}

/** The settings fields as typed, for the form shown again after a refusal. */
function submittedSettings(f: Record<string, unknown>): ProductSettingsValues {
  return {
    name: formText.parse(f.name),
    description: formText.parse(f.description),
    status: formText.parse(f.status),
    upstreamUrl: formText.parse(f.upstreamUrl),
    sandboxUrl: formText.parse(f.sandboxUrl),
    timeoutMs: formText.parse(f.timeoutMs),
    maxBodyBytes: formText.parse(f.maxBodyBytes),
    validateRequests: checked(f.validateRequests),
  };
}

/** The settings fields as the service's schemas take them: empty optional fields left to the defaults (registering) or refused (editing a number). */
function settingsInput(f: Record<string, unknown>, register: boolean) {
  return {
    name: register ? formOptionalText(undefined).parse(f.name) : formText.parse(f.name).trim(),
    description: formText.parse(f.description).trim(),
    status: formText.parse(f.status),
    upstreamUrl: formText.parse(f.upstreamUrl),
    sandboxUrl: formOptionalText(null).parse(f.sandboxUrl),
    timeoutMs: formNumber(register ? undefined : "").parse(f.timeoutMs),
    maxBodyBytes: formNumber(register ? undefined : "").parse(f.maxBodyBytes),
    validateRequests: checked(f.validateRequests),
  };
}

/**
 * Where the form's spec comes from: the chosen file (a browser sends an empty one when none
 * is chosen) or the URL, never both; neither is the `spec` field's error.
 */
async function specSource(f: Record<string, unknown>): Promise<{ source: SpecSource } | { errors: FieldError[] }> {
  const sent = Array.isArray(f.spec) ? f.spec[0] : f.spec;
  const file = sent instanceof Blob && sent.size > 0 ? sent : undefined;
  const url = formText.parse(f.specUrl).trim();
  if (file && url) return { errors: [{ field: "spec", message: "choose a file or give a URL, not both" }] };
  if (file) return { source: { text: await file.text(), name: file instanceof File ? file.name : "upload" } };
  if (url) return { source: { url } };
  return { errors: [{ field: "spec", message: "is required: choose the spec's file, or give its URL" }] };
}

/** A refusal's messages by field; one without any is said as a whole. */
const refusalErrors = (err: DomainError, field = "body"): FieldError[] => (err.errors?.length ? err.errors : [{ field, message: err.detail }]);

const quoted = (v: unknown) => `“${String(v)}”`;
const shown = (v: unknown) => (v === null || v === undefined ? "none" : typeof v === "string" ? quoted(v) : typeof v === "boolean" ? (v ? "on" : "off") : String(v));
const SETTING_NAMES: Record<string, string> = {
  name: "name",
  description: "description",
  status: "status",
  upstreamUrl: "upstream",
  sandboxUrl: "sandbox",
  timeoutMs: "timeout (ms)",
  maxBodyBytes: "largest body (bytes)",
  validateRequests: "request validation",
};
/** The settings an event records, in the form's order (jsonb keeps its own order of keys). */
const settingsText = (c: Record<string, unknown>, sep: string) =>
  Object.entries(SETTING_NAMES)
    .filter(([k]) => k in c)
    .map(([k, name]) => `${name}${sep}${shown(c[k])}`)
    .join("; ");

/** A product's audit event in words (its changes record never holds the secret). */
function describeProductEvent(action: string, c: Record<string, unknown>): string {
  switch (action) {
    case "product.registered":
      return `Registered from ${shown(c.source)}, spec version ${shown(c.version)} with ${shown(c.operations)} operations: ${settingsText(c, " ")}`;
    case "product.updated":
      return `Settings changed: ${settingsText(c, " → ") || "nothing"}`;
    case "product.spec_uploaded":
      return `Spec version ${shown(c.version)} uploaded from ${shown(c.source)} (${shown(c.operations)} operations), ${c.active ? "active at once" : "not activated"}`;
    case "product.version_activated":
      return `Spec version ${shown(c.to)} activated in place of version ${shown(c.from)}`;
    case "product.secret_rotated":
      return "Gateway secret rotated: the previous one is no longer sent";
    case "product.removed":
      return `Removed (${shown(c.name)}; spec version ${shown(c.version)} was serving)`;
    default:
      return `${action}: ${Object.entries(c)
        .map(([k, v]) => `${k} ${shown(v)}`)
        .join("; ")}`;
  }
}

/** Everything the operator's page of one product shows; not_found when there is none. */
async function productPageModel(deps: Deps, session: Session, id: string, extra: Partial<ProductPageProps> = {}): Promise<ProductPageProps> {
  const [{ product, versions, events }, layout] = await Promise.all([getProduct(deps, id), pageSession(deps, session)]);
  const rows = await auditRows(
    deps,
    events.map((e) => ({ id: e.id, action: e.action, actor: e.actor, keyId: e.keyId, ip: e.ip, userAgent: e.userAgent, changes: e.changes, createdAt: e.createdAt.toISOString() })),
    [],
  );
  const described: ProductEventRow[] = rows.map((r) => ({ id: r.id, createdAt: r.createdAt, action: r.action, actor: r.actor, ip: r.ip, summary: describeProductEvent(r.action, r.changes) }));
  return { session: layout, product, versions: versions.map((v) => ({ ...v, createdAt: v.createdAt.toISOString() })), events: described, ...extra };
}

/** The product's page again after a refused form (422), its address the product's page. */
async function refusedProductPage(deps: Deps, session: Session, id: string, extra: Partial<ProductPageProps>): Promise<Response> {
  const data = await ownedOr404(session, () => productPageModel(deps, session, id, extra));
  return data instanceof Response ? data : htmlResponse(ProductPage(data), 422, { "hx-push-url": paths.adminProduct(id) });
}

async function productsPage(deps: Deps, session: Session, extra: Partial<ProductsPageProps>, status = 200, headers: Record<string, string> = {}): Promise<Response> {
  const [products, layout] = await Promise.all([listProducts(deps), pageSession(deps, session)]);
  return htmlResponse(ProductsPage({ session: layout, products, form: { values: EMPTY_REGISTER_FORM }, ...extra }), status, headers);
}

/** The gateway secret's page: shown once, so never cached; history records the product's page instead. */
async function secretPage(deps: Deps, session: Session, product: ProductPageProps["product"], secret: string, registered: boolean): Promise<Response> {
  return htmlResponse(ProductSecretPage({ session: await pageSession(deps, session), product, secret, registered }), 200, {
    "cache-control": "no-store",
    "hx-push-url": paths.adminProduct(product.id),
  });
}

/**
 * Operators' pages for registered products (the 404 page for anyone else): the list and the
 * register form, a product's page with its settings, operations, spec versions (upload,
 * activate, download), gateway secret rotation, audit log and removal. Every change goes
 * through src/products/service.ts with the operator as the audit actor.
 */
export const productsAdminPortal = (deps: Deps) =>
  new Elysia({ name: "products-admin-portal" })
    .use(authPlugin(deps))
    .get("/admin/products", ({ session, query }) => productsPage(deps, session, { removed: productsQuery.parse(query).removed }), { operator: true })
    .post("/admin/products", async ({ session, actor, body }) => {
      const fields = formFields(body);
      const values: RegisterFormValues = { ...submittedSettings(fields), id: formText.parse(fields.id), specUrl: formText.parse(fields.specUrl) };
      const input = { id: formText.parse(fields.id).trim(), ...settingsInput(fields, true) };
      let errors: FieldError[];
      try {
        const picked = await specSource(fields);
        if ("source" in picked) {
          const { product, secret } = await registerProduct(deps, input, picked.source, actor);
          return secretPage(deps, session, product, secret, true);
        }
        // No spec to check: the settings' own errors are listed with the missing spec's.
        const settings = registerProductSchema.safeParse(input);
        errors = [...(settings.success ? [] : zodFieldErrors(settings.error)), ...picked.errors];
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        errors = refusalErrors(err);
      }
      return productsPage(deps, session, { form: { values, errors } }, 422, { "hx-push-url": paths.adminProducts });
    }, { operator: true })
    .get("/admin/products/:id", async ({ session, params, query }) => {
      const { done, version } = productQuery.parse(query);
      const data = await ownedOr404(session, () => productPageModel(deps, session, params.id, { done: done && { kind: done, version } }));
      return data instanceof Response ? data : htmlResponse(ProductPage(data));
    }, { operator: true })
    .post("/admin/products/:id", async ({ session, actor, params, body, request }) => {
      const fields = formFields(body);
      try {
        await updateProduct(deps, params.id, settingsInput(fields, false), actor);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        if (err.code === "not_found") return notFoundPage(session);
        return refusedProductPage(deps, session, params.id, { settings: { values: submittedSettings(fields), errors: refusalErrors(err) } });
      }
      return redirectAfterPost(request, paths.adminProductDone(params.id, "updated" satisfies ProductDone));
    }, { operator: true })
    .post("/admin/products/:id/versions", async ({ session, actor, params, body, request }) => {
      const fields = formFields(body);
      const activate = checked(fields.activate);
      let errors: FieldError[];
      try {
        const picked = await specSource(fields);
        if ("source" in picked) {
          const { version } = await uploadSpec(deps, params.id, picked.source, actor, activate);
          return redirectAfterPost(request, paths.adminProductDone(params.id, (activate ? "uploaded" : "uploaded_inactive") satisfies ProductDone, version));
        }
        errors = picked.errors;
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        if (err.code === "not_found") return notFoundPage(session);
        errors = refusalErrors(err, "spec");
      }
      return refusedProductPage(deps, session, params.id, { upload: { specUrl: formText.parse(fields.specUrl), activate, errors } });
    }, { operator: true })
    .post("/admin/products/:id/versions/:version/activate", async ({ session, actor, params, request }) => {
      const version = versionParam(params.version);
      if (version === undefined) return notFoundPage(session);
      try {
        await activateVersion(deps, params.id, version, actor);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        if (err.code === "not_found") return notFoundPage(session);
        return refusedProductPage(deps, session, params.id, { versionError: `Version ${version} ${refusalErrors(err)[0]!.message}.` });
      }
      return redirectAfterPost(request, paths.adminProductDone(params.id, "activated" satisfies ProductDone, version));
    }, { operator: true })
    .get("/admin/products/:id/versions/:version/spec.json", async ({ session, params }) => {
      const version = versionParam(params.version);
      if (version === undefined) return notFoundPage(session);
      const doc = await ownedOr404(session, () => specDocument(deps, params.id, version));
      if (doc instanceof Response) return doc;
      // The id was found, so it is a product id (lowercase letters, digits, dashes): safe in the header.
      return new Response(JSON.stringify(doc, null, 2), {
        headers: { "content-type": "application/json; charset=utf-8", "content-disposition": `attachment; filename="${params.id}-v${version}.json"`, "x-content-type-options": "nosniff" },
      });
    }, { operator: true })
    .post("/admin/products/:id/secret", async ({ session, actor, params }) => {
      const secret = await ownedOr404(session, () => rotateGatewaySecret(deps, params.id, actor));
      if (secret instanceof Response) return secret;
      const { product } = await getProduct(deps, params.id);
      return secretPage(deps, session, product, secret, false);
    }, { operator: true })
    .post("/admin/products/:id/remove", async ({ session, actor, params, body, request }) => {
      const confirm = formText.parse(formFields(body).confirm).trim();
      if (confirm !== params.id) {
        return refusedProductPage(deps, session, params.id, { remove: { confirm, error: confirm ? "is not the product's id" : "is required: type the product's id" } });
      }
      const done = await ownedOr404(session, async () => {
        await removeProduct(deps, params.id, actor);
        return true;
      });
      return done instanceof Response ? done : redirectAfterPost(request, paths.adminProductRemoved(params.id));
    }, { operator: true });
