/** @jsxImportSource @kitajs/html */
import { Elysia, type AnyElysia } from "elysia";
import type { Server } from "bun";
import type { Deps } from "../deps.ts";
import { clientIp, innerRequestIp, socketAddress } from "../gateway/chain.ts";
import { csrfMatches, validateSession, SESSION_COOKIE, type Session } from "../accounts/sessions.ts";
import { requestOrigin } from "../plugins/origin.ts";
import { formFields } from "../portal/form.ts";
import { sameOrigin, sessionToken } from "../portal/http.ts";
import { pageSession } from "../portal/page.ts";
import { authPlugin, requestActor } from "../portal/plugin.ts";
import { htmlResponse, messagePage, notFoundPage, wantsFragment } from "../portal/respond.ts";
import { DocsIndexPage, ErrorsPage, GettingStartedPage, OperationList, OperationPage, TrySection, type TryState } from "../../views/docs/reference.tsx";
import type { DocsCatalog } from "./api.ts";
import { ERROR_DOCS } from "./errors.ts";
import { searchReference, type OperationView } from "./reference.ts";
import { codeSamples, PLACEHOLDER_KEY, requestHeaders, requestPath, type SampleKey } from "./samples.ts";
import { cookieSecret, currentSandboxKey, sandboxKey, type SandboxKey, type SandboxSession } from "./sandbox.ts";
import { credentialsFor, describeAnswer, formErrors, initialForm, readForm, tryRequest, type TryForm, type TryResult } from "./tryit.ts";

/** The visitor's session, if any: the reference is public, and richer signed in. */
interface Visitor {
  session: Session | null;
  token: string | undefined;
}

async function visitor(deps: Deps, request: Request): Promise<Visitor> {
  const token = sessionToken(request);
  return { session: await validateSession(deps, token), token };
}

/**
 * A page rendered for a signed-in visitor (the account's navigation, its sandbox key) is kept
 * by no cache, like every signed-in page (src/portal/plugin.ts); the public one may be.
 */
const NO_STORE = { "cache-control": "no-store" };
const cacheFor = (v: Visitor): Record<string, string> => (v.session ? NO_STORE : {});

function sandboxSession(v: Visitor): SandboxSession | undefined {
  const secret = cookieSecret(v.token);
  return v.session && secret ? { id: v.session.id, accountId: v.session.accountId, expiresAt: v.session.expiresAt, cookieSecret: secret } : undefined;
}

/** The samples of a request as the form describes it, with the sandbox key's masked form when it is the credential. */
function samplesFor(op: OperationView, form: TryForm, origin: string, sandbox: SandboxKey | undefined) {
  let body: unknown;
  if (op.body) {
    try {
      body = form.body.trim() === "" ? undefined : JSON.parse(form.body);
    } catch {
      body = op.body.example;
    }
  }
  const useSandbox = sandbox && op.gateway && form.credential === "sandbox";
  const key: SampleKey = useSandbox ? { literal: sandbox.key.display } : PLACEHOLDER_KEY;
  const request = { method: op.method, url: origin + requestPath(op, form.values), body, headers: requestHeaders(op, form.values) };
  return { samples: codeSamples(op, request, key), sandboxMask: useSandbox ? sandbox.key.display : undefined };
}

/**
 * The API reference (`/docs`): public pages rendered from the in-process OpenAPI document,
 * and try-it, which runs a request through `app.handle` so it passes the real chain
 * (key, scope, IP, rate limit, quota, meter) exactly as a program's request does.
 */
