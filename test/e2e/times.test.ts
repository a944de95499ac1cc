import { describe, expect, it } from "bun:test";
import { Time, formatDate } from "../../views/components.tsx";
import { UsageChart } from "../../views/usage/chart.tsx";

// What a reader without JavaScript sees: times in readable UTC, labelled UTC. The journey
// (journey.test.ts) checks the same <time> rewritten into the browser's zone by app.js.

describe("times without JavaScript", () => {
  it("formatDate reads an instant in UTC, converting an offset", () => {
    expect(formatDate("2026-03-01T09:05:42.123Z")).toBe("2026-03-01 09:05 UTC");
    expect(formatDate("2026-03-01T11:05:00+02:00")).toBe("2026-03-01 09:05 UTC");
    expect(formatDate(null)).toBe("—");
    expect(formatDate(undefined)).toBe("—");
  });

  it("<Time> renders the instant in the attribute and readable UTC as its text", async () => {
    expect(String(await Time({ iso: "2026-03-01T11:05:00+02:00" }))).toBe('<time datetime="2026-03-01T09:05:00.000Z">2026-03-01 09:05 UTC</time>');
    expect(String(await Time({ iso: null }))).toBe("—");
  });

  it("<Time> never puts text that is not an instant into the attribute, and escapes it", async () => {
    const html = String(await Time({ iso: 'T"><script>alert(1)</script>' }));
    expect(html).not.toContain("<script>");
    expect(html).not.toContain("<time");
    expect(html).toContain("&lt;script&gt;");
  });
});

describe("the usage chart", () => {
  it("names both series in an HTML legend, styled by classes (the CSP allows no inline style)", async () => {
    const html = String(await UsageChart({ id: "t", title: 'A <b>"chart"</b>', days: [{ day: "2026-03-01", successes: 3, errors: 1 }] }));
    expect(html).toContain('<span class="swatch swatch-ok" aria-hidden="true"></span>Successes');
    expect(html).toContain('<span class="swatch swatch-err" aria-hidden="true"></span>Errors');
    expect(html).toContain('<div class="chart-scroll">');
    expect(html).not.toContain("style=");
    expect(html).not.toContain("<b>");
  });
});
