import { Elysia } from "elysia";
import { z } from "zod";
import type { Deps } from "../deps.ts";
import { parseKey } from "../keys/format.ts";
import { operation } from "../plugins/openapi.ts";
import { authPlugin } from "../portal/plugin.ts";
import { LEAK_OUTCOMES, LEAK_POLICIES, LEAK_SOURCES } from "./leaks.sql.ts";
import { getLeakPolicy, listLeakReports, reportLeaks, setLeakPolicy } from "./service.ts";

const CONTROL = /[\u0000-\u001f\u007f]/;

/** Where a leaked key was seen: an http(s) URL as a browser's address bar shows it. */
const leakUrl = z
  .string({ error: "must be a URL" })
  .trim()
  .max(2000, "must be at most 2000 characters")
  .refine((s) => !CONTROL.test(s), "must not hold control characters")
  .refine((s) => {
    const u = URL.parse(s);
    return u !== null && (u.protocol === "https:" || u.protocol === "http:");
  }, "must be an http or https URL");

/**
 * A pasted key and where it was seen. The key must be one of this server's (its prefix and
 * checksum, checked offline): whether it exists is never told.
 */
export const reportLeakSchema = (prefix: string) =>
  z.strictObject(
    {
      key: z
        .string({ error: "is required" })
        .trim()
        .min(1, { error: "is required", abort: true })
        .refine((k) => parseKey(k, prefix).ok, `is not a key of this server (${prefix}_live_… or ${prefix}_test_… with a valid checksum)`)
        .describe("The leaked key, whole: only its SHA-256 and its masked form are kept."),
      url: leakUrl.nullable().optional().describe("Where it was seen: a commit, a file, a paste."),
    },
    { error: (issue) => (issue.code === "unrecognized_keys" ? `unknown field${issue.keys.length > 1 ? "s" : ""}: ${issue.keys.join(", ")}` : undefined) },
  );
export type ReportLeakInput = z.output<ReturnType<typeof reportLeakSchema>>;

export const leakPolicySchema = z.strictObject({
  policy: z.enum(LEAK_POLICIES, { error: `must be one of ${LEAK_POLICIES.join(", ")}` }).describe("What a reported leak of one of the account's live keys does."),
});

const reportedSchema = z.object({ reported: z.literal(true) });

const leakReportViewSchema = z.object({
  id: z.string(),
  keyId: z.string().nullable(),
  display: z.string().describe("The key masked: `kp_live_AbCd…wxyz`."),
  source: z.enum(LEAK_SOURCES).describe("Who found it: a public-code scanner (github, gitlab), a person (portal, api, operator), or `keyport scan`."),
  url: z.string().nullable().describe("Where it was seen, as reported."),
  outcome: z.enum(LEAK_OUTCOMES).describe("`acted` (revoked or rotated), `notified`, `already_revoked`, `duplicate` (an earlier report acted), or `pending`."),
  action: z.string().nullable().describe("`revoked`, `rotated`, `notified`, or null."),
  createdAt: z.string(),
  processedAt: z.string().nullable(),
});
export type LeakReportView = z.output<typeof leakReportViewSchema>;
const leakReportListSchema = z.object({ data: z.array(leakReportViewSchema) });

const leakPolicyViewSchema = z.object({
  policy: z.enum(LEAK_POLICIES).describe("The account's own choice."),
  floor: z.enum(LEAK_POLICIES).describe("The operators' minimum for every account (`notify`: none)."),
  effective: z.enum(LEAK_POLICIES).describe("What a leak does: the stronger of the two."),
});

/** A stored report as the account's owner reads it (who reported it stays with the operators). */
export function leakReportView(r: Awaited<ReturnType<typeof listLeakReports>>[number]): LeakReportView {
  return {
    id: r.id,
    keyId: r.keyId,
    display: r.display,
    source: r.source,
    url: r.url,
    outcome: r.outcome,
    action: r.action,
    createdAt: r.createdAt.toISOString(),
    processedAt: r.processedAt?.toISOString() ?? null,
  };
}

