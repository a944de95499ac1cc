import { randomBytes } from "node:crypto";
import { and, desc, eq, max } from "drizzle-orm";
import { recordAudit, type Actor } from "../audit/service.ts";
import { auditEvents } from "../audit/audit.sql.ts";
import type { Deps } from "../deps.ts";
import type { Db, Tx } from "../db/client.ts";
import { DomainError, invalidInput, notFound, zodFieldErrors, type FieldError } from "../errors.ts";
import { registerProductSchema, updateProductSchema, type ProductView, type SpecSource } from "./model.ts";
import { productSpecs, products } from "./products.sql.ts";
import { secretSealer, specVersions } from "./registry.ts";
import { MAX_SPEC_BYTES, checkSpec, parseSpecText, type SpecOperation } from "./spec.ts";

type ProductDeps = Pick<Deps, "db" | "clock" | "config" | "products" | "catalog">;
type Json = Record<string, unknown>;

/** The audit log a product's changes are written to (the admin product page shows it). */
export const productLog = (id: string) => `product:${id}`;

/** How long a spec URL has to answer. */
const SPEC_FETCH_TIMEOUT_MS = 10_000;

/** A new Keyport-Gateway-Secret: 256 random bits, base64url, with a prefix that says what it is. */
function newGatewaySecret(): string {
  return `kpgw_${randomBytes(32).toString("base64url")}`;
}

/**
 * The spec's text, read from what was sent or fetched once from its URL (operators only:
 * the server makes the request). Refusals name the `spec` field.
 */
async function specText(source: SpecSource): Promise<{ text: string; source: string }> {
  if ("text" in source) return { text: source.text, source: source.name.slice(0, 200) || "upload" };
  let url: URL;
  try {
    url = new URL(source.url);
  } catch {
    throw invalidInput("The spec URL is not valid.", [{ field: "specUrl", message: "must be an http or https URL" }]);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw invalidInput("The spec URL is not valid.", [{ field: "specUrl", message: "must be an http or https URL" }]);
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(SPEC_FETCH_TIMEOUT_MS), redirect: "follow", headers: { accept: "application/json, application/yaml, text/yaml, */*" } });
  } catch (err) {
    const message = (err as Error).name === "TimeoutError" ? `did not answer within ${SPEC_FETCH_TIMEOUT_MS / 1000} s` : `could not be fetched: ${(err as Error).message}`;
    throw invalidInput("The spec could not be fetched.", [{ field: "specUrl", message }]);
  }
  if (!res.ok) throw invalidInput("The spec could not be fetched.", [{ field: "specUrl", message: `answered ${res.status}` }]);
  const declared = Number(res.headers.get("content-length") ?? 0);
  if (declared > MAX_SPEC_BYTES) throw invalidInput("The spec is too large.", [{ field: "specUrl", message: `is larger than ${MAX_SPEC_BYTES / 1024 / 1024} MB` }]);
  const body = await res.arrayBuffer();
  if (body.byteLength > MAX_SPEC_BYTES) throw invalidInput("The spec is too large.", [{ field: "specUrl", message: `is larger than ${MAX_SPEC_BYTES / 1024 / 1024} MB` }]);
  return { text: new TextDecoder().decode(body), source: url.href.slice(0, 500) };
}

/** The spec read and checked for a product id: the document and its operations, or every problem as `spec` field errors. */
async function readSpec(source: SpecSource, productId: string): Promise<{ ok: true; spec: Json; source: string; operations: SpecOperation[] } | { ok: false; errors: FieldError[] }> {
  let read: { text: string; source: string };
  try {
    read = await specText(source);
  } catch (err) {
    // Reported with the settings' mistakes, all at once.
    if (err instanceof DomainError && err.errors) return { ok: false, errors: err.errors };
    throw err;
  }
  const { text, source: from } = read;
  const parsed = parseSpecText(text);
  if (!parsed.ok) return { ok: false, errors: [{ field: "spec", message: parsed.message }] };
  const checked = await checkSpec(parsed.value, productId);
  if (!checked.ok) return checked;
  return { ok: true, spec: checked.spec, source: from, operations: checked.operations };
}

