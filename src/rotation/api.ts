import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";
import { keyIdParams } from "../keys/model.ts";
import { getKey } from "../keys/service.ts";
import { operation } from "../plugins/openapi.ts";
import { authPlugin } from "../portal/plugin.ts";
import { emergencySchema, policySchema, rotationIdParams, rotationListSchema, rotationViewSchema, rotationWithSecretSchema, rotationsQuery, scheduleSchema } from "./model.ts";
import { cancelRotation, emergencyRotation, getPolicy, listRotations, revealRotationSecret, scheduleRotation, setPolicy } from "./service.ts";

const EXAMPLE_ROTATION = {
  id: "rot_7Yk2Pw9Qs4Lm1Xc8",
  keyId: "key_4f8Qm2xV9kTz1aB3",
  newKeyId: null,
  state: "scheduled",
  reason: "quarterly rotation",
  actor: "account:acct_1",
  emergency: false,
  gracePeriodHours: 72,
  scheduledAt: "2026-12-15T09:00:00.000Z",
  startedAt: null,
  graceEndsAt: null,
  completedAt: null,
  cancelledAt: null,
  failure: null,
  secretAvailable: false,
  revealedAt: null,
} as const;
const STARTED = { ...EXAMPLE_ROTATION, newKeyId: "key_9Hs2Lq7Wm4Xc8Vb1", state: "grace_period", startedAt: "2026-12-15T09:00:00.000Z", graceEndsAt: "2026-12-18T09:00:00.000Z" } as const;
const SECRET = "kp_live_Xq3v8Lw2Rk9Tz6Yb1Nc4Md7Fg0Hs5Jp2Ue8Wa3Qo1Ri";
const POLICY = { maxKeyAgeDays: 90, defaultGraceHours: 72, emergencyGraceHours: 4 };

/** Rotations and the rotation policy (DESIGN.md "Management API"). */
export const rotationApi = (deps: Deps) =>
  new Elysia({ name: "rotation-api", prefix: "/api" })
    .use(authPlugin(deps))
    .get("/rotation-policy", async ({ caller }) => getPolicy(deps, caller.accountId), {
      caller: true,
      detail: operation({ id: "getRotationPolicy", tag: "rotation", summary: "The account's rotation policy", answers: { 200: { description: "The policy.", schema: policySchema, example: POLICY } } }),
    })
    .put("/rotation-policy", async ({ caller, body }) => setPolicy(deps, caller.accountId, body, caller.actor), {
      caller: true,
      body: policySchema,
      detail: operation({
        id: "setRotationPolicy",
        tag: "rotation",
        summary: "Change the rotation policy",
        description: "Maximum key age (0 = off), the default grace of a scheduled rotation, the grace of an emergency one (0 = revoke at once).",
        answers: { 200: { description: "The policy as saved.", schema: policySchema, example: POLICY } },
        errors: ["invalid_request"],
        requestExample: POLICY,
      }),
    })
    .get(
      "/keys/:id/rotations",
      async ({ caller, params }) => {
        await getKey(deps, caller.accountId, params.id);
        return { data: await listRotations(deps, caller.accountId, { keyId: params.id }) };
      },
      {
        caller: true,
        params: keyIdParams,
        detail: operation({ id: "listKeyRotations", tag: "rotation", summary: "A key's rotations", answers: { 200: { description: "Newest first.", schema: rotationListSchema, example: { data: [EXAMPLE_ROTATION] } } }, errors: ["not_found"] }),
      },
    )
    .post(
      "/keys/:id/rotations",
      async ({ caller, params, body, set }) => {
        set.status = 201;
        return scheduleRotation(deps, caller.accountId, params.id, body, caller.actor);
      },
      {
        caller: true,
        params: keyIdParams,
        body: scheduleSchema,
        detail: operation({
          id: "scheduleRotation",
          tag: "rotation",
          summary: "Schedule a rotation",
          description: "At `at`, a replacement key with the same settings is made and the old one is `expiring` until the grace period ends.",
          answers: { 201: { description: "The scheduled rotation.", schema: rotationViewSchema, example: EXAMPLE_ROTATION } },
          errors: ["invalid_request", "not_found", "key_not_active", "rotation_in_progress"],
          requestExample: { at: "2026-12-15T09:00:00Z", gracePeriodHours: 72, reason: "quarterly rotation" },
        }),
      },
    )
    .post(
      "/keys/:id/rotations/emergency",
      async ({ caller, params, body, set }) => {
        const { rotation, secret } = await emergencyRotation(deps, caller.accountId, params.id, body, caller.actor);
        set.status = 201;
        set.headers["cache-control"] = "no-store";
        return { ...rotation, secret };
      },
      {
        caller: true,
        params: keyIdParams,
        body: emergencySchema,
        detail: operation({
          id: "rotateNow",
          tag: "rotation",
          summary: "Rotate a key now (emergency)",
          description: "With the policy's emergency grace (0 = the old key is revoked at once). The answer is the new secret's one showing.",
          answers: { 201: { description: "The started rotation, with the new secret.", schema: rotationWithSecretSchema, example: { ...STARTED, emergency: true, gracePeriodHours: 4, secret: SECRET } } },
          errors: ["invalid_request", "not_found", "key_not_active", "rotation_in_progress", "rotation_failed"],
          requestExample: { reason: "committed to a public repository" },
        }),
      },
    )
    .get("/rotations", async ({ caller, query }) => ({ data: await listRotations(deps, caller.accountId, { inFlight: query.state === "in_flight" }) }), {
      caller: true,
      query: rotationsQuery,
      detail: operation({ id: "listRotations", tag: "rotation", summary: "The account's rotations", answers: { 200: { description: "Newest first.", schema: rotationListSchema, example: { data: [EXAMPLE_ROTATION] } } }, errors: ["invalid_request"] }),
    })
    .delete("/rotations/:id", async ({ caller, params }) => cancelRotation(deps, caller.accountId, params.id, caller.actor), {
      caller: true,
      params: rotationIdParams,
      detail: operation({
        id: "cancelRotation",
        tag: "rotation",
        summary: "Cancel a scheduled rotation",
        answers: { 200: { description: "The cancelled rotation.", schema: rotationViewSchema, example: { ...EXAMPLE_ROTATION, state: "cancelled", cancelledAt: "2026-12-02T10:00:00.000Z" } } },
        errors: ["not_found", "rotation_not_cancellable"],
      }),
    })
    .post(
      "/rotations/:id/reveal",
      async ({ caller, params, set }) => {
        const { rotation, secret } = await revealRotationSecret(deps, caller.accountId, params.id, caller.actor);
        set.headers["cache-control"] = "no-store";
        return { ...rotation, secret };
      },
      {
        caller: true,
        params: rotationIdParams,
        detail: operation({
          id: "revealRotationSecret",
          tag: "rotation",
          summary: "Reveal a rotation's new secret, once",
          description: "The new secret of a rotation nobody watched waits sealed until this call; a second call is 410.",
          answers: { 200: { description: "The rotation and its new secret.", schema: rotationWithSecretSchema, example: { ...STARTED, revealedAt: "2026-12-15T09:05:00.000Z", secret: SECRET } } },
          errors: ["not_found", "secret_gone"],
        }),
      },
    );