const EXAMPLE_REPORT: LeakReportView = {
  id: "leak_7Kd2Qm9Xw4Tz1aB3",
  keyId: "key_4f8Qm2xV9kTz1aB3",
  display: "kp_live_AbCd…wxyz",
  source: "api",
  url: "https://github.com/acme/app/blob/3f2c1e9/config.js",
  outcome: "acted",
  action: "rotated",
  createdAt: "2026-12-01T10:00:00.000Z",
  processedAt: "2026-12-01T10:00:00.000Z",
};
const EXAMPLE_SECRET = "kp_live_Xq3v8Lw2Rk9Tz6Yb1Nc4Md7Fg0Hs5Jp2Ue8Wa3Qo1Ri";

/**
 * Leak reports by people (README "Leaked keys"): any key of this server can be reported by
 * any account, and the owner's leak policy acts on it at once; the reporter learns only that
 * it was reported, the same answer whether the key exists, is someone else's or is revoked.
 * The account's own reports and its leak policy.
 */
export const leaksApi = (deps: Deps) =>
  new Elysia({ name: "leaks-api", prefix: "/api" })
    .use(authPlugin(deps))
    .post(
      "/leaks",
      async ({ caller, body, set }) => {
        await reportLeaks(deps, [{ token: body.key, url: body.url ?? null, source: "api" }], caller.actor);
        set.status = 202;
        return { reported: true as const };
      },
      {
        caller: true,
        body: reportLeakSchema(deps.config.keyPrefix),
        detail: operation({
          id: "reportLeak",
          tag: "keys",
          summary: "Report a leaked key",
          description:
            "Any key of this server, the account's or another's, found where others can read it. Its owner's leak policy acts at once (revoke, emergency rotation, or notify; a test key is only notified), once per key however often it is reported. The answer is the same whether or not the key exists.",
          answers: { 202: { description: "Reported.", schema: reportedSchema, example: { reported: true } } },
          requestExample: { key: EXAMPLE_SECRET, url: "https://github.com/acme/app/blob/3f2c1e9/config.js" },
        }),
      },
    )
    .get("/leaks", async ({ caller }) => ({ data: (await listLeakReports(deps, { accountId: caller.accountId })).map(leakReportView) }), {
      caller: true,
      detail: operation({
        id: "listLeakReports",
        tag: "keys",
        summary: "Leak reports of the account's keys",
        description: "Every report of one of the account's keys, by any source, newest first (the latest 100).",
        answers: { 200: { description: "The reports.", schema: leakReportListSchema, example: { data: [EXAMPLE_REPORT] } } },
      }),
    })
    .get("/leak-policy", async ({ caller }) => getLeakPolicy(deps, caller.accountId), {
      caller: true,
      detail: operation({
        id: "getLeakPolicy",
        tag: "keys",
        summary: "The account's leak policy",
        answers: { 200: { description: "The account's choice, the operators' floor, and what applies.", schema: leakPolicyViewSchema, example: { policy: "rotate", floor: "notify", effective: "rotate" } } },
      }),
    })
    .put(
      "/leak-policy",
      async ({ caller, body }) => {
        await setLeakPolicy(deps, caller.accountId, body.policy, caller.actor);
        return getLeakPolicy(deps, caller.accountId);
      },
      {
        caller: true,
        body: leakPolicySchema,
        detail: operation({
          id: "setLeakPolicy",
          tag: "keys",
          summary: "Set the account's leak policy",
          description: "`revoke` at once, `rotate` (an emergency rotation with the rotation policy's emergency grace; the default), or `notify` only. The operators' floor may require a stronger one.",
          answers: { 200: { description: "The policy as saved.", schema: leakPolicyViewSchema, example: { policy: "revoke", floor: "notify", effective: "revoke" } } },
          requestExample: { policy: "revoke" },
        }),
      },
    );
