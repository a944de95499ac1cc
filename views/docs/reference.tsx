/** @jsxImportSource @kitajs/html */
import type { FieldError } from "../../src/errors.ts";
import type { CodeSample } from "../../src/plugins/openapi.ts";
import type { ErrorDoc } from "../../src/docs/errors.ts";
import type { AnswerView, OperationView, SchemaRow, TagView } from "../../src/docs/reference.ts";
import { paramField, type Credential, type TryForm, type TryResult } from "../../src/docs/tryit.ts";
import { Badge, CsrfField, TableScroll, errorFor, paths } from "../components.tsx";
import { Layout, type PageSession } from "../layout.tsx";

export const docsPaths = {
  index: "/docs",
  gettingStarted: "/docs/getting-started",
  errors: "/docs/errors",
  error: (code: string) => `/docs/errors#${encodeURIComponent(code)}`,
  operation: (id: string) => `/docs/${encodeURIComponent(id)}`,
  tryIt: (id: string) => `/docs/${encodeURIComponent(id)}/try`,
  sandboxKey: "/docs/sandbox-key",
};

/** Text with `code spans` (the document's descriptions use backticks), escaped piece by piece. */
export function Prose(props: { text: string }) {
  const parts = props.text.split(/`([^`]*)`/);
  return (
    <>
      {parts.map((part, i) =>
        i % 2 === 1 ? (
          <code safe>{part}</code>
        ) : (
          <span safe>{part}</span>
        ),
      )}
    </>
  );
}

/** A heading with an anchor: `#parameters` links here. */
function Heading(props: { id: string; text: string; level?: 2 | 3 }) {
  const inner = (
    <a class="anchor" href={`#${props.id}`} safe>
      {props.text}
    </a>
  );
  return props.level === 3 ? <h3 id={props.id}>{inner}</h3> : <h2 id={props.id}>{inner}</h2>;
}

function Method(props: { method: string }) {
  return (
    <span class={`method method-${props.method.toLowerCase()}`} safe>
      {props.method}
    </span>
  );
}

/** Classes for the statuses a registered product may have; any other value gets the plain badge. */
const STATUS_CLASSES: Record<string, string> = { beta: "badge badge-beta", deprecated: "badge badge-deprecated" };

/** A product's or an operation's `beta` / `deprecated`, as a badge; nothing when active. */
export function StatusBadge(props: { status: string | undefined }) {
  if (!props.status) return "";
  return (
    <span class={STATUS_CLASSES[props.status] ?? "badge"} safe>
      {props.status}
    </span>
  );
}

function DocsNav(props: { active: string }) {
  const items = [
    ["index", docsPaths.index, "Reference"],
    ["getting-started", docsPaths.gettingStarted, "Getting started"],
    ["errors", docsPaths.errors, "Errors"],
  ] as const;
  return (
    <nav class="docs-nav" aria-label="Documentation">
      {items.map(([id, href, label]) => (
        <a href={href} aria-current={props.active === id ? "page" : undefined}>
          {label}
        </a>
      ))}
      <a href="/openapi.json">OpenAPI document</a>
    </nav>
  );
}

/** The operations list of the index (the fragment the search swaps). */
export function OperationList(props: { tags: TagView[]; q: string }) {
  return (
    <div id="operations" aria-live="polite">
      {props.tags.length === 0 ? (
        <p class="muted" safe>
          {`No operation matches “${props.q}”.`}
        </p>
      ) : (
        props.tags.map((t) => (
          <section class="card" aria-labelledby={`tag-${t.name}`}>
            <h2 id={`tag-${t.name}`}>
              <a class="anchor" href={`#tag-${encodeURIComponent(t.name)}`} safe>
                {t.title}
              </a>
              {t.status ? (
                <>
                  {" "}
                  <StatusBadge status={t.status} />
                </>
              ) : (
                ""
              )}
            </h2>
            {t.description ? (
              <p class="muted">
                <Prose text={t.description} />
              </p>
            ) : (
              ""
            )}
            <ul class="operations">
              {t.operations.map((o) => (
                <li>
                  <a href={docsPaths.operation(o.id)}>
                    <Method method={o.method} /> <code safe>{o.path}</code> <span safe>{o.summary}</span>
                    {o.status && o.status !== t.status ? (
                      <>
                        {" "}
                        <StatusBadge status={o.status} />
                      </>
                    ) : (
                      ""
                    )}
                  </a>
                </li>
              ))}
            </ul>
          </section>
        ))
      )}
    </div>
  );
}

