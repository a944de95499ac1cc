import { afterAll, describe, expect, it } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { auditEvents, productSpecs, products } from "../../src/db/schema.ts";
import { openPglite } from "../../src/db/client.ts";
import { projectRoot } from "../../src/embedded.ts";
import { secretSealer } from "../../src/products/registry.ts";
import { backends, testConfig } from "../support/backends.ts";
import { PER_PROCESS_MS, cliHarness } from "../support/cli.ts";
import { startHarness } from "../support/harness.ts";

/** Known to the test, so the sealed gateway secret can be opened from the rows. */
const SECRET_KEY = testConfig().secretKey!;
/** Asynchronous: a spec URL is answered by a server in this process, which a blocking spawn would starve. */
const { tempDir, seededDir, cliAsync: cli } = cliHarness("kp-cli-products-", { SECRET_KEY });

const ok200 = { "200": { description: "ok" } };
const idParam = (name = "id") => ({ name, in: "path", required: true, schema: { type: "string" } });

/** Three operations: two reads, one write. */
const V1 = {
  openapi: "3.1.0",
  info: { title: "Tracking", version: "1.0.0", description: "Where parcels are." },
  paths: {
    "/shipments": { get: { operationId: "listShipments", responses: ok200 }, post: { operationId: "createShipment", responses: { "201": { description: "made" } } } },
    "/shipments/{id}": { get: { operationId: "getShipment", parameters: [idParam()], responses: ok200 } },
  },
};

/** V1 and a fourth operation with a scope of its own, written as YAML. */
const V2_YAML = `openapi: 3.1.0
info:
  title: Tracking
  version: 2.0.0
paths:
  /shipments:
    get:
      operationId: listShipments
      responses: { "200": { description: ok } }
    post:
      operationId: createShipment
      responses: { "201": { description: made } }
  /shipments/{id}:
    get:
      operationId: getShipment
      parameters: [{ name: id, in: path, required: true, schema: { type: string } }]
      responses: { "200": { description: ok } }
  /shipments/{id}/events:
    get:
      operationId: listEvents
      x-keyport-scope: tracking:events
      parameters: [{ name: id, in: path, required: true, schema: { type: string } }]
      responses: { "200": { description: ok } }
`;

/** Valid OpenAPI, refused by Keyport's own rules twice: another product's scope, and two paths one request shape. */
const REFUSED = {
  openapi: "3.1.0",
  info: { title: "Bad", version: "1" },
  paths: {
    "/shipments/{id}": { get: { "x-keyport-scope": "other:read", parameters: [idParam()], responses: ok200 } },
    "/shipments/{key}": { get: { parameters: [idParam("key")], responses: ok200 } },
  },
};

/** A folder holding the specs, by name. */
function specFiles(): Record<"v1" | "v2" | "refused" | "broken", string> {
  const d = tempDir();
  const files = { v1: ["v1.json", JSON.stringify(V1)], v2: ["v2.yaml", V2_YAML], refused: ["refused.json", JSON.stringify(REFUSED)], broken: ["broken.json", '{"openapi": '] } as const;
  const out = {} as Record<keyof typeof files, string>;
  for (const [k, [name, text]] of Object.entries(files)) {
    writeFileSync(join(d, name), text);
    out[k as keyof typeof files] = join(d, name);
  }
  return out;
}

const GATEWAY_SECRET = /^kpgw_[A-Za-z0-9_-]{43}$/;
const lines = (s: string) => s.trimEnd().split("\n");

