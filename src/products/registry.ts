import { eq, sql } from "drizzle-orm";
import { Sealer } from "../crypto/seal.ts";
import type { Db } from "../db/client.ts";
import type { Logger } from "../ops/log.ts";
import type { SharedState, Unsubscribe } from "../state/types.ts";
import { productSpecs, products, type ProductStatus } from "./products.sql.ts";
import { checkSpec, compileTemplate, namespacedSpec, type PathMatcher, type SpecOperation } from "./spec.ts";
import { compileRequestChecks, type RequestCheck } from "./validate.ts";

type Json = Record<string, unknown>;

/** An operation as the proxy matches it. */
export interface ProductOperation extends SpecOperation {
  /** `GET /v1/tracking/shipments/{id}`: the usage rows' endpoint. */
  endpoint: string;
  matcher: PathMatcher;
  /** Set when the product checks requests against its spec. */
  check: RequestCheck | undefined;
}

/** A registered product, compiled from its row and its active spec version. */
export interface Product {
  id: string;
  name: string;
  description: string;
  status: ProductStatus;
  upstreamUrl: string;
  sandboxUrl: string | null;
  timeoutMs: number;
  maxBodyBytes: number;
  validateRequests: boolean;
  /** The Keyport-Gateway-Secret, opened from its sealed form. */
  secret: string;
  version: number;
  updatedAt: number;
  /** The row it was compiled from, as text: a reload recompiles only a product whose row changed. */
  digest: string;
  /** Most specific first (more literal characters), so `/shipments/latest` wins over `/shipments/{id}`. */
  operations: ProductOperation[];
  /** Its part of /openapi.json (src/products/document.ts adds the gateway's answers). */
  paths: Record<string, Json>;
  components: Record<string, Record<string, unknown>>;
}

export interface Match {
  operation: ProductOperation;
  params: Record<string, string>;
}

const CHANGED_CHANNEL = "products:changed";
const EPOCH_KEY = "products:epoch";
const EPOCH_TTL_MS = 400 * 86_400_000;

/** The sealer of gateway secrets; its associated data is the product id, so a sealed value cannot move to another product. */
export function secretSealer(secretKey: string | undefined): Sealer {
  if (!secretKey) throw new Error("SECRET_KEY is not set");
  return new Sealer(secretKey, "product-gateway-secrets");
}

/** The operation a request's method and path (after /v1/<id>) reach, with its path parameters. */
export function matchOperation(product: Product, method: string, path: string): Match | undefined {
  // HEAD is served by a GET operation when the spec has no HEAD of its own (RFC 9110 §9.3.2).
  let fallback: Match | undefined;
  for (const op of product.operations) {
    if (op.method !== method && !(method === "HEAD" && op.method === "GET")) continue;
    const m = op.matcher.regex.exec(path);
    if (!m) continue;
    const params: Record<string, string> = {};
    op.matcher.params.forEach((name, i) => {
      let v = m[i + 1]!;
      try {
        v = decodeURIComponent(v);
      } catch {
        // A bad escape is passed on as sent: the upstream judges it.
      }
      params[name] = v;
    });
    if (op.method === method) return { operation: op, params };
    fallback ??= { operation: op, params };
  }
  return fallback;
}

/**
 * Every instance's compiled view of the registered products. A request reads it from memory;
 * a change (src/products/service.ts) reloads it here and tells the other instances — a
 * message on a channel (fast, at-most-once) and an epoch they poll every few seconds (covers
 * lost messages and a CLI run in another process). A reload reads the products table and the
 * active specs, never on a request's path.
 */
export class ProductRegistry {
  private byId = new Map<string, Product>();
  /** Bumped by every reload that changed something: the OpenAPI document is rebuilt on it. */
  version = 0;
  private epoch: number | undefined;
  private fingerprint = "";
  private poller: ReturnType<typeof setInterval> | undefined;
  private polls = 0;
  private unsubscribe: Unsubscribe | undefined;
  private reloading: Promise<void> | undefined;
  private again = false;
  private sealer: Sealer | undefined;

  constructor(
    private readonly db: Db,
    private readonly state: SharedState,
    private readonly secretKey: string | undefined,
    private readonly log: Logger,
    private readonly pollMs = 2_000,
  ) {}

  async start(): Promise<void> {
    await this.reload();
    this.unsubscribe = await this.state.subscribe(CHANGED_CHANNEL, () => void this.reload());
    this.state.onMessagesMaybeLost(() => void this.reload());
    this.epoch = await this.state.get(EPOCH_KEY).catch(() => undefined);
    this.poller = setInterval(() => void this.poll(), this.pollMs);
    this.poller.unref?.();
  }

  async stop(): Promise<void> {
    if (this.poller) clearInterval(this.poller);
    await this.unsubscribe?.().catch(() => {});
  }

  get(id: string): Product | undefined {
    return this.byId.get(id);
  }

  list(): Product[] {
    return [...this.byId.values()].sort((a, b) => a.id.localeCompare(b.id));
  }

