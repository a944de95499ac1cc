import { afterAll, describe, expect, it } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openPglite } from "../../src/db/client.ts";
import { keyUsage } from "../../src/db/schema.ts";
import { projectRoot } from "../../src/embedded.ts";
import { createAccount } from "../../src/accounts/service.ts";
import { cliActor } from "../../src/audit/service.ts";
import { createKey } from "../../src/keys/service.ts";
import { createKeySchema } from "../../src/keys/model.ts";
import { parseInput } from "../../src/errors.ts";
import { buildDeps } from "../../src/runtime.ts";
import { testConfig, UNMETERED_PLANS } from "../support/backends.ts";
import { seedDataDir } from "../support/embedded.ts";
import { TEST_PASSWORDS } from "../support/harness.ts";

const main = join(projectRoot, "src", "main.ts");
const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A DATA_DIR with an account and a key, made in this process (two CLI processes took twice as long). */
async function dataDirWithKey(dataDir: string): Promise<string> {
  await seedDataDir(dataDir);
  const deps = await buildDeps(testConfig({ DATA_DIR: dataDir }), { passwords: TEST_PASSWORDS });
  try {
    const account = await createAccount(deps, { email: "load@example.com", password: "long enough password" }, cliActor);
    return (await createKey(deps, account.id, parseInput(createKeySchema, { name: "load", scopes: ["email:read"], rateLimit: 100_000 }, "key"), cliActor)).secret;
  } finally {
    await deps.close();
  }
}

/** A server process with one key, ready for load. */
async function serverWithKey(flushMs: number) {
  const dataDir = mkdtempSync(join(tmpdir(), "kp-fault-"));
  dirs.push(dataDir);
  const secret = await dataDirWithKey(dataDir);
  const port = 40000 + Math.floor(Math.random() * 20000);
  const proc = Bun.spawn(["bun", main, "serve"], {
    env: { PATH: process.env.PATH ?? "", DATA_DIR: dataDir, PORT: String(port), LOG_LEVEL: process.env.KP_DEBUG ? "debug" : "warn", USAGE_FLUSH_MS: String(flushMs), PLANS_FILE: UNMETERED_PLANS },
    stdout: "pipe",
    stderr: "pipe",
  });
  for (let i = 0; i < 200; i++) {
    if (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)) break;
    await Bun.sleep(50);
  }
  return { dataDir, secret, port, proc };
}

/** Load from `workers` loops until `stop()`; records when each 200 was answered. */
function load(port: number, secret: string, workers = 8) {
  const answeredAt: number[] = [];
  let running = true;
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      try {
        const res = await fetch(`http://127.0.0.1:${port}/v1/email/a@example.com`, { headers: { authorization: `Bearer ${secret}` } });
        await res.arrayBuffer();
        if (res.status === 200) answeredAt.push(Date.now());
      } catch {
        // Refused after the listener closed: not answered, not counted.
        await Bun.sleep(5);
      }
    }
  });
  return {
    answeredAt,
    async stop() {
      running = false;
      await Promise.all(loops);
    },
  };
}

async function counted(dataDir: string): Promise<number> {
  const db = await openPglite(dataDir);
  try {
    return (await db.db.select().from(keyUsage)).reduce((n, r) => n + r.successes, 0);
  } finally {
    await db.close();
  }
}

// Each test starts a server process (about 1.5 s with its database), loads it for a second
// or two, and opens its database afterwards: 3-5 s on 2 cores, 6-10 s under load.
const SERVER_TEST_MS = 30_000;