describe("keyport product add and list", () => {
  it("registers a product from a spec file, printing its gateway secret alone on stdout, and lists it as a table and as JSON", async () => {
    const dataDir = await seededDir();
    const specs = specFiles();
    const run = (...args: string[]) => cli(args, { DATA_DIR: dataDir });
    const added = await run("product", "add", "--id", "tracking", "--spec", specs.v1, "--upstream", "http://127.0.0.1:9/base/", "--sandbox", "http://127.0.0.1:10");
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/^kpgw_[A-Za-z0-9_-]{43}\n$/);
    const secret = added.stdout.trim();
    expect(lines(added.stderr)).toEqual([
      'registered tracking "Tracking": version 1, 3 operations, scopes tracking:read, tracking:write',
      "the upstream receives that secret as Keyport-Gateway-Secret; it is not shown again (a new one: --rotate-secret)",
    ]);

    const table = lines((await run("product", "list")).stdout);
    expect(table[0]).toMatch(/^ID +NAME +STATUS +VERSION +OPERATIONS +UPSTREAM +SANDBOX$/);
    expect(table.slice(1).map((l) => l.split(/ {2,}/))).toEqual([["tracking", "Tracking", "active", "1", "3", "http://127.0.0.1:9/base", "http://127.0.0.1:10"]]);
    expect(table[1]!.indexOf("http://127.0.0.1:9")).toBe(table[0]!.indexOf("UPSTREAM"));

    const listed = await run("product", "list", "--json");
    expect(listed.code).toBe(0);
    expect(listed.stdout).not.toContain(secret);
    expect(JSON.parse(listed.stdout)).toEqual([
      expect.objectContaining({
        id: "tracking",
        name: "Tracking",
        description: "Where parcels are.",
        status: "active",
        upstreamUrl: "http://127.0.0.1:9/base",
        sandboxUrl: "http://127.0.0.1:10",
        timeoutMs: 30_000,
        validateRequests: false,
        activeVersion: 1,
        scopes: ["tracking:read", "tracking:write"],
      }),
    ]);
    expect(JSON.parse(listed.stdout)[0].operations.map((o: { method: string; path: string }) => `${o.method} ${o.path}`)).toEqual(["GET /shipments", "POST /shipments", "GET /shipments/{id}"]);
  }, 4 * PER_PROCESS_MS);
});

describe("keyport product update and remove", () => {
  it("uploads a version from a URL, activates an older one, rotates the secret and removes the product", async () => {
    const dataDir = await seededDir();
    const specs = specFiles();
    const run = (...args: string[]) => cli(args, { DATA_DIR: dataDir });
    // The spec URL's server: the CLI's service fetches it once.
    const specServer = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: (req) => (new URL(req.url).pathname === "/v2.yaml" ? new Response(V2_YAML, { headers: { "content-type": "application/yaml" } }) : new Response("no", { status: 404 })),
    });
    try {
      const added = await run("product", "add", "--id", "tracking", "--spec", specs.v1, "--upstream", "http://127.0.0.1:9", "--timeout", "5000", "--max-body", "1024", "--validate", "--json");
      expect(added.code, added.stderr).toBe(0);
      const first = JSON.parse(added.stdout) as { secret: string; activeVersion: number; timeoutMs: number; maxBodyBytes: number; validateRequests: boolean };
      expect(first.secret).toMatch(GATEWAY_SECRET);
      expect([first.activeVersion, first.timeoutMs, first.maxBodyBytes, first.validateRequests]).toEqual([1, 5000, 1024, true]);

      // A URL that does not answer with a spec: refused, named by its flag, nothing stored.
      const missing = await run("product", "update", "--id", "tracking", "--spec", `${specServer.url}missing.yaml`);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toBe("keyport: --spec: answered 404\n");

      const updated = await run("product", "update", "--id", "tracking", "--spec", `${specServer.url}v2.yaml`, "--name", "Parcel tracking", "--status", "beta", "--sandbox", "http://127.0.0.1:10", "--no-validate");
      expect(updated.code, updated.stderr).toBe(0);
      expect(lines(updated.stdout)).toEqual(["tracking: version 2 uploaded and active (4 operations)", "tracking: name, status, sandbox, request validation updated"]);

      const rolledBack = await run("product", "update", "--id", "tracking", "--activate-version", "1", "--json");
      expect(rolledBack.code, rolledBack.stderr).toBe(0);
      expect(JSON.parse(rolledBack.stdout)).toMatchObject({ activeVersion: 1, name: "Parcel tracking", status: "beta", sandboxUrl: "http://127.0.0.1:10", validateRequests: false, scopes: ["tracking:read", "tracking:write"] });
      expect(rolledBack.stdout).not.toContain("secret");

      const unknownVersion = await run("product", "update", "--id", "tracking", "--activate-version", "7");
      expect(unknownVersion.code).toBe(2);
      expect(unknownVersion.stderr).toBe("keyport: --activate-version is not a version of tracking\n");

      const rotated = await run("product", "update", "--id", "tracking", "--rotate-secret");
      expect(rotated.code, rotated.stderr).toBe(0);
      expect(rotated.stdout).toMatch(/^kpgw_[A-Za-z0-9_-]{43}\n$/);
      const secret = rotated.stdout.trim();
      expect(secret).not.toBe(first.secret);
      expect(rotated.stderr).toBe("tracking: a new Keyport-Gateway-Secret, sent from the next request: give it to the upstream\n");

      // What the commands stored: the rotated secret (sealed), both versions, an audit trail.
      const db = await openPglite(dataDir);
      try {
        const [row] = await db.db.select().from(products);
        expect(secretSealer(SECRET_KEY).open(row!.secretSealed, "tracking")).toBe(secret);
        expect((await db.db.select().from(productSpecs)).map((s) => [s.version, s.operations]).sort()).toEqual([
          [1, 3],
          [2, 4],
        ]);
        const events = await db.db.select().from(auditEvents);
        expect(events.filter((e) => e.accountId === "product:tracking").map((e) => e.action).sort()).toEqual(
          ["product.registered", "product.spec_uploaded", "product.updated", "product.version_activated", "product.secret_rotated"].sort(),
        );
      } finally {
        await db.close();
      }

      const removed = await run("product", "remove", "--id", "tracking");
      expect(removed.code, removed.stderr).toBe(0);
      expect(removed.stdout).toBe("tracking removed\n");
      const again = await run("product", "remove", "--id", "tracking");
      expect(again.code).toBe(2);
      expect(again.stdout).toBe("");
      expect(again.stderr).toBe('keyport: no product "tracking" (see: keyport product list)\n');
    } finally {
      await specServer.stop(true);
    }
  }, 10 * PER_PROCESS_MS);
});

