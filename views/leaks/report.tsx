/** @jsxImportSource @kitajs/html */
import type { FieldError } from "../../src/errors.ts";
import type { KeyView } from "../../src/keys/model.ts";
import { Badge, CsrfField, Field, errorFor, paths, Time } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";

/** The badge of a key reported found in public; nothing for any other key. */
export function LeakedBadge(props: { k: Pick<KeyView, "leakedAt"> }) {
  if (!props.k.leakedAt) return "";
  return (
    <Badge kind="leaked">
      <span>leaked</span>
    </Badge>
  );
}

/**
 * A leaked key's facts on its page: the badge, when, and where it was seen. The place is
 * shown as text, never as a link: it is whatever the report said.
 */
export function LeakedFacts(props: { k: Pick<KeyView, "leakedAt" | "leakedUrl"> }) {
  const k = props.k;
  if (!k.leakedAt) return "";
  return (
    <>
      <dt>Leaked</dt>
      <dd class="leaked">
        <LeakedBadge k={k} /> reported <Time iso={k.leakedAt} />
        {k.leakedUrl ? (
          <>
            {" at "}
            <code class="leak-url" safe>
              {k.leakedUrl}
            </code>
          </>
        ) : (
          ""
        )}
      </dd>
    </>
  );
}

/** The report form: the pasted key is never shown again, even after a refusal; the URL is kept. */
export interface ReportLeakFormState {
  url?: string;
  errors?: FieldError[];
  /** Just reported: the one answer, whatever the key was. */
  reported?: boolean;
}

export function ReportLeakForm(props: { state: ReportLeakFormState; csrf: string }) {
  const s = props.state;
  return (
    <form id="report-leak" method="post" action={paths.reportLeak} hx-post={paths.reportLeak} hx-target="#report-leak" hx-swap="outerHTML" class="card narrow" autocomplete="off">
      <h2>Report a leaked key</h2>
      <p>
        Found a key of this server where others can read it: a public repository, a paste, a log? Paste it here with the address where you saw it. Its owner is told, and
        their leak policy acts on it at once (revoked, rotated, or only notified). You will not learn whose key it is.
      </p>
      {s.reported ? (
        <p class="ok" role="status">
          Reported. Thank you: if it is a key of this server, its owner's leak policy acts on it now.
        </p>
      ) : (
        ""
      )}
      {s.errors?.length ? (
        <p class="form-error" role="alert">
          Nothing was reported: see the fields marked below.
        </p>
      ) : (
        ""
      )}
      <CsrfField token={props.csrf} />
      <Field name="key" label="The leaked key" required autocomplete="off" hint="Paste it whole. Only its hash and its masked form are kept." error={errorFor(s.errors, "key")} />
      <Field name="url" label="Where you saw it (optional)" type="url" value={s.url} hint="A commit, a file or a paste: an http or https address." error={errorFor(s.errors, "url")} />
      <button type="submit" class="danger">
        Report key
      </button>
    </form>
  );
}

/** The report form's own page: what a plain form's POST answers (htmx swaps only the form). */
export function ReportLeakPage(props: { session: PageSession; state: ReportLeakFormState }) {
  return (
    <Layout title="Report a leaked key" session={props.session} active="keys">
      <p>
        <a href={paths.keys}>← All keys</a>
      </p>
      <ReportLeakForm state={props.state} csrf={props.session.csrfToken} />
    </Layout>
  );
}
