import { beforeAll, describe, expect, it } from "bun:test";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { analyzeIp, ipTableSize, loadIpCountries } from "../../src/data-api/ip.ts";
import { ipAnalysisSchema } from "../../src/data-api/model.ts";
import { seeded } from "../support/prng.ts";

/** The package's numeric CSV, read independently of src/ (which reads the text form for IPv6). */
function numericRows(file: string): { start: bigint; end: bigint; country: string }[] {
  const path = Bun.resolveSync(`@ip-location-db/asn-country/${file}`, import.meta.dir);
  return readFileSync(path, "utf8")
    .trim()
    .split("\n")
    .map((line) => {
      const [start, end, country] = line.split(",");
      return { start: BigInt(start!), end: BigInt(end!), country: country! };
    });
}

/**
 * The country of each address by one linear pass over the file's rows (sorted, disjoint)
 * with the addresses in ascending order: the same answer as scanning the rows for each
 * address, and independent of the range table under test. (A scan per address was 2.5 s.)
 */
function linearCountries(rows: { start: bigint; end: bigint; country: string }[], ips: bigint[]): (string | null)[] {
  const order = ips.map((_, i) => i).sort((a, b) => (ips[a]! < ips[b]! ? -1 : ips[a]! > ips[b]! ? 1 : 0));
  const countries: (string | null)[] = new Array(ips.length).fill(null);
  let r = 0;
  for (const i of order) {
    const ip = ips[i]!;
    while (r < rows.length && rows[r]!.end < ip) r++;
    if (r < rows.length && rows[r]!.start <= ip) countries[i] = rows[r]!.country;
  }
  return countries;
}

const v4Text = (n: bigint) => [24n, 16n, 8n, 0n].map((s) => (n >> s) & 255n).join(".");
const v6Text = (n: bigint) => Array.from({ length: 8 }, (_, i) => ((n >> BigInt(112 - 16 * i)) & 0xffffn).toString(16)).join(":");