function view(row: typeof products.$inferSelect, operations: SpecOperation[]): ProductView {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    status: row.status,
    upstreamUrl: row.upstreamUrl,
    sandboxUrl: row.sandboxUrl,
    timeoutMs: row.timeoutMs,
    maxBodyBytes: row.maxBodyBytes,
    validateRequests: row.validateRequests,
    activeVersion: row.activeVersion,
    operations: operations.map((o) => ({ method: o.method, path: o.template, operationId: o.operationId, scope: o.scope, summary: o.summary })),
    scopes: [...new Set(operations.map((o) => o.scope))].sort(),
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
  };
}

async function operationsOf(db: Db | Tx, productId: string, version: number): Promise<SpecOperation[]> {
  const [spec] = await db.select({ spec: productSpecs.spec }).from(productSpecs).where(and(eq(productSpecs.productId, productId), eq(productSpecs.version, version)));
  if (!spec) return [];
  const checked = await checkSpec(spec.spec, productId);
  return checked.ok ? checked.operations : [];
}

/**
 * Registers a product from its settings and spec (version 1, active). Every mistake is
 * reported at once: the settings' fields and the spec's problems. The gateway secret is
 * answered here, once; it is stored sealed. Serves from the next request on every instance.
 */
export async function registerProduct(deps: ProductDeps, input: unknown, source: SpecSource, who: Actor): Promise<{ product: ProductView; secret: string }> {
  const settings = registerProductSchema.safeParse(input ?? {});
  const errors: FieldError[] = settings.success ? [] : zodFieldErrors(settings.error);
  const id = settings.success ? settings.data.id : typeof (input as Json | null)?.id === "string" ? ((input as Json).id as string) : "";
  if (settings.success && deps.catalog.products.some((p) => p.id === id)) errors.push({ field: "id", message: "is one of Keyport's own products" });
  const spec = await readSpec(source, id || "product");
  if (!spec.ok) errors.push(...spec.errors);
  if (errors.length > 0 || !settings.success || !spec.ok) throw invalidInput("The product is not valid.", errors);
  const s = settings.data;
  const now = new Date(deps.clock.now());
  const secret = newGatewaySecret();
  const row = await deps.db.transaction(async (tx) => {
    const [existing] = await tx.select({ id: products.id }).from(products).where(eq(products.id, s.id));
    if (existing) throw new DomainError("product_exists", `A product "${s.id}" is already registered; upload a new spec version to it instead.`, [{ field: "id", message: "is already registered" }]);
    const [inserted] = await tx
      .insert(products)
      .values({
        id: s.id,
        name: s.name ?? specTitle(spec.spec) ?? s.id,
        description: s.description || specDescription(spec.spec),
        status: s.status,
        upstreamUrl: s.upstreamUrl,
        sandboxUrl: s.sandboxUrl,
        timeoutMs: s.timeoutMs,
        maxBodyBytes: s.maxBodyBytes,
        validateRequests: s.validateRequests,
        secretSealed: secretSealer(deps.config.secretKey).seal(secret, s.id),
        activeVersion: 1,
        createdAt: now,
        updatedAt: now,
      })
      .onConflictDoNothing()
      .returning();
    if (!inserted) throw new DomainError("product_exists", `A product "${s.id}" is already registered; upload a new spec version to it instead.`, [{ field: "id", message: "is already registered" }]);
    await tx.insert(productSpecs).values({ productId: s.id, version: 1, spec: spec.spec, source: spec.source, specVersion: specInfoVersion(spec.spec), operations: spec.operations.length, createdAt: now });
    await recordAudit(tx, who, { accountId: productLog(s.id), action: "product.registered", changes: { ...settingsChanges(inserted), version: 1, source: spec.source, operations: spec.operations.length } }, now);
    return inserted;
  });
  await deps.products.announce();
  return { product: view(row, spec.operations), secret };
}

