import { describe, expect, it } from "bun:test";
import { extractKey } from "../../src/gateway/chain.ts";
import { generateKey } from "../../src/keys/format.ts";
import { seeded } from "../support/prng.ts";

/** What the chain read before its fast path: the regular expression alone. */
function reference(headers: Headers): string | null {
  const auth = headers.get("authorization");
  if (auth !== null) {
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(auth);
    return m ? m[1]! : "";
  }
  return headers.get("x-api-key");
}

describe("reading the key from the request's headers", () => {
  const key = generateKey("kp", "live");
  const cases: [string, Record<string, string>][] = [
    ["the usual form", { authorization: `Bearer ${key}` }],
    ["lower case", { authorization: `bearer ${key}` }],
    ["two spaces", { authorization: `Bearer  ${key}` }],
    ["a trailing space", { authorization: `Bearer ${key} ` }],
    ["two tokens", { authorization: `Bearer ${key} ${key}` }],
    ["a tab inside", { authorization: `Bearer ${key.slice(0, 9)}\t${key.slice(9)}` }],
    ["a tab after Bearer", { authorization: `Bearer\t${key}` }],
    ["no space", { authorization: `Bearer${key}` }],
    ["an empty bearer", { authorization: "Bearer " }],
    ["Basic", { authorization: `Basic ${key}` }],
    ["a non-ASCII token", { authorization: "Bearer kp_live_é" }],
    ["a no-break space inside", { authorization: "Bearer kp_live\u00a0x" }],
    ["X-API-Key", { "x-api-key": key }],
    ["both headers", { authorization: `Bearer ${key}`, "x-api-key": "other" }],
    ["neither", {}],
  ];
  for (const [name, headers] of cases) {
    it(`reads ${name} as the regular expression does`, () => {
      const h = new Headers(headers);
      expect(extractKey(h)).toBe(reference(h));
    });
  }

  it("reads the usual form as the key itself", () => {
    expect(extractKey(new Headers({ authorization: `Bearer ${key}` }))).toBe(key);
  });

  it("agrees with the regular expression on 5,000 random headers", () => {
    const random = seeded(22);
    const alphabet = ["a", "Z", "0", "_", " ", "\t", "é", "\u00a0", "\u3000", "~", "!", "Bearer", "bearer ", "Bearer "];
    for (let i = 0; i < 5000; i++) {
      let value = random() < 0.6 ? "Bearer " : "";
      const n = Math.floor(random() * 12);
      for (let j = 0; j < n; j++) value += alphabet[Math.floor(random() * alphabet.length)]!;
      let h: Headers;
      try {
        h = new Headers({ authorization: value });
      } catch {
        continue;
      }
      expect(extractKey(h)).toBe(reference(h));
    }
  });
});