describe("shutdown under load", () => {
  it("SIGTERM mid-load: in-flight requests finish, the last flush runs, every 200 is counted", async () => {
    const s = await serverWithKey(60_000);
    const l = load(s.port, s.secret);
    while (l.answeredAt.length < 1500) await Bun.sleep(20);
    s.proc.kill("SIGTERM");
    expect(await s.proc.exited).toBe(0);
    await l.stop();
    expect(await counted(s.dataDir)).toBe(l.answeredAt.length);
  }, SERVER_TEST_MS);

  it("kill -9 loses at most one flush interval of counts", async () => {
    // Short, so that several intervals pass in a second; the test needs real flushes.
    const flushMs = 250;
    const s = await serverWithKey(flushMs);
    const l = load(s.port, s.secret);
    // Several flush intervals of steady load, then the kill lands between two flushes.
    await Bun.sleep(4.5 * flushMs);
    const killedAt = Date.now();
    s.proc.kill("SIGKILL");
    await s.proc.exited;
    if (process.env.KP_DEBUG) console.log((await new Response(s.proc.stdout).text()).split("\n").filter((l) => !l.includes('"request"')).slice(0, 20).join("\n"));
    await l.stop();
    const answered = l.answeredAt.length;
    const lost = answered - (await counted(s.dataDir));
    // Only what was answered since the last completed flush can be lost: at most one
    // interval (plus the flush's own duration) before the kill.
    const lastInterval = l.answeredAt.filter((t) => t >= killedAt - flushMs - 250).length;
    console.log(`kill -9: ${answered} answered, ${lost} lost (${((lost / answered) * 100).toFixed(1)} %), ${lastInterval} answered in the last interval`);
    expect(lost).toBeGreaterThanOrEqual(0);
    expect(lost).toBeLessThanOrEqual(lastInterval);
  }, SERVER_TEST_MS);
});

const GRACE_WARNING = "connections still open after the grace period";

/** A raw connection that sends a request's head and part of its body, then nothing more. */
async function stalledUpload(port: number, secret: string): Promise<net.Socket> {
  const socket = net.connect(port, "127.0.0.1");
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  socket.on("error", () => {});
  socket.write(`POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${secret}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"items":[`);
  return socket;
}

describe("shutdown with connections that do not finish", () => {
  it("a body refused with 413 closes its connection, so SIGTERM waits for nothing", async () => {
    const s = await serverWithKey(60_000);
    for (let i = 0; i < 20; i++) {
      const ok = await fetch(`http://127.0.0.1:${s.port}/v1/email/a@example.com`, { headers: { authorization: `Bearer ${s.secret}` } });
      expect(ok.status).toBe(200);
    }
    // Answered from the declared length while the client is still sending: the body stays unread.
    const huge = await fetch(`http://127.0.0.1:${s.port}/v1/batch`, {
      method: "POST",
      headers: { authorization: `Bearer ${s.secret}`, "content-type": "application/json" },
      body: JSON.stringify({ items: [{ type: "ip", value: "x".repeat(2 * 1024 * 1024) }] }),
    });
    expect(huge.status).toBe(413);
    expect(huge.headers.get("connection")).toBe("close");
    s.proc.kill("SIGTERM");
    expect(await s.proc.exited).toBe(0);
    expect(await new Response(s.proc.stdout).text()).not.toContain(GRACE_WARNING);
    expect(await counted(s.dataDir)).toBe(20);
  }, SERVER_TEST_MS);

  it("a stalled upload holds SIGTERM only for the grace: then it is closed, the flush runs and the process exits 0", async () => {
    const s = await serverWithKey(60_000);
    for (let i = 0; i < 20; i++) {
      const ok = await fetch(`http://127.0.0.1:${s.port}/v1/email/a@example.com`, { headers: { authorization: `Bearer ${s.secret}` } });
      expect(ok.status).toBe(200);
    }
    const socket = await stalledUpload(s.port, s.secret);
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    // Let the server read the head before the signal.
    await Bun.sleep(200);
    s.proc.kill("SIGTERM");
    expect(await s.proc.exited).toBe(0);
    await closed;
    expect(await new Response(s.proc.stdout).text()).toContain(GRACE_WARNING);
    expect(await counted(s.dataDir)).toBe(20);
  }, 3 * SERVER_TEST_MS);
});