/** The settings an audit event records (never the secret). */
function settingsChanges(row: typeof products.$inferSelect): Json {
  return { name: row.name, status: row.status, upstreamUrl: row.upstreamUrl, sandboxUrl: row.sandboxUrl, timeoutMs: row.timeoutMs, maxBodyBytes: row.maxBodyBytes, validateRequests: row.validateRequests };
}

const specTitle = (spec: Json) => {
  const t = (spec.info as Json | undefined)?.title;
  return typeof t === "string" && t.trim() ? t.trim().slice(0, 60) : undefined;
};
const specDescription = (spec: Json) => {
  const d = (spec.info as Json | undefined)?.description;
  return typeof d === "string" ? d.trim().split(/\n\s*\n/)[0]!.slice(0, 300) : "";
};
const specInfoVersion = (spec: Json) => {
  const v = (spec.info as Json | undefined)?.version;
  return typeof v === "string" ? v.slice(0, 40) : "";
};

async function lockedProduct(tx: Tx, id: string) {
  const [row] = await tx.select().from(products).where(eq(products.id, id)).for("update");
  if (!row) throw notFound("product");
  return row;
}

/** Changes a product's settings; only the fields given. Audited with what changed. */
export async function updateProduct(deps: ProductDeps, id: string, input: unknown, who: Actor): Promise<ProductView> {
  const parsed = updateProductSchema.safeParse(input ?? {});
  if (!parsed.success) throw invalidInput("The product change is not valid.", zodFieldErrors(parsed.error));
  const now = new Date(deps.clock.now());
  const row = await deps.db.transaction(async (tx) => {
    const current = await lockedProduct(tx, id);
    const changes: Json = {};
    for (const [k, v] of Object.entries(parsed.data)) {
      if (v !== undefined && current[k as keyof typeof current] !== v) changes[k] = v;
    }
    if (Object.keys(changes).length === 0) return current;
    const [updated] = await tx.update(products).set({ ...changes, updatedAt: now }).where(eq(products.id, id)).returning();
    await recordAudit(tx, who, { accountId: productLog(id), action: "product.updated", changes }, now);
    return updated!;
  });
  await deps.products.announce();
  return view(row, await operationsOf(deps.db, id, row.activeVersion));
}

/** A new spec version, active at once unless `activate` is false. A refused spec changes nothing and lists its problems. */
export async function uploadSpec(deps: ProductDeps, id: string, source: SpecSource, who: Actor, activate = true): Promise<{ product: ProductView; version: number }> {
  const spec = await readSpec(source, id);
  if (!spec.ok) throw invalidInput("The spec is not valid.", spec.errors);
  const now = new Date(deps.clock.now());
  const { row, version } = await deps.db.transaction(async (tx) => {
    const current = await lockedProduct(tx, id);
    const [last] = await tx.select({ v: max(productSpecs.version) }).from(productSpecs).where(eq(productSpecs.productId, id));
    const version = (last?.v ?? 0) + 1;
    await tx.insert(productSpecs).values({ productId: id, version, spec: spec.spec, source: spec.source, specVersion: specInfoVersion(spec.spec), operations: spec.operations.length, createdAt: now });
    let row = current;
    if (activate) row = (await tx.update(products).set({ activeVersion: version, updatedAt: now }).where(eq(products.id, id)).returning())[0]!;
    await recordAudit(tx, who, { accountId: productLog(id), action: "product.spec_uploaded", changes: { version, source: spec.source, operations: spec.operations.length, active: activate } }, now);
    return { row: row!, version };
  });
  await deps.products.announce();
  return { product: view(row, activate ? spec.operations : await operationsOf(deps.db, id, row.activeVersion)), version };
}