describe("keyport product refusals", () => {
  it("refuses a spec that does not validate, each problem on a line of its own beside the other refused values, exit 2", async () => {
    const specs = specFiles();
    const refused = await cli(["product", "add", "--id", "tracking", "--spec", specs.refused, "--upstream", "ftp://127.0.0.1", "--timeout", "5"]);
    expect(refused.code).toBe(2);
    expect(refused.stdout).toBe("");
    expect(lines(refused.stderr)).toEqual([
      "keyport: --upstream must be an http or https URL",
      "keyport: --timeout must be at least 100 ms",
      'keyport: --spec: /paths/~1shipments~1{id}/get/x-keyport-scope must be "tracking:" then 1-32 lowercase letters, digits, "_" or "-"',
      "keyport: --spec: /paths/~1shipments~1{key}/get: matches the same requests as GET /shipments/{id}",
    ]);
    const broken = await cli(["product", "update", "--id", "tracking", "--spec", specs.broken]);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toStartWith("keyport: --spec is not valid JSON: ");
    expect(lines(broken.stderr).length).toBe(1);
  }, 2 * PER_PROCESS_MS);

  it("says in one line that a spec file cannot be read", async () => {
    const d = tempDir();
    const missing = await cli(["product", "add", "--id", "tracking", "--spec", join(d, "nope.json"), "--upstream", "http://127.0.0.1:9"]);
    expect(missing.code).toBe(2);
    expect(missing.stdout).toBe("");
    expect(missing.stderr).toBe(`keyport: --spec: cannot read ${JSON.stringify(join(d, "nope.json"))}: no such file or directory\n`);
    const folder = await cli(["product", "update", "--id", "tracking", "--spec", d]);
    expect(folder.code).toBe(2);
    expect(folder.stderr).toBe(`keyport: --spec: cannot read ${JSON.stringify(d)}: it is a directory\n`);
  }, 2 * PER_PROCESS_MS);

  it("reports every mistake of a command line at once, one line each, then the usage", async () => {
    const add = await cli(["product", "add", "--colour", "red", "--id", "--timeout", "fast", "--max-body", "-5", "--status", "gone", "--validate=yes", "stray"]);
    expect(add.code).toBe(2);
    expect(add.stdout).toBe("");
    expect(add.stderr.split("\n\n")[0]!.split("\n")).toEqual([
      "keyport: unknown flag --colour",
      "keyport: --id needs a value",
      "keyport: --validate takes no value",
      'keyport: unexpected argument "stray"',
      "keyport: missing --spec",
      "keyport: missing --upstream",
      'keyport: --timeout must be a whole number of milliseconds, got "fast"',
      "keyport: --status must be one of active, beta, deprecated",
      "keyport: --max-body must be at least 0",
    ]);
    expect(add.stderr).toContain("usage: keyport");
    expect(add.stderr).toContain("product add --id ID --spec FILE|URL --upstream URL");

    const update = await cli(["product", "update", "--no-activate", "--validate", "--no-validate", "--activate-version", "0", "--sandbox", "nowhere"]);
    expect(update.code).toBe(2);
    expect(update.stderr.split("\n\n")[0]!.split("\n")).toEqual([
      "keyport: missing --id",
      "keyport: --no-activate needs --spec (the version it uploads is not made active)",
      "keyport: --validate and --no-validate cannot be used together",
      'keyport: --activate-version must be a version number (1, 2, …), got "0"',
      "keyport: --sandbox must be an http or https URL",
    ]);

    const nothing = await cli(["product", "update", "--id", "tracking"]);
    expect(nothing.code).toBe(2);
    expect(nothing.stderr.split("\n")[0]).toBe("keyport: nothing to change: give --spec, --activate-version, --rotate-secret or a setting (--name, --upstream, …)");
  }, 3 * PER_PROCESS_MS);
});

