/** @jsxImportSource @kitajs/html */
import type { FieldError } from "../../src/errors.ts";
import type { LeakPolicy } from "../../src/leaks/leaks.sql.ts";
import { CsrfField, errorFor, paths } from "../components.tsx";

/** Each policy in words, strongest last: the order of the radio buttons. */
export const LEAK_POLICY_TEXT: Record<LeakPolicy, { label: string; detail: string }> = {
  notify: { label: "Notify only", detail: "Tell me (in the portal, by mail and to the webhook); the key keeps working." },
  rotate: {
    label: "Rotate at once",
    detail: "Start an emergency rotation: a new key, revealed once in the portal, and the old one working only for the rotation policy's emergency grace period.",
  },
  revoke: { label: "Revoke at once", detail: "Requests with the key fail from the next one on, on every instance." },
};

/** The Settings page's "Leaked keys" card: the account's policy, and the operators' floor when it overrides it. */
export interface LeakPolicySectionProps {
  policy: LeakPolicy;
  floor: LeakPolicy;
  effective: LeakPolicy;
  csrf: string;
  errors?: FieldError[];
  saved?: boolean;
}

export function LeakPolicySection(props: LeakPolicySectionProps) {
  const error = errorFor(props.errors, "policy");
  return (
    <form method="post" action={paths.leakPolicy} class="card narrow" id="leaks">
      <h2>Leaked keys</h2>
      {props.saved ? (
        <p class="ok" role="status">
          Leak policy saved.
        </p>
      ) : (
        ""
      )}
      <CsrfField token={props.csrf} />
      <fieldset class={error ? "field invalid" : "field"} aria-describedby={error ? "f-policy-error" : undefined}>
        <legend>When one of your live keys is reported found in public</legend>
        {(["notify", "rotate", "revoke"] as const).map((p) => (
          <label class="check">
            <input type="radio" name="policy" value={p} checked={props.policy === p} />
            <strong safe>{LEAK_POLICY_TEXT[p].label}</strong> <span safe>{LEAK_POLICY_TEXT[p].detail}</span>
          </label>
        ))}
        {error ? (
          <small class="error" id="f-policy-error" safe>
            {error}
          </small>
        ) : (
          ""
        )}
      </fieldset>
      {props.effective !== props.policy ? (
        <p class="note" role="note" id="leak-floor">
          The operators of this server require at least <strong safe>{LEAK_POLICY_TEXT[props.floor].label.toLowerCase()}</strong> for every account: a leak of one of your live keys is
          handled that way.
        </p>
      ) : (
        ""
      )}
      <p class="muted">Test keys are only notified, whatever the policy. Every leak is marked on the key's page and written to the audit log.</p>
      <button type="submit">Save leak policy</button>
    </form>
  );
}
