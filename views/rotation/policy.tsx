/** @jsxImportSource @kitajs/html */
import type { FieldError } from "../../src/errors.ts";
import type { RotationPolicy } from "../../src/rotation/model.ts";
import { CsrfField, Field, errorFor, paths } from "../components.tsx";

/** The rotation policy form on the settings page. */
export interface PolicySectionProps {
  policy: RotationPolicy;
  csrf: string;
  errors?: FieldError[];
  /** What was submitted, when it was refused. */
  values?: Record<string, string>;
  saved?: boolean;
}

export function PolicySection(props: PolicySectionProps) {
  const csrf = props.csrf;
  const pv = props.values;
  return (
    <form method="post" action={paths.policy} class="card narrow">
      <h2>Rotation policy</h2>
      {props.saved ? (
        <p class="ok" role="status">
          Policy saved.
        </p>
      ) : (
        ""
      )}
      <CsrfField token={csrf} />
      <Field name="maxKeyAgeDays" label="Maximum key age (days, 0 = off)" type="number" min={0} value={pv?.maxKeyAgeDays ?? props.policy.maxKeyAgeDays} error={errorFor(props.errors, "maxKeyAgeDays")} />
      <Field name="defaultGraceHours" label="Default grace period (hours)" type="number" min={0} max={168} value={pv?.defaultGraceHours ?? props.policy.defaultGraceHours} error={errorFor(props.errors, "defaultGraceHours")} />
      <Field
        name="emergencyGraceHours"
        label="Emergency grace period (hours, 0 = revoke at once)"
        type="number"
        min={0}
        max={168}
        value={pv?.emergencyGraceHours ?? props.policy.emergencyGraceHours}
        error={errorFor(props.errors, "emergencyGraceHours")}
      />
      <button type="submit">Save policy</button>
    </form>
  );
}