describe("analyzeIp", () => {
  describe("parsing and canonical form", () => {
    it.each([
      ["8.8.8.8", "8.8.8.8", 4],
      [" 192.0.2.1 ", "192.0.2.1", 4],
      ["0.0.0.0", "0.0.0.0", 4],
      ["255.255.255.255", "255.255.255.255", 4],
      ["::", "::", 6],
      ["::1", "::1", 6],
      ["2001:DB8::1", "2001:db8::1", 6],
      ["2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1", 6],
      ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1", 6],
      ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1", 6],
      ["2001:db8::0:1", "2001:db8::1", 6],
      ["1:0:0:0:0:0:0:0", "1::", 6],
      ["fe80:0:0:0:0:0:0:1", "fe80::1", 6],
      ["::ffff:8.8.8.8", "::ffff:8.8.8.8", 6],
      ["::FFFF:0808:0808", "::ffff:8.8.8.8", 6],
      ["64:ff9b::192.0.2.33", "64:ff9b::c000:221", 6],
      ["1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304", 6],
    ])("reads %p as %p (IPv%p)", (input, ip, version) => {
      const result = analyzeIp(input);
      expect(result).toMatchObject({ ip, version });
      expect(ipAnalysisSchema.parse(result)).toEqual(result!);
    });

    it.each([
      "",
      "localhost",
      "1.2.3",
      "1.2.3.4.5",
      "1.2.3.4.",
      "256.1.1.1",
      "01.2.3.4",
      "1.2.3.04",
      "0x1.2.3.4",
      "1.2.3.4/24",
      "-1.2.3.4",
      "1:2:3:4:5:6:7:8:9",
      "1:2:3:4:5:6:7",
      "1::2::3",
      ":::",
      ":1::",
      "1:::2",
      "1:",
      ":1",
      "12345::",
      "g::1",
      "::ffff:1.2.3.256",
      "::ffff:01.2.3.4",
      "1:2:3:4:5:6:7:1.2.3.4",
      "1:2:3:4:5:6:7::8",
      "1.2.3.4::",
      "fe80::1%eth0",
      "[::1]",
    ])("answers null for %p", (input) => {
      expect(analyzeIp(input)).toBeNull();
    });

    it("accepts exactly the strings node:net accepts (zone ids aside)", () => {
      const rand = seeded(7);
      const alphabet = "0123456789abcdefABCDEF:.:.::";
      const tried: string[] = [];
      for (let i = 0; i < 20_000; i++) {
        let s = "";
        const length = 2 + Math.floor(rand() * 20);
        for (let j = 0; j < length; j++) s += alphabet[Math.floor(rand() * alphabet.length)];
        tried.push(s);
      }
      const disagreements = tried.filter((s) => (analyzeIp(s) !== null) !== (isIP(s) !== 0));
      expect(disagreements).toEqual([]);
      expect(tried.filter((s) => analyzeIp(s) !== null).length).toBeGreaterThan(100);
    });

    it("writes IPv6 as WHATWG URL does (RFC 5952 zero compression) for random addresses", () => {
      const rand = seeded(11);
      for (let i = 0; i < 3_000; i++) {
        // Zero groups are common so that runs of every length and position occur.
        const groups = Array.from({ length: 8 }, () => (rand() < 0.5 ? 0 : Math.floor(rand() * 0x10000)));
        if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0 && groups[5] === 0xffff) groups[5] = 1;
        const padded = groups.map((g) => g.toString(16).padStart(4, "0").toUpperCase()).join(":");
        const expected = new URL(`http://[${padded}]/`).hostname.slice(1, -1);
        expect({ padded, ip: analyzeIp(padded)?.ip }).toEqual({ padded, ip: expected });
        expect(analyzeIp(expected)?.ip).toBe(expected);
      }
    });
  });

  describe("range flags", () => {
    it.each([
      ["10.1.2.3", { private: true, loopback: false, reserved: true }],
      ["172.16.0.1", { private: true, loopback: false, reserved: true }],
      ["172.31.255.255", { private: true, loopback: false, reserved: true }],
      ["192.168.1.1", { private: true, loopback: false, reserved: true }],
      ["fd12:3456::1", { private: true, loopback: false, reserved: true }],
      ["127.0.0.1", { private: false, loopback: true, reserved: true }],
      ["127.255.0.9", { private: false, loopback: true, reserved: true }],
      ["::1", { private: false, loopback: true, reserved: true }],
      ["::ffff:10.0.0.1", { private: true, loopback: false, reserved: true }],
      ["::ffff:127.0.0.1", { private: false, loopback: true, reserved: true }],
    ])("marks %p private or loopback", (ip, flags) => {
      expect(analyzeIp(ip)).toMatchObject({ ...flags, country: null });
    });

    it.each([
      "0.0.0.0",
      "0.1.2.3",
      "100.64.0.1",
      "100.127.255.255",
      "169.254.169.254",
      "192.0.0.8",
      "192.0.2.55",
      "198.18.0.1",
      "198.19.255.255",
      "198.51.100.7",
      "203.0.113.9",
      "224.0.0.251",
      "239.255.255.250",
      "240.0.0.1",
      "255.255.255.255",
      "::",
      "fe80::1",
      "febf:ffff::1",
      "ff02::fb",
      "2001:db8::1",
      "2001:db8:ffff::1",
      "3fff::1",
      "64:ff9b::808:808",
      "100::1",
      "2001::1",
      "2001:2::1",
      "2002:c000:204::1",
      "4000::1",
      "fec0::1",
    ])("marks %p reserved, neither private nor loopback, with no country", (ip) => {
      expect(analyzeIp(ip)).toMatchObject({ private: false, loopback: false, reserved: true, country: null });
    });

    it.each(["8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.0", "172.15.255.255", "172.32.0.0", "198.17.255.255", "223.255.255.255", "2001:4860:4860::8888", "2606:4700:4700::1111", "::ffff:8.8.4.4"])(
      "marks public %p as none of them",
      (ip) => {
        expect(analyzeIp(ip)).toMatchObject({ private: false, loopback: false, reserved: false });
      },
    );
  });

  describe("country", () => {
    beforeAll(() => loadIpCountries());

    // Each checked against the rows of @ip-location-db/asn-country@2.3.2026061719.
    it.each([
      ["8.8.8.8", "US"],
      ["9.9.9.9", "US"],
      ["193.0.6.139", "NL"],
      ["202.12.29.205", "AU"],
      ["200.160.2.3", "BR"],
      ["133.242.0.3", "JP"],
      ["77.88.8.8", "RU"],
      ["::ffff:8.8.8.8", "US"],
      ["2001:4860:4860::8888", "US"],
      ["2606:4700:4700::1111", "US"],
      ["2001:67c:2e8:22::c100:68b", "NL"],
      ["2001:200:dff:fff1:216:3eff:feb1:44d7", "JP"],
      ["2a02:6b8::2:242", "RU"],
    ])("places %p in %p", (ip, country) => {
      expect(analyzeIp(ip)).toMatchObject({ reserved: false, country });
    });

    it("answers null for a global address no registry row covers", () => {
      expect(analyzeIp("2c0f:ffff:ffff::1")).toMatchObject({ reserved: false, country: null });
    });

    it("holds both tables and reports their sizes", () => {
      const size = ipTableSize();
      expect(size.v4).toBeGreaterThan(100_000);
      expect(size.v6).toBeGreaterThan(50_000);
    });

    it("agrees with a linear scan of the numeric IPv4 file on random addresses", () => {
      const rows = numericRows("asn-country-ipv4-num.csv");
      expect(rows.length).toBe(ipTableSize().v4);
      const rand = seeded(42);
      const samples = Array.from({ length: 3_000 }, (_, i) => {
        if (i % 2 === 0) return BigInt(Math.floor(rand() * 2 ** 32));
        // Half the samples fall inside a row, a third of those on its first or last address.
        const row = rows[Math.floor(rand() * rows.length)]!;
        const pick = rand();
        return pick < 0.17 ? row.start : pick < 0.34 ? row.end : row.start + BigInt(Math.floor(rand() * Number(row.end - row.start + 1n)));
      });
      const scanned = linearCountries(rows, samples);
      let found = 0;
      for (const [i, n] of samples.entries()) {
        const result = analyzeIp(v4Text(n))!;
        const expected = result.reserved ? null : scanned[i]!;
        if (expected !== null) found++;
        expect({ ip: result.ip, country: result.country }).toEqual({ ip: v4Text(n), country: expected });
      }
      expect(found).toBeGreaterThan(1_500);
    });

    it("agrees with a linear scan of the numeric IPv6 file on random addresses", () => {
      const rows = numericRows("asn-country-ipv6-num.csv");
      expect(rows.length).toBe(ipTableSize().v6);
      const rand = seeded(43);
      const random64 = () => (BigInt(Math.floor(rand() * 2 ** 32)) << 32n) | BigInt(Math.floor(rand() * 2 ** 32));
      const samples = Array.from({ length: 2_000 }, (_, i) => {
        // Anywhere in 2000::/3, where every allocated range lies.
        if (i % 2 === 0) return (1n << 125n) | (((random64() << 64n) | random64()) & ((1n << 125n) - 1n));
        const row = rows[Math.floor(rand() * rows.length)]!;
        const pick = rand();
        return pick < 0.17 ? row.start : pick < 0.34 ? row.end : row.start + ((((random64() << 64n) | random64()) % (row.end - row.start + 1n)));
      });
      const scanned = linearCountries(rows, samples);
      let found = 0;
      for (const [i, n] of samples.entries()) {
        const result = analyzeIp(v6Text(n))!;
        const expected = result.reserved ? null : scanned[i]!;
        if (expected !== null) found++;
        expect({ ip: v6Text(n), country: result.country }).toEqual({ ip: v6Text(n), country: expected });
      }
      expect(found).toBeGreaterThan(800);
    });
  });
});