export function DocsIndexPage(props: { session?: PageSession; title: string; description: string; version: string; tags: TagView[]; q: string }) {
  return (
    <Layout title="API reference" session={props.session} active="docs">
      <DocsNav active="index" />
      <section class="card">
        <h1 safe>{props.title}</h1>
        <p class="muted" safe>
          {`Version ${props.version}`}
        </p>
        <p>
          <Prose text={props.description} />
        </p>
        <p>
          New here? <a href={docsPaths.gettingStarted}>Get started</a>: an account, a key and a first call in a few minutes.
        </p>
        <form method="get" action={docsPaths.index} role="search" class="filters">
          <label for="docs-q">Search operations</label>
          <input
            id="docs-q"
            type="search"
            name="q"
            value={props.q}
            placeholder="email, keys, POST, /v1/batch…"
            hx-get={docsPaths.index}
            hx-trigger="input changed delay:200ms, search"
            hx-target="#operations"
            hx-swap="outerHTML"
          />
          <button type="submit">Search</button>
        </form>
      </section>
      <OperationList tags={props.tags} q={props.q} />
    </Layout>
  );
}

function SchemaTable(props: { rows: SchemaRow[]; caption: string }) {
  if (props.rows.length === 0) return <p class="muted">No fields.</p>;
  return (
    <TableScroll>
      <table class="schema">
        <caption class="visually-hidden" safe>
          {props.caption}
        </caption>
        <thead>
          <tr>
            <th>Field</th>
            <th>Type</th>
            <th>Required</th>
            <th>Constraints</th>
            <th>Description</th>
          </tr>
        </thead>
        <tbody>
          {props.rows.map((r) => (
            <tr>
              <td>
                <code safe>{r.name}</code>
              </td>
              <td safe>{r.type}</td>
              <td>{r.required ? "yes" : "no"}</td>
              <td safe>{r.constraints}</td>
              <td>
                <Prose text={r.description} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </TableScroll>
  );
}

function Example(props: { value: unknown; label: string }) {
  if (props.value === undefined) return "";
  return (
    <details class="example">
      <summary safe>{props.label}</summary>
      <pre safe>{JSON.stringify(props.value, null, 2)}</pre>
    </details>
  );
}

function Answer(props: { a: AnswerView }) {
  const id = `answer-${props.a.status}`;
  return (
    <section class="answer">
      <Heading id={id} text={`${props.a.status} · ${props.a.contentType || "no body"}`} level={3} />
      <p>
        <Prose text={props.a.description} />
      </p>
      {props.a.codes.length ? (
        <p>
          Codes:{" "}
          {props.a.codes.map((c, i) => (
            <>
              {i ? ", " : ""}
              <a href={docsPaths.error(c)}>
                <code safe>{c}</code>
              </a>
            </>
          ))}
        </p>
      ) : (
        ""
      )}
      {props.a.described ? <SchemaTable rows={props.a.rows} caption={`Fields of the ${props.a.status} answer`} /> : ""}
      <Example value={props.a.example} label="Example" />
    </section>
  );
}

const RATE_HEADERS: [string, string][] = [
  ["RateLimit", 'What is left now, for each policy in force: `"default";r=59;t=1, "plan";r=1;t=1, "month";r=499;t=1234567` is 59 requests left of the key\'s per-minute limit (1 second until it is whole again: the limit refills continuously), 1 of the plan\'s per-second limit, and 499 of the plan\'s included calls this month (t: seconds until the month turns).'],
  ["RateLimit-Policy", 'The policies: `"default";q=60;w=60` the key\'s 60 requests per 60 s, `"plan";q=2;w=1` the plan\'s 2 per second across all the account\'s keys, `"month";q=500;w=2592000` the included calls this month (live keys only; a test key\'s answers have no `month`).'],
  ["X-RateLimit-Limit / -Remaining / -Reset", "The policy nearest exhaustion, as plain numbers: its limit, what is left, and the Unix second it is whole again."],
  ["Retry-After", "On a 429 only: the seconds to wait before the next request is admitted."],
];

export function RateLimitHelp(props: { gateway: boolean }) {
  return (
    <section class="card">
      <Heading id="rate-limits" text="Rate-limit headers" />
      <p>
        {props.gateway
          ? "Every answer of this operation carries the key's rate-limit state (IETF httpapi RateLimit headers):"
          : "Called with a key, the management API answers with the key's rate-limit state too (IETF httpapi RateLimit headers):"}
      </p>
      <dl class="headers-help">
        {RATE_HEADERS.map(([name, text]) => (
          <>
            <dt>
              <code safe>{name}</code>
            </dt>
            <dd>
              <Prose text={text} />
            </dd>
          </>
        ))}
      </dl>
    </section>
  );
}

/** Code samples with copy buttons; a sandbox key's masked form is swapped for the whole key on copy. */
export function Samples(props: { samples: CodeSample[]; sandboxMask?: string; id: string }) {
  return (
    <div class="samples">
      {props.samples.map((s) => {
        const id = `${props.id}-${s.lang}`;
        return (
          <figure class="sample">
            <figcaption>
              <span safe>{s.label ?? s.lang}</span>
              <button type="button" class="copy" data-copy-target={id} data-sandbox-mask={props.sandboxMask} hidden>
                Copy
              </button>
            </figcaption>
            <pre id={id} safe>
              {s.source}
            </pre>
          </figure>
        );
      })}
    </div>
  );
}

const CREDENTIAL_LABELS: Record<Credential, string> = {
  sandbox: "My sandbox key (a test key for this session: 60 requests a minute, 200 calls, 30 minutes)",
  session: "My portal session (acts on this account's real keys)",
  pasted: "A key I paste",
};

export interface TryState {
  op: OperationView;
  form: TryForm;
  credentials: Credential[];
  errors?: FieldError[];
  result?: TryResult;
  /** Shown above the result: a live key is metered, the sandbox key was just made. */
  notes: string[];
  samples: CodeSample[];
  sandboxMask?: string;
  csrfToken?: string;
  signedIn: boolean;
}

function Result(props: { r: TryResult }) {
  const r = props.r;
  const ok = r.status < 400;
  return (
    <section class="result" aria-labelledby="try-result" role="status">
      <h3 id="try-result">
        <span class={`badge ${ok ? "badge-active" : "badge-revoked"}`} safe>
          {`${r.status} ${r.statusText}`}
        </span>{" "}
        <span class="muted" safe>
          {`${r.ms.toFixed(1)} ms`}
        </span>
      </h3>
      <p>
        <Prose text={r.meaning} />
        {r.problemCode ? (
          <>
            {" "}
            Code <a href={docsPaths.error(r.problemCode)}>
              <code safe>{r.problemCode}</code>
            </a>
            : what it means and what to do.
          </>
        ) : (
          ""
        )}
      </p>
      <p class="muted">
        <code safe>{`${r.method} ${r.url}`}</code>
      </p>
      <TableScroll>
        <table class="answer-headers">
          <caption class="visually-hidden">Answer headers</caption>
          <thead>
            <tr>
              <th>Header</th>
              <th>Value</th>
              <th>Meaning</th>
            </tr>
          </thead>
          <tbody>
            {r.headers.map((h) => (
              <tr class={h.note ? "rate" : undefined}>
                <td>
                  <code safe>{h.name}</code>
                </td>
                <td>
                  <code safe>{h.value}</code>
                </td>
                <td safe>{h.note ?? ""}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </TableScroll>
      <pre class="answer-body" safe>
        {r.body || "(no body)"}
      </pre>
    </section>
  );
}

/** The try-it form, its result and the samples of the request: the fragment a submission swaps. */
export function TrySection(props: TryState) {
  const { op, form } = props;
  return (
    <section class="card" id="try-it" aria-labelledby="try-it-heading">
      <Heading id="try-it-heading" text="Try it" />
      {!props.signedIn ? (
        <p>
          <a href={`${paths.login}?next=${encodeURIComponent("/portal")}`}>Log in</a> or <a href={paths.signup}>sign up</a> to try it with a sandbox key made for you, or paste a key below.
        </p>
      ) : op.upstream ? (
        <p class="muted">
          The request runs through the same checks as a program's (key, scope, plan, IP allowlist, rate limit, quota) and is metered; the sandbox key is a test key, so the
          gateway passes it on to the product's sandbox, never to its live server.
        </p>
      ) : op.gateway ? (
        <p class="muted">The request runs on this server through the same checks as a program's: key, scope, IP allowlist, rate limit, quota, and it is metered.</p>
      ) : (
        <p class="muted">This runs against your account: an operation that changes keys really changes them.</p>
      )}
      <form method="post" action={docsPaths.tryIt(op.id)} hx-post={docsPaths.tryIt(op.id)} hx-target="#try-it" hx-swap="outerHTML" class="try-form">
        {props.csrfToken ? <CsrfField token={props.csrfToken} /> : ""}
        {op.params
          .filter((p) => p.in !== "cookie")
          .map((p) => {
            const name = paramField(p.name);
            const error = errorFor(props.errors, name);
            const id = `f-${name}`;
            return (
              <div class={error ? "field invalid" : "field"}>
                <label for={id} safe>
                  {`${p.name} (${p.in}${p.required ? ", required" : ""})`}
                </label>
                {p.enum ? (
                  <select id={id} name={name}>
                    {p.required ? "" : <option value="">—</option>}
                    {p.enum.map((v) => (
                      <option value={v} selected={form.values[p.name] === v} safe>
                        {v}
                      </option>
                    ))}
                  </select>
                ) : (
                  <input id={id} name={name} value={form.values[p.name] ?? ""} aria-invalid={error ? "true" : undefined} aria-describedby={error ? `${id}-error` : undefined} />
                )}
                {error ? (
                  <small class="error" id={`${id}-error`} safe>
                    {error}
                  </small>
                ) : (
                  ""
                )}
              </div>
            );
          })}
        {op.body ? (
          <div class={errorFor(props.errors, "body") ? "field invalid" : "field"}>
            <label for="f-body">Body (JSON)</label>
            <textarea id="f-body" name="body" rows="8" spellcheck="false" aria-invalid={errorFor(props.errors, "body") ? "true" : undefined} aria-describedby={errorFor(props.errors, "body") ? "f-body-error" : undefined} safe>
              {form.body}
            </textarea>
            {errorFor(props.errors, "body") ? (
              <small class="error" id="f-body-error" safe>
                {errorFor(props.errors, "body")}
              </small>
            ) : (
              ""
            )}
          </div>
        ) : (
          ""
        )}
        <fieldset class={errorFor(props.errors, "credential") ? "field invalid" : "field"}>
          <legend>Credential</legend>
          {props.credentials.map((c) => (
            <label class="check">
              <input type="radio" name="credential" value={c} checked={form.credential === c} />
              <span safe>{CREDENTIAL_LABELS[c]}</span>
            </label>
          ))}
          {errorFor(props.errors, "credential") ? (
            <small class="error" safe>
              {errorFor(props.errors, "credential")}
            </small>
          ) : (
            ""
          )}
        </fieldset>
        <div class={errorFor(props.errors, "key") ? "field invalid" : "field"}>
          <label for="f-key">Key to paste</label>
          <input
            id="f-key"
            name="key"
            type="password"
            autocomplete="off"
            value={form.credential === "pasted" ? form.key : ""}
            placeholder="kp_live_… or kp_test_…"
            aria-invalid={errorFor(props.errors, "key") ? "true" : undefined}
            aria-describedby={errorFor(props.errors, "key") ? "f-key-error" : undefined}
          />
          <small class="hint">Used for this request only; a live key is metered and counts against its quota as usual.</small>
          {errorFor(props.errors, "key") ? (
            <small class="error" id="f-key-error" safe>
              {errorFor(props.errors, "key")}
            </small>
          ) : (
            ""
          )}
        </div>
        <button type="submit">Send request</button>
      </form>
      {props.notes.map((n) => (
        <p class="note">
          <Prose text={n} />
        </p>
      ))}
      {props.result ? <Result r={props.result} /> : ""}
      <Heading id="samples" text="Code samples" level={3} />
      <Samples samples={props.samples} sandboxMask={props.sandboxMask} id="sample" />
    </section>
  );
}

export function OperationPage(props: { session?: PageSession; op: OperationView; tryIt: TryState }) {
  const { op } = props;
  const title = op.summary || `${op.method} ${op.path}`;
  return (
    <Layout title={`${title} · API reference`} session={props.session} active="docs">
      <DocsNav active="operation" />
      <article>
        <section class="card">
          <p class="muted">
            <a href={`${docsPaths.index}#tag-${encodeURIComponent(op.tag)}`} safe>
              {op.tagTitle}
            </a>{" "}
            · <code safe>{op.id}</code>
            {op.status ? (
              <>
                {" "}
                <StatusBadge status={op.status} />
              </>
            ) : (
              ""
            )}
          </p>
          <h1 safe>{title}</h1>
          <p class="endpoint">
            <Method method={op.method} /> <code safe>{op.path}</code>
          </p>
          {op.description ? (
            <p>
              <Prose text={op.description} />
            </p>
          ) : (
            ""
          )}
          <p>
            Required scope: <Badge kind="scope">{op.scope ? <code safe>{op.scope}</code> : "none"}</Badge>{" "}
            {op.gateway ? (
              <span class="muted">
                Send the key as <code>Authorization: Bearer {"&lt;key&gt;"}</code> or <code>X-API-Key</code>.
              </span>
            ) : (
              <span class="muted">A live key holding it, or a portal session with its X-CSRF-Token.</span>
            )}
          </p>
          {op.upstream ? (
            <p class="muted">
              The gateway checks the key, then passes the request on to the product's own server: a live key's call to its server, a test key's to its sandbox (a product without one
              answers <a href={docsPaths.error("sandbox_unavailable")}>
                <code>sandbox_unavailable</code>
              </a>
              ). The answer is the product's, with the gateway's rate-limit headers; the gateway's own refusals are listed under Error codes.
            </p>
          ) : (
            ""
          )}
        </section>
        <section class="card">
          <Heading id="parameters" text="Parameters" />
          {op.params.length === 0 ? (
            <p class="muted">None.</p>
          ) : (
            <TableScroll>
              <table class="schema">
                <caption class="visually-hidden">Parameters</caption>
                <thead>
                  <tr>
                    <th>Name</th>
                    <th>In</th>
                    <th>Type</th>
                    <th>Required</th>
                    <th>Constraints</th>
                    <th>Description</th>
                    <th>Example</th>
                  </tr>
                </thead>
                <tbody>
                  {op.params.map((p) => (
                    <tr>
                      <td>
                        <code safe>{p.name}</code>
                      </td>
                      <td>{p.in}</td>
                      <td safe>{p.type}</td>
                      <td>{p.required ? "yes" : "no"}</td>
                      <td safe>{p.constraints}</td>
                      <td>
                        <Prose text={p.description} />
                      </td>
                      <td>{p.example === undefined ? "" : <code safe>{p.example}</code>}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </TableScroll>
          )}
          {op.body ? (
            <>
              <Heading id="request-body" text={`Request body (application/json${op.body.required ? ", required" : ""})`} level={3} />
              <SchemaTable rows={op.body.rows} caption="Request body fields" />
              <Example value={op.body.example} label="Example body" />
            </>
          ) : (
            ""
          )}
        </section>
        <TrySection {...props.tryIt} />
        <section class="card">
          <Heading id="answers" text="Answers" />
          {op.answers.map((a) => (
            <Answer a={a} />
          ))}
        </section>
        <section class="card">
          <Heading id="errors" text="Error codes" />
          <p>
            Every error is <code>application/problem+json</code> with a stable <code>code</code>; its <code>type</code> links to the explanation.
          </p>
          <TableScroll>
            <table>
              <thead>
                <tr>
                  <th>Status</th>
                  <th>Code</th>
                </tr>
              </thead>
              <tbody>
                {op.errorCodes.map((e) => (
                  <tr>
                    <td safe>{String(e.status)}</td>
                    <td>
                      <a href={docsPaths.error(e.code)}>
                        <code safe>{e.code}</code>
                      </a>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </TableScroll>
        </section>
        <RateLimitHelp gateway={op.gateway} />
      </article>
    </Layout>
  );
}

export function ErrorsPage(props: { session?: PageSession; errors: ErrorDoc[]; origin: string }) {
  return (
    <Layout title="Errors · API reference" session={props.session} active="docs">
      <DocsNav active="errors" />
      <section class="card">
        <h1>Errors</h1>
        <p>
          Every error answer is RFC 9457 <code>application/problem+json</code>: <code>type</code> (the URL of the code's entry on this page), <code>title</code>, <code>status</code>, <code>detail</code> (for
          people) and <code>code</code> (stable, for programs). A 400 lists the failing fields in <code>errors</code>; a 429 carries <code>Retry-After</code>.
        </p>
        <pre safe>{`{
  "type": "${props.origin}/docs/errors#rate_limited",
  "title": "Too Many Requests",
  "status": 429,
  "detail": "Rate limit of 60 requests per minute exceeded.",
  "code": "rate_limited"
}`}</pre>
      </section>
      <section class="card">
        <dl class="error-codes">
          {props.errors.map((e) => (
            <>
              <dt id={e.code}>
                <a class="anchor" href={`#${e.code}`}>
                  <code>{e.code}</code>
                </a>{" "}
                <span class="badge" safe>
                  {String(e.status)}
                </span>
              </dt>
              <dd>
                <p>
                  <Prose text={e.meaning} />
                </p>
                <p>
                  <strong>What to do:</strong> <Prose text={e.action} />
                </p>
              </dd>
            </>
          ))}
        </dl>
      </section>
    </Layout>
  );
}

export function GettingStartedPage(props: { session?: PageSession; origin: string; prefix: string; firstOperation: string }) {
  const curl = `curl -H "Authorization: Bearer $KEYPORT_KEY" ${props.origin}/v1/email/someone@gmial.com`;
  return (
    <Layout title="Getting started · API reference" session={props.session} active="docs">
      <DocsNav active="getting-started" />
      <section class="card">
        <h1>Getting started</h1>
        <ol class="steps">
          <li>
            <h2 id="account">
              <a class="anchor" href="#account">
                Create an account
              </a>
            </h2>
            <p>
              {props.session ? (
                <span safe>{`You are signed in as ${props.session.email}.`}</span>
              ) : (
                <>
                  <a href={paths.signup}>Sign up</a> with an email address and a password (or <a href={paths.login}>log in</a>).
                </>
              )}
            </p>
          </li>
          <li>
            <h2 id="key">
              <a class="anchor" href="#key">
                Get a key
              </a>
            </h2>
            <p>
              On <a href={paths.keys}>Keys</a>, create a key with the scopes you need (<code>email:read</code> for the email check). Its secret is shown once: copy it
              into your program's secret store, for example as the environment variable <code>KEYPORT_KEY</code>.
            </p>
            <p class="muted" safe>
              {`Keys look like ${props.prefix}_live_… (metered) or ${props.prefix}_test_… (for trying things out).`}
            </p>
          </li>
          <li>
            <h2 id="first-call">
              <a class="anchor" href="#first-call">
                Make a first call
              </a>
            </h2>
            <pre id="first-curl" safe>
              {curl}
            </pre>
            <p>
              <button type="button" class="copy" data-copy-target="first-curl" hidden>
                Copy
              </button>
            </p>
            <p>
              Or open any operation in the <a href={docsPaths.index}>reference</a> and press <em>Send request</em> in its Try it form: signed in, a sandbox key is made for
              you. Start with <a href={docsPaths.operation(props.firstOperation)}>the email check</a>.
            </p>
          </li>
          <li>
            <h2 id="usage">
              <a class="anchor" href="#usage">
                See your usage
              </a>
            </h2>
            <p>
              Each key's page on <a href={paths.keys}>Keys</a> shows its requests, errors and latency by day; the <a href={paths.dashboard}>dashboard</a> sums them up. Every
              answer's <code>RateLimit</code> header tells your program how much of the minute is left, and errors are explained on the <a href={docsPaths.errors}>errors page</a>.
            </p>
          </li>
        </ol>
      </section>
    </Layout>
  );
}
