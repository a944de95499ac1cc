import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";
import { operation } from "../plugins/openapi.ts";
import { authPlugin } from "../portal/plugin.ts";
import { createKeySchema, createdKeySchema, keyIdParams, keyListSchema, keyViewSchema, optionalBody, rollKeySchema, rolledKeySchema, updateKeySchema } from "./model.ts";
import { createKey, getKey, listKeys, revokeKey, rollKey, updateKey } from "./service.ts";

const EXAMPLE_KEY = {
  id: "key_4f8Qm2xV9kTz1aB3",
  name: "ci",
  environment: "live",
  display: "kp_live_AbCd…wxyz",
  scopes: ["email:read", "ip:read"],
  rateLimit: 60,
  ipAllowlist: [],
  monthlyQuota: null,
  status: "active",
  expiresAt: null,
  graceEndsAt: null,
  replacedBy: null,
  lastUsedAt: null,
  createdAt: "2026-12-01T10:00:00.000Z",
  revokedAt: null,
  sandbox: false,
} as const;
const EXAMPLE_SECRET = "kp_live_Xq3v8Lw2Rk9Tz6Yb1Nc4Md7Fg0Hs5Jp2Ue8Wa3Qo1Ri";

/** The management API for keys (DESIGN.md "Management API"). */
export const keysApi = (deps: Deps) =>
  new Elysia({ name: "keys-api", prefix: "/api" })
    .use(authPlugin(deps))
    .get("/keys", async ({ caller }) => ({ data: await listKeys(deps, caller.accountId) }), {
      caller: true,
      detail: operation({ id: "listKeys", tag: "keys", summary: "List the account's keys", answers: { 200: { description: "Every key, newest first.", schema: keyListSchema, example: { data: [EXAMPLE_KEY] } } } }),
    })
    .post(
      "/keys",
      async ({ caller, body, set }) => {
        const { key, secret } = await createKey(deps, caller.accountId, body, caller.actor);
        set.status = 201;
        set.headers["cache-control"] = "no-store";
        return { ...key, secret };
      },
      {
        caller: true,
        body: createKeySchema,
        detail: operation({
          id: "createKey",
          tag: "keys",
          summary: "Create a key",
          description: "The answer holds the new key's secret: it is shown this once and stored only as a hash.",
          answers: { 201: { description: "The new key, with its secret.", schema: createdKeySchema, example: { ...EXAMPLE_KEY, secret: EXAMPLE_SECRET } } },
          errors: ["invalid_request", "key_limit_reached", "email_not_verified"],
          requestExample: { name: "ci", scopes: ["email:read", "ip:read"], rateLimit: 60 },
        }),
      },
    )
    .get("/keys/:id", async ({ caller, params }) => getKey(deps, caller.accountId, params.id), {
      caller: true,
      params: keyIdParams,
      detail: operation({ id: "getKey", tag: "keys", summary: "Read a key", answers: { 200: { description: "The key.", schema: keyViewSchema, example: EXAMPLE_KEY } }, errors: ["not_found"] }),
    })
    .patch("/keys/:id", async ({ caller, params, body }) => updateKey(deps, caller.accountId, params.id, body, caller.actor), {
      caller: true,
      params: keyIdParams,
      body: updateKeySchema,
      detail: operation({
        id: "updateKey",
        tag: "keys",
        summary: "Change a key",
        description: "Name, scopes, rate limit, IP allowlist, expiry and monthly quota; a revoked key no longer changes.",
        answers: { 200: { description: "The key as changed.", schema: keyViewSchema, example: { ...EXAMPLE_KEY, name: "ci-2" } } },
        errors: ["invalid_request", "not_found", "key_not_active"],
        requestExample: { name: "ci-2", rateLimit: 120 },
      }),
    })
    .delete("/keys/:id", async ({ caller, params }) => revokeKey(deps, caller.accountId, params.id, caller.actor), {
      caller: true,
      params: keyIdParams,
      detail: operation({
        id: "revokeKey",
        tag: "keys",
        summary: "Revoke a key",
        description: "Takes effect on the next request on every instance.",
        answers: { 200: { description: "The revoked key.", schema: keyViewSchema, example: { ...EXAMPLE_KEY, status: "revoked", revokedAt: "2026-12-01T11:00:00.000Z" } } },
        errors: ["not_found"],
      }),
    })
    .post(
      "/keys/:id/roll",
      async ({ caller, params, body, set }) => {
        const { key, secret, previous } = await rollKey(deps, caller.accountId, params.id, body, caller.actor);
        set.status = 201;
        set.headers["cache-control"] = "no-store";
        return { ...key, secret, previous };
      },
      {
        caller: true,
        params: keyIdParams,
        body: optionalBody(rollKeySchema),
        detail: operation({
          id: "rollKey",
          tag: "keys",
          summary: "Roll a key",
          description: "A new key with the same settings, active at once; the old one answers until the grace period ends (0 = revoked now).",
          answers: {
            201: {
              description: "The new key with its secret, and the old one.",
              schema: rolledKeySchema,
              example: { ...EXAMPLE_KEY, id: "key_9Hs2Lq7Wm4Xc8Vb1", secret: EXAMPLE_SECRET, previous: { ...EXAMPLE_KEY, status: "expiring", graceEndsAt: "2026-12-02T10:00:00.000Z", replacedBy: "key_9Hs2Lq7Wm4Xc8Vb1" } },
            },
          },
          errors: ["invalid_request", "not_found", "key_not_active", "key_limit_reached", "email_not_verified"],
          requestExample: { gracePeriodHours: 24 },
        }),
      },
    );