for (const backend of backends.filter((b) => b.name === "service")) {
  describe(`keyport product (${backend.name})`, () => {
    it("reaches a running instance sharing its Postgres and Redis: registered, rotated and removed without a restart", async () => {
      const first = await startHarness(backend);
      // The CLI has no Redis prefix of its own: a second instance on the real one hears it.
      const instance = await startHarness(backend, { share: { ...first, redisPrefix: "keyport:" } });
      try {
        const specs = specFiles();
        const env = { DATABASE_URL: first.databaseUrl!, REDIS_URL: backend.redisUrl! };
        const run = (...args: string[]) => cli(args, env);
        expect(instance.deps.products.get("tracking")).toBeUndefined();

        const added = await run("product", "add", "--id", "tracking", "--spec", specs.v1, "--upstream", "http://127.0.0.1:9");
        expect(added.code, added.stderr).toBe(0);
        // The pub/sub message (or the epoch the instance polls every 2 s) reloads it: no poll by hand here.
        for (let i = 0; i < 100 && !instance.deps.products.get("tracking"); i++) await Bun.sleep(50);
        expect(instance.deps.products.get("tracking")).toMatchObject({ version: 1, secret: added.stdout.trim(), upstreamUrl: "http://127.0.0.1:9" });

        const rotated = await run("product", "update", "--id", "tracking", "--rotate-secret");
        expect(rotated.code, rotated.stderr).toBe(0);
        await instance.deps.products.poll();
        for (let i = 0; i < 100 && instance.deps.products.get("tracking")?.secret !== rotated.stdout.trim(); i++) await Bun.sleep(50);
        expect(instance.deps.products.get("tracking")?.secret).toBe(rotated.stdout.trim());

        const removed = await run("product", "remove", "--id", "tracking");
        expect(removed.code, removed.stderr).toBe(0);
        await instance.deps.products.poll();
        for (let i = 0; i < 100 && instance.deps.products.get("tracking"); i++) await Bun.sleep(50);
        expect(instance.deps.products.get("tracking")).toBeUndefined();
      } finally {
        await instance.close();
        await first.close();
      }
    }, 5 * PER_PROCESS_MS);
  });
}
