/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import { z } from "zod";
import { settingsModel } from "../accounts/settings.ts";
import type { Deps } from "../deps.ts";
import { DomainError, parseInput } from "../errors.ts";
import { keyDetailModel } from "../keys/pages.ts";
import { getKey } from "../keys/service.ts";
import { csvText } from "../ops/csv.ts";
import { STATUS } from "../plugins/problem.ts";
import { formFields, formNumber, formOptionalText, formText } from "../portal/form.ts";
import { pageSession } from "../portal/page.ts";
import { authPlugin } from "../portal/plugin.ts";
import { csvResponse, htmlResponse, messagePage, notFoundPage, ownedOr404, redirectAfterPost } from "../portal/respond.ts";
import type { Session } from "../accounts/sessions.ts";
import { SettingsPage } from "../../views/accounts/settings.tsx";
import { paths } from "../../views/components.tsx";
import { KeyDetailPage } from "../../views/keys/key-detail.tsx";
import { CompliancePage } from "../../views/rotation/compliance.tsx";
import { RevealPage, type RotationFormState } from "../../views/rotation/rotations.tsx";
import { COMPLIANCE_CSV_COLUMNS, complianceCsvRows, complianceReport, type ComplianceReport } from "./compliance.ts";
import { emergencySchema, policySchema, scheduleSchema } from "./model.ts";
import { cancelRotation, emergencyRotation, revealRotationSecret, scheduleRotation, setPolicy } from "./service.ts";

const present = <T extends Record<string, unknown>>(o: T) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

const scheduleForm = z
  .object({
    // <input type="datetime-local"> has no zone: the form says UTC.
    at: formText.transform((raw) => {
      const s = raw.trim();
      return /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/.test(s) ? `${s}:00Z` : s;
    }),
    gracePeriodHours: formNumber(undefined),
    reason: formOptionalText(undefined),
  })
  .transform(present)
  .pipe(scheduleSchema);
const emergencyForm = z.object({ reason: formText }).pipe(emergencySchema);
const policyForm = z
  .object({ maxKeyAgeDays: formNumber(90), defaultGraceHours: formNumber(72), emergencyGraceHours: formNumber(4) })
  .transform(present)
  .pipe(policySchema);

export function complianceCsv(report: ComplianceReport): Response {
  return csvResponse(csvText(COMPLIANCE_CSV_COLUMNS, complianceCsvRows(report)), "compliance.csv");
}

/**
 * Rotation from a key's page (schedule, rotate now, cancel, reveal), the rotation policy
 * on the settings page, and the account's compliance report.
 */
export const rotationPortal = (deps: Deps) => {
  /**
   * A refused rotation: the key's page with each message beside its field and what was typed
   * kept, or the refusal at the top of the panel (404 for another account's key).
   */
  async function refusedOnKeyPage(s: Session, keyId: string, err: DomainError, values: RotationFormState["values"]): Promise<Response> {
    if (err.code === "not_found") return notFoundPage(s);
    const form: RotationFormState = err.errors?.length ? { errors: err.errors, values } : { message: err.detail, values };
    const data = await ownedOr404(s, () => keyDetailModel(deps, s, keyId, 7, { rotation: form }));
    return data instanceof Response ? data : htmlResponse(KeyDetailPage(data), 422);
  }

  /** The key a rotation replaced, by name, for the reveal page. */
  const replacedKey = (s: Session, keyId: string) => getKey(deps, s.accountId, keyId).catch(() => null);

  return new Elysia({ name: "rotation-portal" })
    .use(authPlugin(deps))
    .post("/portal/keys/:id/rotations", async ({ session, actor, params, body, request }) => {
      try {
        const input = parseInput(scheduleForm, formFields(body), "rotation");
        await scheduleRotation(deps, session.accountId, params.id, input, actor);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        const f = formFields(body);
        return refusedOnKeyPage(session, params.id, err, { at: formText.parse(f.at), gracePeriodHours: formText.parse(f.gracePeriodHours), reason: formText.parse(f.reason) });
      }
      return redirectAfterPost(request, paths.key(params.id));
    }, { page: true })
    .post("/portal/keys/:id/rotations/emergency", async ({ session, actor, params, body }) => {
      let result: Awaited<ReturnType<typeof emergencyRotation>>;
      try {
        const input = parseInput(emergencyForm, formFields(body), "rotation");
        result = await emergencyRotation(deps, session.accountId, params.id, input, actor);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        return refusedOnKeyPage(session, params.id, err, { emergencyReason: formText.parse(formFields(body).reason) });
      }
      return htmlResponse(RevealPage({ session: await pageSession(deps, session), secret: result.secret, rotation: result.rotation, replaced: await replacedKey(session, result.rotation.keyId) }), 200, {
        "cache-control": "no-store",
        "hx-push-url": paths.key(result.rotation.newKeyId ?? result.rotation.keyId),
      });
    }, { page: true })
    .post("/portal/rotations/:id/cancel", async ({ session, actor, params, request }) => {
      try {
        const r = await cancelRotation(deps, session.accountId, params.id, actor);
        return redirectAfterPost(request, paths.key(r.keyId));
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        if (err.code === "not_found") return notFoundPage(session);
        return messagePage(409, "Not cancelled", err.detail, session);
      }
    }, { page: true })
    .post("/portal/rotations/:id/reveal", async ({ session, actor, params }) => {
      try {
        const { secret, rotation } = await revealRotationSecret(deps, session.accountId, params.id, actor);
        return htmlResponse(RevealPage({ session: await pageSession(deps, session), secret, rotation, replaced: await replacedKey(session, rotation.keyId) }), 200, {
          "cache-control": "no-store",
          "hx-push-url": paths.key(rotation.newKeyId ?? rotation.keyId),
        });
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        if (err.code === "not_found") return notFoundPage(session);
        return messagePage(STATUS[err.code], "Already revealed", err.detail, session);
      }
    }, { page: true })
    .post("/portal/settings/policy", async ({ session, actor, body }) => {
      const f = formFields(body);
      const values = { maxKeyAgeDays: formText.parse(f.maxKeyAgeDays), defaultGraceHours: formText.parse(f.defaultGraceHours), emergencyGraceHours: formText.parse(f.emergencyGraceHours) };
      try {
        await setPolicy(deps, session.accountId, parseInput(policyForm, f, "policy"), actor);
      } catch (err) {
        if (!(err instanceof DomainError)) throw err;
        return htmlResponse(SettingsPage(await settingsModel(deps, session, { policy: { errors: err.errors, values } })), 422, { "hx-push-url": paths.settings });
      }
      return htmlResponse(SettingsPage(await settingsModel(deps, session, { policy: { saved: true } })), 200, { "hx-push-url": paths.settings });
    }, { page: true })
    .get("/portal/compliance", async ({ session }) => {
      const report = await complianceReport(deps.db, deps.clock.now(), session.accountId);
      return htmlResponse(CompliancePage({ session: await pageSession(deps, session), report, now: deps.clock.now(), operator: false }));
    }, { page: true })
    .get("/portal/compliance.csv", async ({ session }) => complianceCsv(await complianceReport(deps.db, deps.clock.now(), session.accountId)), { page: true });
};