/** Makes a stored version the one that serves (a rollback, or a version uploaded inactive). */
export async function activateVersion(deps: ProductDeps, id: string, version: number, who: Actor): Promise<ProductView> {
  const now = new Date(deps.clock.now());
  const row = await deps.db.transaction(async (tx) => {
    const current = await lockedProduct(tx, id);
    const [exists] = await tx.select({ v: productSpecs.version }).from(productSpecs).where(and(eq(productSpecs.productId, id), eq(productSpecs.version, version)));
    if (!exists) throw invalidInput("No such spec version.", [{ field: "version", message: `is not a version of ${id}` }]);
    if (current.activeVersion === version) return current;
    const [row] = await tx.update(products).set({ activeVersion: version, updatedAt: now }).where(eq(products.id, id)).returning();
    await recordAudit(tx, who, { accountId: productLog(id), action: "product.version_activated", changes: { from: current.activeVersion, to: version } }, now);
    return row!;
  });
  await deps.products.announce();
  return view(row, await operationsOf(deps.db, id, row.activeVersion));
}

/** A new gateway secret, sent from the next request on every instance; answered once. */
export async function rotateGatewaySecret(deps: ProductDeps, id: string, who: Actor): Promise<string> {
  const now = new Date(deps.clock.now());
  const secret = newGatewaySecret();
  await deps.db.transaction(async (tx) => {
    await lockedProduct(tx, id);
    await tx.update(products).set({ secretSealed: secretSealer(deps.config.secretKey).seal(secret, id), updatedAt: now }).where(eq(products.id, id));
    await recordAudit(tx, who, { accountId: productLog(id), action: "product.secret_rotated", changes: {} }, now);
  });
  await deps.products.announce();
  return secret;
}

/** Removes a product and its spec versions: /v1/<id> answers 404 from the next request. Usage rows and the audit log stay. */
export async function removeProduct(deps: ProductDeps, id: string, who: Actor): Promise<void> {
  const now = new Date(deps.clock.now());
  await deps.db.transaction(async (tx) => {
    const current = await lockedProduct(tx, id);
    await tx.delete(products).where(eq(products.id, id));
    await recordAudit(tx, who, { accountId: productLog(id), action: "product.removed", changes: { name: current.name, version: current.activeVersion } }, now);
  });
  await deps.products.announce();
}

export async function listProducts(deps: Pick<Deps, "db">): Promise<ProductView[]> {
  const rows = await deps.db.select({ product: products, spec: productSpecs.spec }).from(products).innerJoin(productSpecs, and(eq(productSpecs.productId, products.id), eq(productSpecs.version, products.activeVersion))).orderBy(products.id);
  const out: ProductView[] = [];
  for (const { product, spec } of rows) {
    const checked = await checkSpec(spec, product.id);
    out.push(view(product, checked.ok ? checked.operations : []));
  }
  return out;
}

/** A product with its spec versions and its audit log (the admin product page). */
export async function getProduct(deps: Pick<Deps, "db">, id: string) {
  const [row] = await deps.db.select().from(products).where(eq(products.id, id));
  if (!row) throw notFound("product");
  const [versions, events, operations] = await Promise.all([
    specVersions(deps.db, id),
    deps.db.select().from(auditEvents).where(eq(auditEvents.accountId, productLog(id))).orderBy(desc(auditEvents.createdAt), desc(auditEvents.id)).limit(50),
    operationsOf(deps.db, id, row.activeVersion),
  ]);
  return { product: view(row, operations), versions, events };
}

/** The stored document of one version (the admin page's download). */
export async function specDocument(deps: Pick<Deps, "db">, id: string, version: number): Promise<Json> {
  const [row] = await deps.db.select({ spec: productSpecs.spec }).from(productSpecs).where(and(eq(productSpecs.productId, id), eq(productSpecs.version, version)));
  if (!row) throw notFound("spec version");
  return row.spec;
}
