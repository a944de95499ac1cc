import { afterAll, beforeAll, describe, expect, it } from "bun:test";
import { eq } from "drizzle-orm";
import { announceAccountKeys } from "../../src/accounts/service.ts";
import { accounts, plans } from "../../src/db/schema.ts";
import { ManualClock } from "../../src/ops/clock.ts";
import { backends } from "../support/backends.ts";
import { bearer, newAccount, newKey, problem } from "../support/fixtures.ts";
import { startHarness, type Harness } from "../support/harness.ts";

/**
 * A strict parser of the one Structured Field shape the RateLimit fields use (RFC 8941
 * §4.2.1, §4.2.3): a List whose members are Items with parameters. Inner lists are not
 * allowed there, so they fail like any other syntax error; so do trailing commas, upper-case
 * keys, unterminated strings and anything left over.
 */
type BareItem = number | string | boolean | { token: string } | { bytes: string };
interface Member {
  value: BareItem;
  params: Map<string, BareItem>;
}

function parseList(input: string): Member[] {
  let i = 0;
  const fail = (why: string): never => {
    throw new Error(`not a Structured Field List (${why} at ${i}): ${JSON.stringify(input)}`);
  };
  const skipSP = () => {
    while (input[i] === " ") i++;
  };
  const skipOWS = () => {
    while (input[i] === " " || input[i] === "\t") i++;
  };
  const bareItem = (): BareItem => {
    const c = input[i];
    if (c === undefined) return fail("an item expected");
    if (c === "-" || (c >= "0" && c <= "9")) {
      const m = /^-?(\d{1,15})(\.\d{1,3})?/.exec(input.slice(i));
      if (!m) return fail("a number expected");
      if (m[2] !== undefined && m[1]!.length > 12) return fail("a decimal too long");
      if (m[2] === undefined && /^\./.test(input.slice(i + m[0].length))) return fail("a decimal with too many digits");
      if (/^\d/.test(input.slice(i + m[0].length))) return fail("an integer with more than 15 digits");
      i += m[0].length;
      return Number(m[0]);
    }
    if (c === '"') {
      i++;
      let out = "";
      for (;;) {
        const ch = input[i++];
        if (ch === undefined) return fail("an unterminated string");
        if (ch === "\\") {
          const next = input[i++];
          if (next !== '"' && next !== "\\") return fail("a bad escape");
          out += next;
        } else if (ch === '"') return out;
        else if (ch < " " || ch > "~") return fail("a character outside a string's range");
        else out += ch;
      }
    }
    if (c === "*" || /[A-Za-z]/.test(c)) {
      const m = /^[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*/.exec(input.slice(i))!;
      i += m[0].length;
      return { token: m[0] };
    }
    if (c === ":") {
      const m = /^:([A-Za-z0-9+/=]*):/.exec(input.slice(i));
      if (!m) return fail("a bad byte sequence");
      i += m[0].length;
      return { bytes: m[1]! };
    }
    if (c === "?") {
      const b = input[i + 1];
      if (b !== "0" && b !== "1") return fail("a bad boolean");
      i += 2;
      return b === "1";
    }
    return fail(`an unexpected ${JSON.stringify(c)}`);
  };
  const parameters = (): Map<string, BareItem> => {
    const params = new Map<string, BareItem>();
    while (input[i] === ";") {
      i++;
      skipSP();
      const m = /^[a-z*][a-z0-9_\-.*]*/.exec(input.slice(i));
      if (!m) return fail("a parameter key expected");
      i += m[0].length;
      let value: BareItem = true;
      if (input[i] === "=") {
        i++;
        value = bareItem();
      }
      params.set(m[0], value);
    }
    return params;
  };
  const members: Member[] = [];
  skipSP();
  while (i < input.length) {
    if (input[i] === "(") fail("an inner list, which these fields do not allow");
    const value = bareItem();
    members.push({ value, params: parameters() });
    skipOWS();
    if (i >= input.length) break;
    if (input[i] !== ",") fail('"," expected');
    i++;
    skipOWS();
    if (i >= input.length) fail("a trailing comma");
  }
  return members;
}

/** The policies of an answer's two fields, by name, checked for the shapes the draft gives them. */
function policies(res: Response): { name: string; q: number; w: number; r: number; t: number }[] {
  const policy = parseList(res.headers.get("ratelimit-policy") ?? "");
  const state = parseList(res.headers.get("ratelimit") ?? "");
  expect(policy.length).toBeGreaterThan(0);
  // The same policies in the same order, each a String with Integer parameters.
  expect(state.map((m) => m.value)).toEqual(policy.map((m) => m.value));
  return policy.map((p, n) => {
    const s = state[n]!;
    expect(typeof p.value).toBe("string");
    expect([...p.params.keys()]).toEqual(["q", "w"]);
    expect([...s.params.keys()]).toEqual(["r", "t"]);
    const int = (v: BareItem | undefined) => {
      expect(Number.isInteger(v)).toBe(true);
      expect(v as number).toBeGreaterThanOrEqual(0);
      return v as number;
    };
    return { name: p.value as string, q: int(p.params.get("q")), w: int(p.params.get("w")), r: int(s.params.get("r")), t: int(s.params.get("t")) };
  });
}

/** X-RateLimit-* as numbers. */
function legacy(res: Response): { limit: number; remaining: number; reset: number } {
  return { limit: Number(res.headers.get("x-ratelimit-limit")), remaining: Number(res.headers.get("x-ratelimit-remaining")), reset: Number(res.headers.get("x-ratelimit-reset")) };
}

async function onPlan(h: Harness, accountId: string, planId: string): Promise<void> {
  await h.deps.db.update(accounts).set({ planId }).where(eq(accounts.id, accountId));
  await announceAccountKeys(h.deps, accountId);
}

describe("the Structured Field List parser of these tests", () => {
  it("reads a list of strings with parameters, and refuses what RFC 8941 refuses", () => {
    expect(parseList('"default";q=60;w=60, "plan";q=2;w=1')).toEqual([
      { value: "default", params: new Map([["q", 60], ["w", 60]]) },
      { value: "plan", params: new Map([["q", 2], ["w", 1]]) },
    ]);
    expect(parseList('  "a";x;y=?0,\t"b\\"c";z=tok/en')).toEqual([
      { value: "a", params: new Map<string, BareItem>([["x", true], ["y", false]]) },
      { value: 'b"c', params: new Map<string, BareItem>([["z", { token: "tok/en" }]]) },
    ]);
    // SP after ";" is allowed (parameters = *( ";" *SP parameter )).
    expect(parseList('"a"; q=1')[0]!.params.get("q")).toBe(1);
    for (const bad of ['"a";q=1,', '"a";Q=1', '"a', '"a";q=1 "b"', '("a" "b")', '"a";q=1234567890123456', '"a";q=1.2345', '"a",,"b"', '"a";q=\\1', '"a";q=1;']) {
      expect(() => parseList(bad)).toThrow();
    }
  });
});

const EMAIL = "/v1/email/someone@example.com";
const SECONDS_IN_JANUARY = 31 * 86_400;

for (const backend of backends) {
  describe(`RateLimit headers with several policies [${backend.name}]`, () => {
    // 12:00 UTC on 15 January 2026, moved by hand.
    const clock = new ManualClock();
    let h: Harness;
    beforeAll(async () => {
      h = await startHarness(backend, { clock });
      // A paid plan with few included calls, so its month is soon used up (test data only).
      await h.deps.db.insert(plans).values({ id: "tiny-paid", name: "Tiny paid", description: "", priceCents: 100, includedCalls: 3, overageCentsPer1000: 100, requestsPerSecond: 1000, position: 99 });
    });
    afterAll(() => h.close());
    const monthEnd = Date.UTC(2026, 1, 1);

    it("names the key's limit, the plan's and the month's calls on a live key's answer; X-RateLimit-* the nearest to exhaustion", async () => {
      clock.advance(1000);
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { rateLimit: 60 });
      const res = await h.req(EMAIL, { headers: bearer(secret) });
      expect(res.status).toBe(200);
      expect(policies(res)).toEqual([
        { name: "default", q: 60, w: 60, r: 59, t: 1 },
        { name: "plan", q: 2, w: 1, r: 1, t: 1 },
        { name: "month", q: 500, w: SECONDS_IN_JANUARY, r: 499, t: Math.ceil((monthEnd - clock.now()) / 1000) },
      ]);
      // 1 of 2 left a second is nearer exhaustion than 59 of 60 a minute or 499 of 500 a month.
      expect(legacy(res)).toEqual({ limit: 2, remaining: 1, reset: Math.ceil((clock.now() + 500) / 1000) });
    });

    it("reports the key's limit in X-RateLimit-* when it is the nearest, and on a tie", async () => {
      clock.advance(1000);
      const account = await newAccount(h);
      await onPlan(h, account.id, "enterprise");
      const small = await newKey(h, account.id, { rateLimit: 3 });
      const res = await h.req(EMAIL, { headers: bearer(small.secret) });
      expect(policies(res).map((p) => [p.name, p.q, p.r])).toEqual([
        ["default", 3, 2],
        ["plan", 100, 99],
        ["month", 100_000, 99_999],
      ]);
      expect(legacy(res)).toEqual({ limit: 3, remaining: 2, reset: Math.ceil((clock.now() + 20_000) / 1000) });

      // 1 of 2 a minute and 1 of 2 a second: the same share left, and the key's policy is reported.
      const free = await newAccount(h);
      const tied = await newKey(h, free.id, { rateLimit: 2 });
      const tie = await h.req(EMAIL, { headers: bearer(tied.secret) });
      expect(policies(tie).map((p) => [p.name, p.q, p.r])).toEqual([
        ["default", 2, 1],
        ["plan", 2, 1],
        ["month", 500, 499],
      ]);
      expect(legacy(tie)).toEqual({ limit: 2, remaining: 1, reset: Math.ceil((clock.now() + 30_000) / 1000) });
    });

    it("reports the free plan's month when it is the nearest, with the month's end as its reset", async () => {
      clock.advance(1000);
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { rateLimit: 1000 });
      for (let i = 0; i < 5; i++) {
        clock.advance(1000);
        const res = await h.req("/v1/batch", { method: "POST", headers: bearer(secret), json: { items: Array.from({ length: i < 4 ? 100 : 50 }, () => ({ type: "email", value: "a@example.com" })) } });
        expect(res.status).toBe(200);
      }
      clock.advance(1000);
      const res = await h.req(EMAIL, { headers: bearer(secret) });
      expect(policies(res).find((p) => p.name === "month")).toMatchObject({ q: 500, r: 49 });
      expect(legacy(res)).toEqual({ limit: 500, remaining: 49, reset: monthEnd / 1000 });
    });

    it("lists a paid plan's month with nothing left but never reports it as nearest: it does not refuse", async () => {
      clock.advance(1000);
      const account = await newAccount(h);
      await onPlan(h, account.id, "tiny-paid");
      const { secret } = await newKey(h, account.id, { rateLimit: 1000 });
      let last: Response | undefined;
      for (let i = 0; i < 5; i++) {
        last = await h.req(EMAIL, { headers: bearer(secret) });
        expect(last.status).toBe(200);
      }
      expect(policies(last!).map((p) => [p.name, p.q, p.r])).toEqual([
        ["default", 1000, 995],
        ["plan", 1000, 995],
        ["month", 3, 0],
      ]);
      expect(legacy(last!).limit).toBe(1000);
    });

    it("names the plan's limit with nothing left on its 429, with Retry-After", async () => {
      clock.advance(1000);
      const account = await newAccount(h);
      const { secret } = await newKey(h, account.id, { rateLimit: 1000 });
      await h.req(EMAIL, { headers: bearer(secret) });
      await h.req(EMAIL, { headers: bearer(secret) });
      const refused = await h.req(EMAIL, { headers: bearer(secret) });
      expect(refused.status).toBe(429);
      expect((await problem(refused)).code).toBe("rate_limited");
      // The refused request spent a cell of the key's limit (decided first); the month is not
      // reached by a refused request: the policies decided are the ones named.
      expect(policies(refused).map((p) => [p.name, p.r])).toEqual([
        ["default", 997],
        ["plan", 0],
      ]);
      expect(legacy(refused)).toMatchObject({ limit: 2, remaining: 0 });
      expect(refused.headers.get("retry-after")).toBe("1");
    });

    it("names no month on a test key's answer, and only the key's limit on the management API and on a 403", async () => {
      clock.advance(1000);
      const account = await newAccount(h);
      const test = await newKey(h, account.id, { environment: "test" });
      expect(policies(await h.req(EMAIL, { headers: bearer(test.secret) })).map((p) => p.name)).toEqual(["default", "plan"]);

      const admin = await newKey(h, account.id, { scopes: ["keys:manage"] });
      const api = await h.req("/api/keys", { headers: bearer(admin.secret) });
      expect(api.status).toBe(200);
      expect(policies(api)).toEqual([{ name: "default", q: 60, w: 60, r: 59, t: 1 }]);
      const refused = await h.req(EMAIL, { headers: bearer(admin.secret) });
      expect(refused.status).toBe(403);
      expect(policies(refused).map((p) => [p.name, p.r])).toEqual([["default", 58]]);
      expect(legacy(refused)).toMatchObject({ limit: 60, remaining: 58 });
    });
  });
}
