import { describe, expect, it } from "bun:test";
import { analyzeEmail, osaDistance } from "../../src/data-api/email.ts";
import { seeded } from "../support/prng.ts";
import { emailAnalysisSchema } from "../../src/data-api/model.ts";

const local64 = "l".repeat(64);
// 64 + 1 + 189 = 254 octets, the RFC 5321 limit for a path without its angle brackets.
const domain189 = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(57)}.com`;

describe("analyzeEmail", () => {
  describe("syntax", () => {
    it.each([
      "simple@example.com",
      "very.common@example.com",
      "user+tag@sub.example.co.uk",
      "o'brien@example.ie",
      "a!#$%&'*+/=?^_`{|}~-b@example.com",
      "1@2.io",
      "user@xn--80ak6aa92e.xn--p1ai",
      `${local64}@example.com`,
      `${local64}@${domain189}`,
      `x@${"d".repeat(63)}.com`,
    ])("accepts %p", (address) => {
      const result = analyzeEmail(address);
      expect(result).toMatchObject({ valid: true, normalized: address.toLowerCase() });
      expect(emailAnalysisSchema.parse(result)).toEqual(result);
    });

    it.each([
      "",
      "   ",
      "plainaddress",
      "@example.com",
      "user@",
      "user@@example.com",
      "a@b@example.com",
      ".user@example.com",
      "user.@example.com",
      "us..er@example.com",
      "user@example",
      "user@-example.com",
      "user@example-.com",
      "user@example..com",
      "user@.example.com",
      "user@example.com.",
      "user@example.c",
      "user@example.123",
      "user@exa_mple.com",
      '"quoted"@example.com',
      "user name@example.com",
      "user@[192.168.0.1]",
      "usér@example.com",
      "user@exämple.com",
      "\u212Aelvin@example.com",
      "kelvin@example.\u212Aom",
      `${local64}l@example.com`,
      `${local64}@${domain189}m`,
      `x@${"d".repeat(64)}.com`,
    ])("rejects %p with every derived field empty", (address) => {
      expect(analyzeEmail(address)).toEqual({
        input: address,
        valid: false,
        normalized: null,
        local: null,
        domain: null,
        disposable: false,
        freeProvider: false,
        role: false,
        suggestion: null,
      });
    });

    it("never throws, whatever the input", () => {
      for (const input of ["@", "@@", "a@b", "\u0000@x.com", "x".repeat(10_000), "a@" + "b.".repeat(500) + "com"]) {
        expect(analyzeEmail(input).valid).toBe(false);
      }
    });
  });

  describe("normalization", () => {
    it("trims and lower-cases the whole address and keeps the input as given", () => {
      expect(analyzeEmail("  John.Doe+News@Example.COM \n")).toMatchObject({
        input: "  John.Doe+News@Example.COM \n",
        valid: true,
        normalized: "john.doe+news@example.com",
        local: "john.doe+news",
        domain: "example.com",
      });
    });

    it("keeps dots and +tags of gmail addresses", () => {
      expect(analyzeEmail("J.Doe+x@GMail.com").normalized).toBe("j.doe+x@gmail.com");
    });
  });

  describe("disposable domains", () => {
    it("flags a listed domain", () => {
      expect(analyzeEmail("someone@mailinator.com")).toMatchObject({ valid: true, disposable: true, freeProvider: false });
    });

    it("flags a subdomain of a listed domain", () => {
      expect(analyzeEmail("someone@eu.inbox.mailinator.com").disposable).toBe(true);
    });

    it("does not flag ordinary or free-provider domains", () => {
      for (const address of ["a@example.com", "a@gmail.com", "a@outlook.com", "a@mailinator.com.example.org"]) {
        expect(analyzeEmail(address)).toMatchObject({ input: address, disposable: false });
      }
    });
  });

  describe("free providers", () => {
    it.each(["gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.jp", "yahoo.com.br", "hotmail.fr", "outlook.com", "icloud.com", "proton.me", "protonmail.com", "aol.com", "gmx.de", "gmx.net", "yandex.ru", "mail.ru", "zoho.com"])(
      "flags %p",
      (domain) => {
        expect(analyzeEmail(`someone@${domain}`)).toMatchObject({ domain, freeProvider: true });
      },
    );

    it.each(["example.com", "acme.io", "yahoo.example.org", "mail.gmail.com.example.net"])("does not flag %p", (domain) => {
      expect(analyzeEmail(`someone@${domain}`)).toMatchObject({ domain, freeProvider: false });
    });
  });

  describe("role accounts", () => {
    it.each(["admin", "info", "support", "sales", "contact", "noreply", "no-reply", "postmaster", "webmaster", "abuse", "billing", "hello", "root", "Support+tickets"])(
      "flags %p",
      (local) => {
        expect(analyzeEmail(`${local}@example.com`)).toMatchObject({ valid: true, role: true });
      },
    );

    it.each(["jane", "john.smith", "admins-are-people", "salesforce"])("does not flag %p", (local) => {
      expect(analyzeEmail(`${local}@example.com`)).toMatchObject({ valid: true, role: false });
    });
  });

  describe("typo suggestions", () => {
    it.each([
      ["user@gmial.com", "user@gmail.com"],
      ["user@hotmial.com", "user@hotmail.com"],
      ["user@yaho.com", "user@yahoo.com"],
      ["user@gmal.com", "user@gmail.com"],
      ["user@outlok.com", "user@outlook.com"],
      ["user@gmail.con", "user@gmail.com"],
      ["user@gmail.co", "user@gmail.com"],
      ["user@gmial.con", "user@gmail.com"],
      ["user@hotmali.co", "user@hotmail.com"],
      ["user@icluod.com", "user@icloud.com"],
      ["user@gmx.con", "user@gmx.com"],
      ["User@Example.CMO", "user@example.com"],
      ["user@example.ogr", "user@example.org"],
    ])("suggests %p → %p", (address, suggestion) => {
      expect(analyzeEmail(address)).toMatchObject({ valid: true, suggestion });
    });

    it.each(["user@gmail.com", "user@yahoo.co.uk", "user@hotmail.de", "user@example.org", "user@example.com", "user@gm.com", "user@aim.com", "user@mail.com", "user@email.com", "user@ymail.com", "user@example.co", "user@company.cm", "user@example.constructor"])(
      "suggests nothing for %p",
      (address) => {
        expect(analyzeEmail(address)).toMatchObject({ valid: true, suggestion: null });
      },
    );

    it("counts an adjacent transposition as one edit", () => {
      expect(osaDistance("gmial", "gmail")).toBe(1);
      expect(osaDistance("hotmial.com", "hotmail.com")).toBe(1);
      expect(osaDistance("kitten", "sitting")).toBe(3);
      expect(osaDistance("", "abc")).toBe(3);
      expect(osaDistance("example.org", "gmail.com", 3)).toBe(3);
    });

    it("agrees with the textbook definition on random strings, whatever their lengths in turn", () => {
      // The full table, no early stop, no reuse: the definition osaDistance optimizes.
      const reference = (a: string, b: string): number => {
        const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
        for (let i = 1; i <= a.length; i++) {
          for (let j = 1; j <= b.length; j++) {
            const cost = a[i - 1] === b[j - 1] ? 0 : 1;
            d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
            if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
          }
        }
        return d[a.length]![b.length]!;
      };
      const random = seeded(20261127);
      // A small alphabet makes matches and transpositions common; lengths up to 80 make the
      // reused rows grow, and shorter strings after longer ones read rows left by earlier calls.
      const word = () => Array.from({ length: Math.floor(random() ** 2 * 80) }, () => "abc.é"[Math.floor(random() * 5)]).join("");
      for (let n = 0; n < 2_000; n++) {
        const a = word();
        const b = word();
        const limit = n % 3 === 0 ? Infinity : 1 + Math.floor(random() * 4);
        expect([a, b, limit, osaDistance(a, b, limit)]).toEqual([a, b, limit, Math.min(reference(a, b), limit)]);
      }
    });
  });
});