export const docsPortal = (deps: Deps, app: AnyElysia, catalog: DocsCatalog) => {
  const layout = async (v: Visitor) => (v.session ? pageSession(deps, v.session) : undefined);

  async function tryState(v: Visitor, op: OperationView, origin: string, form: TryForm, extra: Partial<TryState> = {}, sandbox?: SandboxKey): Promise<TryState> {
    const s = sandboxSession(v);
    const current = sandbox ?? (s && op.gateway ? await currentSandboxKey(deps, s) : undefined);
    return {
      op,
      form,
      credentials: credentialsFor(op, v.session !== null),
      notes: [],
      csrfToken: v.session?.csrfToken,
      signedIn: v.session !== null,
      ...samplesFor(op, form, origin, current),
      ...extra,
    };
  }

  /** Runs a checked form's request in process and describes the answer. */
  async function run(v: Visitor, op: OperationView, form: TryForm, request: Request, server: Server<unknown> | null): Promise<{ result: TryResult; notes: string[]; sandbox?: SandboxKey }> {
    const notes: string[] = [];
    let auth: Record<string, string>;
    let sandbox: SandboxKey | undefined;
    const s = sandboxSession(v);
    if (form.credential === "sandbox" && s) {
      sandbox = await sandboxKey(deps, s, requestActor(deps, request, server, s.accountId));
      if (sandbox.created) notes.push(`A sandbox key was made for this session (\`${sandbox.key.display}\`, listed on Keys as “sandbox”): 60 requests a minute, 200 calls, until it expires in 30 minutes or you log out. Test keys are never billed.`);
      auth = { authorization: `Bearer ${sandbox.secret}` };
    } else if (form.credential === "session" && v.session && v.token) {
      auth = { cookie: `${SESSION_COOKIE}=${v.token}`, "x-csrf-token": v.session.csrfToken, "sec-fetch-site": "same-origin" };
    } else {
      auth = { authorization: `Bearer ${form.key}` };
      if (form.key.startsWith(`${deps.config.keyPrefix}_live_`)) notes.push("A live key: this request is metered and counts against the key's quota as usual.");
    }
    const inner = tryRequest(op, form, requestOrigin(request, deps.config), auth, request.headers.get("user-agent"));
    const ip = clientIp(request.headers, socketAddress(server, request), deps.config.trustProxy);
    if (ip) innerRequestIp.set(inner, ip);
    const started = performance.now();
    const response = await app.handle(inner);
    const ms = performance.now() - started;
    return { result: await describeAnswer(inner, response, ms), notes, sandbox };
  }

  return new Elysia({ name: "docs-portal" })
    .use(authPlugin(deps))
    .get("/docs", async ({ request, query }) => {
      const q = typeof query.q === "string" ? query.q.slice(0, 100) : "";
      const ref = catalog.reference();
      const tags = searchReference(ref, q);
      // The address follows the search, so a reload or a shared link shows the same list.
      if (wantsFragment(request)) return htmlResponse(OperationList({ tags, q }), 200, { "hx-replace-url": q ? `/docs?q=${encodeURIComponent(q)}` : "/docs" });
      const v = await visitor(deps, request);
      return htmlResponse(DocsIndexPage({ session: await layout(v), title: ref.title, description: ref.description, version: ref.version, tags, q }), 200, cacheFor(v));
    })
    .get("/docs/getting-started", async ({ request }) => {
      const v = await visitor(deps, request);
      return htmlResponse(GettingStartedPage({ session: await layout(v), origin: requestOrigin(request, deps.config), prefix: deps.config.keyPrefix, firstOperation: "analyzeEmail" }), 200, cacheFor(v));
    })
    .get("/docs/errors", async ({ request }) => {
      const v = await visitor(deps, request);
      return htmlResponse(ErrorsPage({ session: await layout(v), errors: ERROR_DOCS, origin: requestOrigin(request, deps.config) }), 200, cacheFor(v));
    })
    .get("/docs/:operationId", async ({ request, params }) => {
      const v = await visitor(deps, request);
      const op = catalog.reference().operations.get(params.operationId);
      if (!op) return notFoundPage(v.session ?? undefined);
      const origin = requestOrigin(request, deps.config);
      const tryIt = await tryState(v, op, origin, initialForm(op, v.session !== null));
      return htmlResponse(OperationPage({ session: await layout(v), op, tryIt }), 200, cacheFor(v));
    })
    // The address a plain try-it form's answer leaves in the bar: a reload goes back to the page.
    .get("/docs/:operationId/try", ({ params }) => new Response(null, { status: 303, headers: { location: `/docs/${encodeURIComponent(params.operationId)}#try-it` } }))
    .post("/docs/:operationId/try", async ({ request, params, body, server }) => {
      const v = await visitor(deps, request);
      const op = catalog.reference().operations.get(params.operationId);
      if (!op) return notFoundPage(v.session ?? undefined);
      const fields = formFields(body);
      // Signed in, try-it acts for the session (it may mint a key or change keys): CSRF as on every form.
      const csrf = request.headers.get("x-csrf-token") ?? (typeof fields._csrf === "string" ? fields._csrf : null);
      if (!sameOrigin(request) || (v.session && !csrfMatches(v.session, csrf))) {
        return messagePage(403, "Request refused", "This form was not sent from a page of this site, or it expired. Reload the page and try again.", v.session ?? undefined);
      }
      const signedIn = v.session !== null;
      const form = readForm(op, fields, signedIn);
      const origin = requestOrigin(request, deps.config);
      const errors = formErrors(op, form, signedIn);
      let state: TryState;
      let status = 200;
      if (errors.length) {
        state = await tryState(v, op, origin, form, { errors });
        status = 422;
      } else {
        const { result, notes, sandbox } = await run(v, op, form, request, server);
        state = await tryState(v, op, origin, form, { result, notes }, sandbox);
      }
      // The pasted key is never sent back into the page.
      state.form = { ...state.form, key: "" };
      // A try-it answer is this request's alone (an API answer, a key's masked form): never cached.
      if (wantsFragment(request)) return htmlResponse(TrySection(state), status, NO_STORE);
      return htmlResponse(OperationPage({ session: await layout(v), op, tryIt: state }), status, { ...NO_STORE, "hx-push-url": `/docs/${encodeURIComponent(op.id)}` });
    })
    .post(
      "/docs/sandbox-key",
      async ({ request, session }) => {
        // The copy button's: the whole sandbox key for the samples, to this session's browser only.
        const s = sandboxSession({ session, token: sessionToken(request) });
        const current = s && (await currentSandboxKey(deps, s));
        const headers = { "content-type": "application/json", "cache-control": "no-store" };
        if (!current) return new Response(JSON.stringify({ error: "The sandbox key has expired; send a Try it request to make a new one." }), { status: 404, headers });
        return new Response(JSON.stringify({ key: current.secret, display: current.key.display }), { headers });
      },
      { page: true },
    );
};
