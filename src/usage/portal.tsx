/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import { z } from "zod";
import type { Deps } from "../deps.ts";
import { keyDetailModel } from "../keys/pages.ts";
import { getKey } from "../keys/service.ts";
import { csvText } from "../ops/csv.ts";
import { authPlugin } from "../portal/plugin.ts";
import { csvResponse, htmlResponse, ownedOr404, wantsFragment } from "../portal/respond.ts";
import { KeyDetailPage } from "../../views/keys/key-detail.tsx";
import { UsagePanel } from "../../views/usage/panel.tsx";
import { usageRangeQuery } from "./model.ts";
import { keyUsageReport } from "./queries.ts";

/** The CSV's days: 1-366, 30 when absent or not a number. */
const csvQuery = z.object({ days: z.preprocess((v) => Number.parseInt(String(v ?? ""), 10) || 30, z.number()).transform((n) => Math.min(366, Math.max(1, n))) });

/** A key's usage on its page: the range fragment htmx swaps, and the CSV of the daily rows. */
export const usagePortal = (deps: Deps) =>
  new Elysia({ name: "usage-portal" })
    .use(authPlugin(deps))
    .get("/portal/keys/:id/usage", async ({ session, params, query, request }) => {
      const data = await ownedOr404(session, () => keyDetailModel(deps, session, params.id, usageRangeQuery.parse(query).days));
      if (data instanceof Response) return data;
      const headers = { vary: "HX-Request" };
      return wantsFragment(request) ? htmlResponse(UsagePanel(data), 200, headers) : htmlResponse(KeyDetailPage(data), 200, headers);
    }, { page: true })
    .get("/portal/keys/:id/usage.csv", async ({ session, params, query }) => {
      const k = await ownedOr404(session, () => getKey(deps, session.accountId, params.id));
      if (k instanceof Response) return k;
      const { days } = csvQuery.parse(query);
      const report = await keyUsageReport(deps.db, k.id, days, deps.clock.now());
      const csv = csvText(
        ["day", "successes", "errors", "avg_latency_ms", "p95_latency_ms"],
        report.daily.map((d) => [d.day, d.successes, d.errors, d.avgLatencyMs, d.p95LatencyMs]),
      );
      return csvResponse(csv, `usage-${k.id}-${days}d.csv`);
    }, { page: true });
