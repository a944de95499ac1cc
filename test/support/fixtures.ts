import { randomBytes } from "node:crypto";
import { createAccount, type Account } from "../../src/accounts/service.ts";
import { cliActor, type Actor } from "../../src/audit/service.ts";
import { createKey, rollKey, updateKey } from "../../src/keys/service.ts";
import { createKeySchema, rollKeySchema, updateKeySchema, type CreateKeyInput, type KeyView, type UpdateKeyInput } from "../../src/keys/model.ts";
import type { z } from "zod";
import { DomainError, parseInput } from "../../src/errors.ts";
import { policySchema, scheduleSchema } from "../../src/rotation/model.ts";
import { scheduleRotation, setPolicy } from "../../src/rotation/service.ts";
import type { Harness } from "./harness.ts";

/** A fresh tenant: each test makes its own account, so tests never see each other's data. */
export async function newAccount(h: Harness): Promise<Account> {
  return createAccount(h.deps, { email: `dev-${randomBytes(5).toString("hex")}@example.com`, password: "correct horse battery" }, cliActor);
}

export async function newKey(h: Harness, accountId: string, input: Partial<CreateKeyInput> = {}): Promise<{ key: KeyView; secret: string }> {
  return createKey(h.deps, accountId, parseInput(createKeySchema, { name: "test key", scopes: ["email:read", "ip:read", "batch:write"], ...input }, "key"), cliActor);
}

/** updateKey with the input checked by the API's schema first, as every caller does. */
export async function changeKey(h: Harness, accountId: string, keyId: string, input: UpdateKeyInput, who: Actor = cliActor): Promise<KeyView> {
  return updateKey(h.deps, accountId, keyId, parseInput(updateKeySchema, input, "change"), who);
}

/** rollKey with the input checked by the API's schema first. */
export async function roll(h: Harness, accountId: string, keyId: string, input: { gracePeriodHours?: number } = {}, who: Actor = cliActor) {
  return rollKey(h.deps, accountId, keyId, parseInput(rollKeySchema, input, "roll"), who);
}

/** scheduleRotation with the input checked by the API's schema first. */
export async function schedule(h: Harness, accountId: string, keyId: string, input: z.input<typeof scheduleSchema>, who: Actor = cliActor) {
  return scheduleRotation(h.deps, accountId, keyId, parseInput(scheduleSchema, input, "rotation"), who);
}

/** setPolicy with the input checked by the API's schema first. */
export async function policy(h: Harness, accountId: string, input: z.input<typeof policySchema>, who: Actor = cliActor) {
  return setPolicy(h.deps, accountId, parseInput(policySchema, input, "policy"), who);
}

export const bearer = (secret: string) => ({ authorization: `Bearer ${secret}` });

/** Elysia runs onAfterResponse hooks (the meter, the access log) just after the answer. */
export function afterResponse(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

export async function problem(res: Response): Promise<{ code: string; status: number; errors?: { field: string; message: string }[] } & Record<string, unknown>> {
  const body = await res.json();
  if (res.headers.get("content-type")?.includes("application/problem+json") !== true) {
    throw new Error(`expected problem+json, got ${res.headers.get("content-type")}: ${JSON.stringify(body)}`);
  }
  return body;
}

/** Awaits a call that must fail with an DomainError and returns the error (anything else throws). */
export async function fails(p: Promise<unknown>): Promise<DomainError> {
  const err = await p.then(
    () => new Error("expected the call to fail"),
    (e) => e,
  );
  if (!(err instanceof DomainError)) throw err;
  return err;
}

/**
 * What `promise` rejected with (fails the test if it resolved), awaited the ordinary way.
 * Bun's `expect(promise).rejects` waits for the promise in a loop of its own that does not
 * run the event loop as usual: a flush hanging on a cut connection rejected there but never
 * under a plain await (found when the time limit on flushes was added), and a promise that
 * waits for a worker's message (the embedded database) never settles there. Tests use this.
 */
export async function rejection(promise: Promise<unknown>): Promise<Error> {
  const outcome = await promise.then(
    () => undefined,
    (err: unknown) => err as Error,
  );
  if (outcome === undefined) throw new Error("expected the promise to reject, and it resolved");
  return outcome;
}