  /** The scopes the products' operations need, each with the operations it opens. */
  scopes(): { name: string; description: string }[] {
    const out: { name: string; description: string }[] = [];
    for (const p of this.list()) {
      const byScope = new Map<string, string[]>();
      for (const op of [...p.operations].sort((a, b) => a.template.localeCompare(b.template))) byScope.set(op.scope, [...(byScope.get(op.scope) ?? []), `${op.method} ${op.template}`]);
      for (const [name, ops] of [...byScope].sort(([a], [b]) => a.localeCompare(b))) {
        const listed = ops.slice(0, 3).join(", ") + (ops.length > 3 ? `, and ${ops.length - 3} more` : "");
        out.push({ name, description: `${p.name}: ${listed}` });
      }
    }
    return out;
  }

  /** After a change made here: reload at once, then tell the other instances. */
  async announce(): Promise<void> {
    await this.reload();
    try {
      await Promise.all([this.state.publish(CHANGED_CHANNEL, "1"), this.state.incr(EPOCH_KEY, 1, EPOCH_TTL_MS)]);
    } catch (err) {
      this.log.warn("product change not announced to other instances; their poll of the database finds it", { error: (err as Error).message });
    }
  }

  /** The epoch every poll; the database's fingerprint every tenth (no shared state between processes without Redis). */
  async poll(): Promise<void> {
    try {
      const epoch = await this.state.get(EPOCH_KEY);
      const moved = this.epoch !== undefined && epoch !== this.epoch;
      this.epoch = epoch;
      if (moved || ++this.polls % 10 === 0) await this.reload();
    } catch (err) {
      this.log.warn("products not reloaded", { error: (err as Error).message });
    }
  }

  /** Reads every product and its active spec; recompiles those whose version or row changed. Reloads run one at a time; one asked for during another runs after it. */
  reload(): Promise<void> {
    if (this.reloading) {
      this.again = true;
      return this.reloading;
    }
    this.reloading = (async () => {
      try {
        do {
          this.again = false;
          await this.readAll();
        } while (this.again);
      } finally {
        this.reloading = undefined;
      }
    })();
    return this.reloading;
  }

  private async readAll(): Promise<void> {
    // Every column of every row: two changes within one clock tick, or from instances whose
    // clocks disagree, still change it (a rotation reseals the secret with a new nonce).
    const [print] = await this.db.select({ digest: sql<string>`md5(coalesce(string_agg(${products}::text, ',' order by ${products.id}), ''))` }).from(products);
    const fingerprint = print!.digest;
    if (fingerprint === this.fingerprint) return;
    const rows = await this.db
      .select({ product: products, spec: productSpecs.spec })
      .from(products)
      .innerJoin(productSpecs, sql`${productSpecs.productId} = ${products.id} and ${productSpecs.version} = ${products.activeVersion}`);
    const next = new Map<string, Product>();
    for (const { product: row, spec } of rows) {
      const current = this.byId.get(row.id);
      const digest = rowDigest(row);
      if (current && current.digest === digest) {
        next.set(row.id, current);
        continue;
      }
      try {
        next.set(row.id, await compileProduct(row, spec, (this.sealer ??= secretSealer(this.secretKey)).open(row.secretSealed, row.id)));
      } catch (err) {
        // A stored spec was checked when uploaded; one that no longer compiles (a newer
        // validator) keeps its previous version serving rather than none.
        this.log.error("product not compiled; its previous version keeps serving", { product: row.id, version: row.activeVersion, error: (err as Error).message });
        if (current) next.set(row.id, current);
      }
    }
    this.byId = next;
    this.fingerprint = fingerprint;
    this.version++;
  }
}

type ProductRow = typeof products.$inferSelect;

const rowDigest = (row: ProductRow) => JSON.stringify(row);

/** A product's row and spec compiled: its operations matched most specific first, its checks and its part of the document. */
export async function compileProduct(row: ProductRow, spec: Json, secret: string): Promise<Product> {
  const checked = await checkSpec(spec, row.id);
  if (!checked.ok) throw new Error(checked.errors.map((e) => e.message).join("; "));
  const { paths, components } = namespacedSpec(row.id, checked.spec, checked.version, checked.operations);
  const escape = (s: string) => s.replace(/~/g, "~0").replace(/\//g, "~1");
  const nsPointer = (o: SpecOperation) => `/paths/${escape(`/v1/${row.id}${o.template === "/" ? "" : o.template}`)}/${o.method.toLowerCase()}`;
  const checks = row.validateRequests
    ? compileRequestChecks(
        { paths, components },
        checked.operations.map((o) => ({ ...o, pointer: nsPointer(o) })),
      )
    : undefined;
  const operations: ProductOperation[] = checked.operations
    .map((o) => ({ ...o, endpoint: `${o.method} /v1/${row.id}${o.template === "/" ? "" : o.template}`, matcher: compileTemplate(o.template), check: checks?.get(nsPointer(o)) }))
    .sort((a, b) => b.matcher.literal - a.matcher.literal || a.matcher.params.length - b.matcher.params.length);
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
    secret,
    version: row.activeVersion,
    updatedAt: row.updatedAt.getTime(),
    digest: rowDigest(row),
    operations,
    paths,
    components,
  };
}

/** The stored versions of a product's spec, newest first (the admin page's list). */
export async function specVersions(db: Db, productId: string) {
  return db
    .select({ version: productSpecs.version, source: productSpecs.source, specVersion: productSpecs.specVersion, operations: productSpecs.operations, createdAt: productSpecs.createdAt })
    .from(productSpecs)
    .where(eq(productSpecs.productId, productId))
    .orderBy(sql`${productSpecs.version} desc`);
}
