import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";
import { keyIdParams } from "../keys/model.ts";
import { getKey } from "../keys/service.ts";
import { operation } from "../plugins/openapi.ts";
import { authPlugin } from "../portal/plugin.ts";
import { usageQuery, usageReportSchema } from "./model.ts";
import { keyUsageReport } from "./queries.ts";

/** A key's usage report (DESIGN.md "Management API"). */
export const usageApi = (deps: Deps) =>
  new Elysia({ name: "usage-api", prefix: "/api" }).use(authPlugin(deps)).get(
    "/keys/:id/usage",
    async ({ caller, params, query }) => {
      // Ownership first: another account's key answers 404 like a missing one.
      const key = await getKey(deps, caller.accountId, params.id);
      return keyUsageReport(deps.db, key.id, query.days, deps.clock.now());
    },
    {
      caller: true,
      params: keyIdParams,
      query: usageQuery,
      detail: operation({
        id: "getKeyUsage",
        tag: "usage",
        summary: "A key's daily usage",
        description: "Successes, errors, average and p95 latency per UTC day, the top endpoints and a summary; current as of the last usage flush.",
        answers: {
          200: {
            description: "The report.",
            schema: usageReportSchema,
            example: {
              keyId: "key_4f8Qm2xV9kTz1aB3",
              days: 1,
              from: "2026-12-01",
              to: "2026-12-01",
              daily: [{ day: "2026-12-01", successes: 41, errors: 1, avgLatencyMs: 0.4, p95LatencyMs: 1 }],
              topEndpoints: [{ endpoint: "GET /v1/email/:address", requests: 42, errors: 1 }],
              summary: { total: 42, successes: 41, errors: 1, errorRate: 0.0238, avgLatencyMs: 0.4, p95LatencyMs: 1 },
            },
          },
        },
        errors: ["invalid_request", "not_found"],
      }),
    },
  );
