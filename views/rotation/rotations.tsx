/** @jsxImportSource @kitajs/html */
import type { FieldError } from "../../src/errors.ts";
import type { RotationView } from "../../src/rotation/service.ts";
import { Badge, CsrfField, errorFor, formatDate, paths, timeLeft, Time } from "../components.tsx";
import { SecretPanel } from "../keys/keys.tsx";
import { Layout, type PageSession } from "../layout.tsx";

export function RotationStateBadge(props: { r: RotationView; now: number }) {
  const r = props.r;
  if (r.state === "grace_period") {
    return (
      <Badge kind="expiring">
        <span safe>{`grace: ${timeLeft(r.graceEndsAt, props.now)} left`}</span>
      </Badge>
    );
  }
  return (
    <Badge kind={r.state === "completed" ? "active" : r.state === "scheduled" ? "test" : "revoked"}>
      <span safe>{r.state.replace("_", " ")}</span>
    </Badge>
  );
}

/** Rotation history rows, with a cancel button on a rotation that has not started. */
export function RotationTable(props: { rotations: RotationView[]; csrf: string; now: number }) {
  return (
    <table>
      <thead>
        <tr>
          <th scope="col">When</th>
          <th scope="col">State</th>
          <th scope="col">Reason</th>
          <th scope="col">By</th>
          <th scope="col">New key</th>
          <th scope="col"></th>
        </tr>
      </thead>
      <tbody>
        {props.rotations.map((r) => (
          <tr>
            <td class="when">
              <Time iso={r.startedAt ?? r.scheduledAt} />
            </td>
            <td>
              <RotationStateBadge r={r} now={props.now} />
            </td>
            <td safe>{r.emergency ? `emergency: ${r.reason}` : r.reason}</td>
            <td safe>{r.actor}</td>
            <td>
              {r.newKeyId ? (
                <a href={paths.key(r.newKeyId)} safe>
                  {r.newKeyId}
                </a>
              ) : (
                "—"
              )}
            </td>
            <td>
              {r.state === "scheduled" ? (
                <form method="post" action={paths.cancelRotation(r.id)}>
                  <CsrfField token={props.csrf} />
                  <button type="submit" class="link">
                    Cancel
                  </button>
                </form>
              ) : (
                ""
              )}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** On the key page: schedule a rotation, rotate in an emergency, and the key's rotation history. */
export interface RotationPanelProps {
  keyId: string;
  active: boolean;
  rotations: RotationView[];
  csrf: string;
  now: number;
  defaultGraceHours: number;
  /** A refused schedule or emergency rotation: messages beside their fields, what was typed kept. */
  form?: RotationFormState;
}

export interface RotationFormState {
  errors?: FieldError[];
  /** A refusal of the rotation as a whole (the key is not active, one is in progress). */
  message?: string;
  values?: { at?: string; gracePeriodHours?: string; reason?: string; emergencyReason?: string };
}

function FieldMessage(props: { errors?: FieldError[]; field: string }) {
  const message = errorFor(props.errors, props.field);
  return message ? (
    <small class="error" id={`f-${props.field}-error`} safe>
      {message}
    </small>
  ) : (
    ""
  );
}

export function RotationPanel(props: RotationPanelProps) {
  const v = props.form?.values;
  const e = props.form?.errors;
  return (
    <section class="card" id="rotations">
      <h2>Rotation</h2>
      {props.form?.message ? (
        <p class="form-error" role="alert" safe>
          {props.form.message}
        </p>
      ) : (
        ""
      )}
      {props.active ? (
        <div class="actions">
          <form method="post" action={paths.keyRotations(props.keyId)}>
            <CsrfField token={props.csrf} />
            <label for="f-at">Rotate at (UTC)</label>
            <input id="f-at" name="at" type="datetime-local" required value={v?.at} />
            <FieldMessage errors={e} field="at" />
            <label for="f-rgrace">Grace (hours)</label>
            <input id="f-rgrace" name="gracePeriodHours" type="number" min="0" max="168" value={v?.gracePeriodHours ?? String(props.defaultGraceHours)} />
            <FieldMessage errors={e} field="gracePeriodHours" />
            <label for="f-reason">Reason</label>
            <input id="f-reason" name="reason" type="text" value={v?.reason ?? "scheduled rotation"} />
            <FieldMessage errors={e} field="reason" />
            <button type="submit">Schedule</button>
          </form>
          <form method="post" action={paths.keyEmergency(props.keyId)} hx-confirm="Rotate this key now? The old key stops after the emergency grace period.">
            <CsrfField token={props.csrf} />
            <label for="f-ereason">Emergency reason</label>
            <input id="f-ereason" name="reason" type="text" required placeholder="e.g. key leaked in a log" value={v?.emergencyReason} />
            <button type="submit" class="danger">
              Rotate now
            </button>
          </form>
        </div>
      ) : (
        ""
      )}
      {props.rotations.length ? <RotationTable rotations={props.rotations} csrf={props.csrf} now={props.now} /> : <p class="muted">No rotations yet.</p>}
    </section>
  );
}

export function RevealPage(props: { session: PageSession; secret: string; rotation: RotationView; replaced: { name: string; display: string } | null }) {
  return (
    <Layout title="New secret" session={props.session} active="keys">
      <SecretPanel secret={props.secret} title="The new secret of a rotated key" />
      <p>
        It replaces{" "}
        <a href={paths.key(props.rotation.keyId)}>
          {props.replaced ? (
            <>
              <span safe>{props.replaced.name}</span> <code safe>{props.replaced.display}</code>
            </>
          ) : (
            "the old key"
          )}
        </a>
        {props.rotation.graceEndsAt ? <span safe>{`, which keeps working until ${formatDate(props.rotation.graceEndsAt)}`}</span> : ""}.{" "}
        {props.rotation.newKeyId ? (
          <a href={paths.key(props.rotation.newKeyId)}>See the new key</a>
        ) : (
          ""
        )}
      </p>
    </Layout>
  );
}
