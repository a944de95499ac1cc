/** @jsxImportSource @kitajs/html */
import { Elysia } from "elysia";
import { stringify } from "csv-stringify/sync";
import type { Deps } from "../deps.ts";
import { auditActions, listAuditEvents } from "../audit/service.ts";
import { clientIp } from "../gateway/chain.ts";
import { SCOPES, SCOPE_NAMES } from "../keys/scopes.ts";
import { createKey, getKey, listKeys, revokeKey, rollKey, updateKey } from "../keys/service.ts";
import type { KeyView } from "../keys/model.ts";
import { DomainError } from "../errors.ts";
import { STATUS } from "../plugins/problem.ts";
import { accountOverview, keyUsageReport } from "../usage/queries.ts";
import { LoginForm, LoginPage, SignupForm, SignupPage } from "../../views/accounts/auth.tsx";
import { DashboardPage } from "../../views/portal/dashboard.tsx";
import { HomePage } from "../../views/portal/home.tsx";
import { KeyDetailPage, USAGE_RANGES, UsagePanel } from "../../views/keys/key-detail.tsx";
import { KeysPage, KeysSection, type KeyFormState, type KeyFormValues } from "../../views/keys/keys.tsx";
import { AuditPage } from "../../views/audit/audit.tsx";
import { MessagePage } from "../../views/message.tsx";
import { SettingsPage } from "../../views/accounts/settings.tsx";
import { paths } from "../../views/components.tsx";
import { CompliancePage } from "../../views/rotation/compliance.tsx";
import type { PageSession } from "../../views/layout.tsx";
import { NotificationsPage } from "../../views/notify/notifications.tsx";
import { RevealPage } from "../../views/rotation/rotations.tsx";
import { listNotifications, markAllRead, unreadCount } from "../notify/service.ts";
import { getWebhook, listDeliveries, resendDelivery, setWebhook } from "../notify/webhooks.ts";
import { COMPLIANCE_CSV_COLUMNS, complianceCsvRows, complianceReport } from "../rotation/compliance.ts";
import { cancelRotation, emergencyRotation, getPolicy, listRotations, pendingReveals, revealRotationSecret, scheduleRotation, setPolicy } from "../rotation/service.ts";
import { portalGuard, sessionOf } from "./guard.ts";
import { clearedSessionCookie, safeNext, sameOrigin, sessionCookie, sessionToken } from "./http.ts";
import { htmlResponse, redirectAfterPost, wantsFragment } from "./respond.ts";
import { changePassword, logIn, signUp } from "../accounts/login.ts";
import { createSession, deleteOtherSessions, deleteSession, validateSession, type Session } from "../accounts/sessions.ts";

const scopeList = SCOPE_NAMES.map((name) => ({ name, description: SCOPES[name] }));

type Form = Record<string, unknown>;

function formObject(body: unknown): Form {
  return body && typeof body === "object" && !Array.isArray(body) ? (body as Form) : {};
}

function text(v: unknown): string {
  return typeof v === "string" ? v : Array.isArray(v) ? String(v[0] ?? "") : "";
}

function list(v: unknown): string[] {
  if (Array.isArray(v)) return v.map(String);
  return typeof v === "string" && v !== "" ? [v] : [];
}

/** A number field: empty → fallback; not a number → the text itself, so validation names it. */
function numberField(v: unknown, empty: number | null | undefined): number | string | null | undefined {
  const s = text(v).trim();
  if (s === "") return empty;
  return /^-?\d+(\.\d+)?$/.test(s) ? Number(s) : s;
}

/** Form fields → the service's input. A date means "valid through that UTC day". */
function keyInput(form: Form, create: boolean) {
  const expires = text(form.expiresAt).trim();
  const input: Record<string, unknown> = {
    name: text(form.name),
    scopes: list(form.scopes),
    rateLimit: numberField(form.rateLimit, create ? undefined : undefined),
    expiresAt: expires === "" ? null : /^\d{4}-\d{2}-\d{2}$/.test(expires) ? `${expires}T23:59:59.999Z` : expires,
    ipAllowlist: text(form.ipAllowlist)
      .split(/[\s,]+/)
      .map((s) => s.trim())
      .filter(Boolean),
    monthlyQuota: numberField(form.monthlyQuota, null),
  };
  if (create) input.environment = text(form.environment) || "live";
  for (const k of Object.keys(input)) if (input[k] === undefined) delete input[k];
  return input;
}

function formValues(form: Form): KeyFormValues {
  return {
    name: text(form.name),
    environment: text(form.environment),
    scopes: list(form.scopes),
    rateLimit: text(form.rateLimit),
    expiresAt: text(form.expiresAt),
    ipAllowlist: text(form.ipAllowlist),
    monthlyQuota: text(form.monthlyQuota),
  };
}

function viewValues(k: KeyView): KeyFormValues {
  return {
    name: k.name,
    scopes: k.scopes,
    rateLimit: k.rateLimit,
    expiresAt: k.expiresAt ? k.expiresAt.slice(0, 10) : "",
    ipAllowlist: k.ipAllowlist.join("\n"),
    monthlyQuota: k.monthlyQuota ?? "",
  };
}

/** What every page's layout needs: the account, its CSRF token, the unread count, secrets waiting. */
async function pageSession(deps: Deps, s: Session): Promise<PageSession> {
  const [unread, reveals] = await Promise.all([unreadCount(deps.db, s.accountId), pendingReveals(deps, s.accountId)]);
  return { email: s.email, csrfToken: s.csrfToken, isOperator: s.isOperator, unread, pendingReveals: reveals.map((r) => ({ id: r.id, keyId: r.keyId })) };
}

function who(deps: Deps, request: Request, socketIp: string | undefined, accountId: string) {
  return { actor: `account:${accountId}`, ip: clientIp(request.headers, socketIp, deps.config.trustProxy) ?? null, userAgent: request.headers.get("user-agent") };
}

function days(raw: unknown): number {
  const n = Number(raw);
  return (USAGE_RANGES as readonly number[]).includes(n) ? n : 7;
}

function complianceCsv(report: Awaited<ReturnType<typeof complianceReport>>): Response {
  return new Response(stringify(complianceCsvRows(report), { header: true, columns: COMPLIANCE_CSV_COLUMNS }), {
    headers: { "content-type": "text/csv; charset=utf-8", "content-disposition": 'attachment; filename="compliance.csv"', "x-content-type-options": "nosniff" },
  });
}

const notFoundPage = () => htmlResponse(MessagePage({ title: "Not found", message: "There is no such page, or it belongs to another account." }), 404);

/** Runs a lookup of the account's own object; another account's object renders the 404 page. */
async function owned<T>(fn: () => Promise<T>): Promise<T | Response> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof DomainError && err.code === "not_found") return notFoundPage();
    throw err;
  }
}

/**
 * The portal: server-rendered pages and htmx fragments over the same services the JSON API
 * uses. Every page also works as a plain request: forms POST and get a page or a 303.
 */
export const portalRoutes = (deps: Deps) => {
  async function keysSection(s: Session, form: KeyFormState, origin: string, created?: { key: KeyView; secret: string }) {
    const [keys, overview] = await Promise.all([listKeys(deps, s.accountId), accountOverview(deps.db, s.accountId, deps.clock.now())]);
    return {
      keys,
      perKeyMonth: overview.perKeyMonth,
      form,
      scopes: scopeList,
      created,
      csrf: s.csrfToken,
      origin,
      prefix: deps.config.keyPrefix,
      now: deps.clock.now(),
    };
  }

  async function settingsProps(s: Session) {
    const [session, policy, webhook, deliveries] = await Promise.all([pageSession(deps, s), getPolicy(deps, s.accountId), getWebhook(deps, s.accountId), listDeliveries(deps, s.accountId)]);
    return { session, policy, webhook, deliveries };
  }

  async function keyDetail(s: Session, id: string, range: number, edit?: KeyFormState, rolled?: { secret: string }, rotationError?: string) {
    const k = await getKey(deps, s.accountId, id);
    const [usage, rotations, policy, session] = await Promise.all([
      keyUsageReport(deps.db, k.id, range, deps.clock.now()),
      listRotations(deps, s.accountId, { keyId: k.id }),
      getPolicy(deps, s.accountId),
      pageSession(deps, s),
    ]);
    const rotation = { keyId: k.id, active: k.status === "active", rotations, csrf: s.csrfToken, now: deps.clock.now(), defaultGraceHours: policy.defaultGraceHours, error: rotationError };
    return { session, k, usage, edit: edit ?? { values: viewValues(k) }, scopes: scopeList, rolled, now: deps.clock.now(), rotation };
  }

  return (
    new Elysia({ name: "portal" })
      .use(portalGuard(deps))
      .get("/", async ({ request }) => {
        if (await validateSession(deps, sessionToken(request))) return new Response(null, { status: 303, headers: { location: paths.dashboard } });
        return htmlResponse(HomePage({ origin: new URL(request.url).origin, keyPrefix: deps.config.keyPrefix }));
      })
      .get("/login", async ({ request, query }) => {
        if (await validateSession(deps, sessionToken(request))) return new Response(null, { status: 303, headers: { location: paths.dashboard } });
        return htmlResponse(LoginPage({ next: safeNext(query.next) }));
      })
      .post("/login", async ({ request, body, server }) => {
        const form = formObject(body);
        const email = text(form.email);
        const next = safeNext(form.next);
        const render = (status: number, state: { message?: string; errors?: { field: string; message: string }[] }) =>
          htmlResponse(wantsFragment(request) ? LoginForm({ email, next, ...state }) : LoginPage({ email, next, ...state }), status);
        if (!sameOrigin(request)) return render(403, { message: "This form was not sent from this site. Reload the page and try again." });
        const meta = { ip: clientIp(request.headers, server?.requestIP(request)?.address, deps.config.trustProxy) ?? null, userAgent: request.headers.get("user-agent") };
        try {
          const account = await logIn(deps, { email, password: text(form.password) }, meta);
          const { token } = await createSession(deps, account.id, meta);
          return redirectAfterPost(request, next, { "set-cookie": sessionCookie(token, request, deps.config) });
        } catch (err) {
          if (!(err instanceof DomainError)) throw err;
          if (err.code === "too_many_attempts") return render(429, { message: err.detail });
          return render(422, { message: err.detail });
        }
      })
      .get("/signup", async ({ request }) => {
        if (await validateSession(deps, sessionToken(request))) return new Response(null, { status: 303, headers: { location: paths.dashboard } });
        return htmlResponse(SignupPage({}));
      })
      .post("/signup", async ({ request, body, server }) => {
        const form = formObject(body);
        const email = text(form.email);
        const render = (status: number, state: { message?: string; errors?: { field: string; message: string }[] }) =>
          htmlResponse(wantsFragment(request) ? SignupForm({ email, ...state }) : SignupPage({ email, ...state }), status);
        if (!sameOrigin(request)) return render(403, { message: "This form was not sent from this site. Reload the page and try again." });
        const meta = { ip: clientIp(request.headers, server?.requestIP(request)?.address, deps.config.trustProxy) ?? null, userAgent: request.headers.get("user-agent") };
        try {
          const account = await signUp(deps, { email, password: text(form.password) }, meta);
          const { token } = await createSession(deps, account.id, meta);
          return redirectAfterPost(request, paths.dashboard, { "set-cookie": sessionCookie(token, request, deps.config) });
        } catch (err) {
          if (!(err instanceof DomainError)) throw err;
          return render(422, { errors: err.errors, message: err.errors?.length ? undefined : err.detail });
        }
      })
      .post(
        "/logout",
        async (ctx) => {
          await deleteSession(deps, sessionOf(ctx).id);
          return redirectAfterPost(ctx.request, paths.login, { "set-cookie": clearedSessionCookie(ctx.request, deps.config) });
        },
        { portal: true },
      )
      .get(
        "/portal",
        async (ctx) => {
          const s = sessionOf(ctx);
          const [keys, overview] = await Promise.all([listKeys(deps, s.accountId), accountOverview(deps.db, s.accountId, deps.clock.now())]);
          return htmlResponse(
            DashboardPage({
              session: await pageSession(deps, s),
              overview,
              activeKeys: keys.filter((k) => k.status === "active").length,
              origin: new URL(ctx.request.url).origin,
              prefix: deps.config.keyPrefix,
            }),
          );
        },
        { portal: true },
      )
      .get(
        "/portal/keys",
        async (ctx) => {
          const s = sessionOf(ctx);
          const data = await keysSection(s, { values: { environment: "live", scopes: ["email:read"], rateLimit: 60 } }, new URL(ctx.request.url).origin);
          return htmlResponse(KeysPage({ ...data, session: await pageSession(deps, s) }));
        },
        { portal: true },
      )
      .post(
        "/portal/keys",
        async (ctx) => {
          const s = sessionOf(ctx);
          const form = formObject(ctx.body);
          const origin = new URL(ctx.request.url).origin;
          let created: { key: KeyView; secret: string } | undefined;
          let state: KeyFormState = { values: { environment: "live", scopes: ["email:read"], rateLimit: 60 } };
          let status = 201;
          try {
            created = await createKey(deps, s.accountId, keyInput(form, true), who(deps, ctx.request, ctx.server?.requestIP(ctx.request)?.address, s.accountId));
          } catch (err) {
            if (!(err instanceof DomainError)) throw err;
            state = { values: formValues(form), errors: err.errors ?? [{ field: "name", message: err.detail }] };
            status = 422;
          }
          const data = await keysSection(s, state, origin, created);
          // The secret is in this answer: never cached, never stored in history.
          const headers = { "cache-control": "no-store", vary: "HX-Request" };
          if (wantsFragment(ctx.request)) return htmlResponse(KeysSection(data), status, headers);
          return htmlResponse(KeysPage({ ...data, session: await pageSession(deps, s) }), status, headers);
        },
        { portal: true },
      )
      .get(
        "/portal/keys/:id",
        async (ctx) => {
          const s = sessionOf(ctx);
          const data = await owned(() => keyDetail(s, ctx.params.id, days(ctx.query.days)));
          return data instanceof Response ? data : htmlResponse(KeyDetailPage(data));
        },
        { portal: true },
      )
      .get(
        "/portal/keys/:id/usage",
        async (ctx) => {
          const s = sessionOf(ctx);
          const data = await owned(() => keyDetail(s, ctx.params.id, days(ctx.query.days)));
          if (data instanceof Response) return data;
          const headers = { vary: "HX-Request" };
          return wantsFragment(ctx.request) ? htmlResponse(UsagePanel(data), 200, headers) : htmlResponse(KeyDetailPage(data), 200, headers);
        },
        { portal: true },
      )
      .get(
        "/portal/keys/:id/usage.csv",
        async (ctx) => {
          const s = sessionOf(ctx);
          const k = await owned(() => getKey(deps, s.accountId, ctx.params.id));
          if (k instanceof Response) return k;
          const n = Math.min(366, Math.max(1, Number.parseInt(String(ctx.query.days ?? "30"), 10) || 30));
          const report = await keyUsageReport(deps.db, k.id, n, deps.clock.now());
          const csv = stringify(
            report.daily.map((d) => [d.day, d.successes, d.errors, d.avgLatencyMs ?? "", d.p95LatencyMs ?? ""]),
            { header: true, columns: ["day", "successes", "errors", "avg_latency_ms", "p95_latency_ms"] },
          );
          return new Response(csv, {
            headers: {
              "content-type": "text/csv; charset=utf-8",
              "content-disposition": `attachment; filename="usage-${k.id}-${n}d.csv"`,
              "x-content-type-options": "nosniff",
            },
          });
        },
        { portal: true },
      )
      .post(
        "/portal/keys/:id",
        async (ctx) => {
          const s = sessionOf(ctx);
          const form = formObject(ctx.body);
          try {
            await updateKey(deps, s.accountId, ctx.params.id, keyInput(form, false), who(deps, ctx.request, ctx.server?.requestIP(ctx.request)?.address, s.accountId));
          } catch (err) {
            if (err instanceof DomainError && err.code === "not_found") return notFoundPage();
            if (!(err instanceof DomainError)) throw err;
            const data = await keyDetail(s, ctx.params.id, 7, { values: formValues(form), errors: err.errors ?? [{ field: "name", message: err.detail }] });
            return htmlResponse(KeyDetailPage(data), 422, { "hx-push-url": paths.key(ctx.params.id) });
          }
          return redirectAfterPost(ctx.request, paths.key(ctx.params.id));
        },
        { portal: true },
      )
      .post(
        "/portal/keys/:id/revoke",
        async (ctx) => {
          const s = sessionOf(ctx);
          const done = await owned(() => revokeKey(deps, s.accountId, ctx.params.id, who(deps, ctx.request, ctx.server?.requestIP(ctx.request)?.address, s.accountId)));
          if (done instanceof Response) return done;
          return redirectAfterPost(ctx.request, paths.key(ctx.params.id));
        },
        { portal: true },
      )
      .post(
        "/portal/keys/:id/roll",
        async (ctx) => {
          const s = sessionOf(ctx);
          const form = formObject(ctx.body);
          const grace = numberField(form.gracePeriodHours, 24);
          let rolled: Awaited<ReturnType<typeof rollKey>>;
          try {
            rolled = await rollKey(deps, s.accountId, ctx.params.id, { gracePeriodHours: grace }, who(deps, ctx.request, ctx.server?.requestIP(ctx.request)?.address, s.accountId));
          } catch (err) {
            if (err instanceof DomainError && err.code === "not_found") return notFoundPage();
            if (!(err instanceof DomainError)) throw err;
            return htmlResponse(MessagePage({ title: "Not rolled", message: err.errors?.map((e) => `${e.field} ${e.message}`).join("; ") || err.detail }), 422);
          }
          const data = await keyDetail(s, rolled.key.id, 7, undefined, { secret: rolled.secret });
          // htmx records the address of what it swapped in: the new key's page (a reload shows
          // it without the secret), not this POST-only URL.
          return htmlResponse(KeyDetailPage(data), 200, { "cache-control": "no-store", "hx-push-url": paths.key(rolled.key.id) });
        },
        { portal: true },
      )
      .get(
        "/portal/audit",
        async (ctx) => {
          const s = sessionOf(ctx);
          const q = ctx.query as Record<string, string | undefined>;
          const filters = { action: q.action || undefined, keyId: q.keyId || undefined };
          let page: Awaited<ReturnType<typeof listAuditEvents>>;
          try {
            page = await listAuditEvents(deps.db, s.accountId, { ...filters, cursor: q.cursor || undefined });
          } catch (err) {
            if (!(err instanceof DomainError)) throw err;
            page = await listAuditEvents(deps.db, s.accountId, filters);
          }
          const [actions, keys] = await Promise.all([auditActions(deps.db, s.accountId), listKeys(deps, s.accountId)]);
          return htmlResponse(
            AuditPage({ session: await pageSession(deps, s), events: page.data, filters, actions, keys: keys.map((k) => ({ id: k.id, name: k.name })), nextCursor: page.nextCursor }),
          );
        },
        { portal: true },
      )
      .get("/portal/settings", async (ctx) => htmlResponse(SettingsPage(await settingsProps(sessionOf(ctx)))), { portal: true })
      .post(
        "/portal/settings",
        async (ctx) => {
          const s = sessionOf(ctx);
          const form = formObject(ctx.body);
          try {
            await changePassword(deps, { id: s.accountId, email: s.email }, { current: text(form.current), next: text(form.next) }, who(deps, ctx.request, ctx.server?.requestIP(ctx.request)?.address, s.accountId));
          } catch (err) {
            if (!(err instanceof DomainError)) throw err;
            return htmlResponse(SettingsPage({ ...(await settingsProps(s)), passwordErrors: err.errors }), 422, { "hx-push-url": paths.settings });
          }
          await deleteOtherSessions(deps, s.accountId, s.id);
          return htmlResponse(SettingsPage({ ...(await settingsProps(s)), passwordSaved: true }), 200, { "hx-push-url": paths.settings });
        },
        { portal: true },
      )
      .post(
        "/portal/settings/policy",
        async (ctx) => {
          const s = sessionOf(ctx);
          const form = formObject(ctx.body);
          const values = { maxKeyAgeDays: text(form.maxKeyAgeDays), defaultGraceHours: text(form.defaultGraceHours), emergencyGraceHours: text(form.emergencyGraceHours) };
          try {
            await setPolicy(
              deps,
              s.accountId,
              { maxKeyAgeDays: numberField(values.maxKeyAgeDays, 90), defaultGraceHours: numberField(values.defaultGraceHours, 72), emergencyGraceHours: numberField(values.emergencyGraceHours, 4) },
              who(deps, ctx.request, ctx.server?.requestIP(ctx.request)?.address, s.accountId),
            );
          } catch (err) {
            if (!(err instanceof DomainError)) throw err;
            return htmlResponse(SettingsPage({ ...(await settingsProps(s)), policyErrors: err.errors, policyValues: values }), 422, { "hx-push-url": paths.settings });
          }
          return htmlResponse(SettingsPage({ ...(await settingsProps(s)), policySaved: true }), 200, { "hx-push-url": paths.settings });
        },
        { portal: true },
      )
      .post(
        "/portal/settings/webhook",
        async (ctx) => {
          const s = sessionOf(ctx);
          const url = text(formObject(ctx.body).url);
          try {
            const { secret } = await setWebhook(deps, s.accountId, { url }, who(deps, ctx.request, ctx.server?.requestIP(ctx.request)?.address, s.accountId), s.isOperator);
            return htmlResponse(SettingsPage({ ...(await settingsProps(s)), newWebhookSecret: secret }), 200, { "cache-control": "no-store", "hx-push-url": paths.settings });
          } catch (err) {
            if (!(err instanceof DomainError)) throw err;
            return htmlResponse(SettingsPage({ ...(await settingsProps(s)), webhookErrors: err.errors ?? [{ field: "url", message: err.detail }], webhookUrl: url }), 422, { "hx-push-url": paths.settings });
          }
        },
        { portal: true },
      )
      .post(
        "/portal/settings/webhook/deliveries/:id/resend",
        async (ctx) => {
          const s = sessionOf(ctx);
          const done = await owned(() => resendDelivery(deps, s.accountId, ctx.params.id));
          if (done instanceof Response) return done;
          return redirectAfterPost(ctx.request, paths.settings);
        },
        { portal: true },
      )
      .get(
        "/portal/notifications",
        async (ctx) => {
          const s = sessionOf(ctx);
          const items = await listNotifications(deps.db, s.accountId);
          return htmlResponse(
            NotificationsPage({
              session: await pageSession(deps, s),
              items: items.map((n) => ({ id: n.id, event: n.event, keyId: n.keyId, data: n.data, createdAt: n.createdAt.toISOString(), readAt: n.readAt?.toISOString() ?? null })),
            }),
          );
        },
        { portal: true },
      )
      .post(
        "/portal/notifications/read",
        async (ctx) => {
          await markAllRead(deps.db, sessionOf(ctx).accountId, new Date(deps.clock.now()));
          return redirectAfterPost(ctx.request, paths.notifications);
        },
        { portal: true },
      )
      .post(
        "/portal/keys/:id/rotations",
        async (ctx) => {
          const s = sessionOf(ctx);
          const form = formObject(ctx.body);
          const at = text(form.at).trim();
          try {
            await scheduleRotation(
              deps,
              s.accountId,
              ctx.params.id,
              {
                // <input type="datetime-local"> has no zone: the form says UTC.
                at: /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}$/.test(at) ? `${at}:00Z` : at,
                gracePeriodHours: numberField(form.gracePeriodHours, undefined),
                reason: text(form.reason) || undefined,
              },
              who(deps, ctx.request, ctx.server?.requestIP(ctx.request)?.address, s.accountId),
            );
          } catch (err) {
            if (err instanceof DomainError && err.code === "not_found") return notFoundPage();
            if (!(err instanceof DomainError)) throw err;
            const data = await keyDetail(s, ctx.params.id, 7, undefined, undefined, err.errors?.map((e) => `${e.field} ${e.message}`).join("; ") || err.detail);
            return htmlResponse(KeyDetailPage(data), 422);
          }
          return redirectAfterPost(ctx.request, paths.key(ctx.params.id));
        },
        { portal: true },
      )
      .post(
        "/portal/keys/:id/rotations/emergency",
        async (ctx) => {
          const s = sessionOf(ctx);
          let result: Awaited<ReturnType<typeof emergencyRotation>>;
          try {
            result = await emergencyRotation(deps, s.accountId, ctx.params.id, { reason: text(formObject(ctx.body).reason) }, who(deps, ctx.request, ctx.server?.requestIP(ctx.request)?.address, s.accountId));
          } catch (err) {
            if (err instanceof DomainError && err.code === "not_found") return notFoundPage();
            if (!(err instanceof DomainError)) throw err;
            const data = await keyDetail(s, ctx.params.id, 7, undefined, undefined, err.errors?.map((e) => `${e.field} ${e.message}`).join("; ") || err.detail);
            return htmlResponse(KeyDetailPage(data), 422);
          }
          return htmlResponse(RevealPage({ session: await pageSession(deps, s), secret: result.secret, rotation: result.rotation }), 200, {
            "cache-control": "no-store",
            "hx-push-url": paths.key(result.rotation.newKeyId ?? result.rotation.keyId),
          });
        },
        { portal: true },
      )
      .post(
        "/portal/rotations/:id/cancel",
        async (ctx) => {
          const s = sessionOf(ctx);
          try {
            const r = await cancelRotation(deps, s.accountId, ctx.params.id, who(deps, ctx.request, ctx.server?.requestIP(ctx.request)?.address, s.accountId));
            return redirectAfterPost(ctx.request, paths.key(r.keyId));
          } catch (err) {
            if (err instanceof DomainError && err.code === "not_found") return notFoundPage();
            if (!(err instanceof DomainError)) throw err;
            return htmlResponse(MessagePage({ title: "Not cancelled", message: err.detail }), 409);
          }
        },
        { portal: true },
      )
      .post(
        "/portal/rotations/:id/reveal",
        async (ctx) => {
          const s = sessionOf(ctx);
          try {
            const { secret, rotation } = await revealRotationSecret(deps, s.accountId, ctx.params.id, who(deps, ctx.request, ctx.server?.requestIP(ctx.request)?.address, s.accountId));
            return htmlResponse(RevealPage({ session: await pageSession(deps, s), secret, rotation }), 200, {
              "cache-control": "no-store",
              "hx-push-url": paths.key(rotation.newKeyId ?? rotation.keyId),
            });
          } catch (err) {
            if (err instanceof DomainError && err.code === "not_found") return notFoundPage();
            if (!(err instanceof DomainError)) throw err;
            return htmlResponse(MessagePage({ title: "Already revealed", message: err.detail }), STATUS[err.code]);
          }
        },
        { portal: true },
      )
      .get(
        "/portal/compliance",
        async (ctx) => {
          const s = sessionOf(ctx);
          const report = await complianceReport(deps.db, deps.clock.now(), s.accountId);
          return htmlResponse(CompliancePage({ session: await pageSession(deps, s), report, now: deps.clock.now(), operator: false }));
        },
        { portal: true },
      )
      .get("/portal/compliance.csv", async (ctx) => complianceCsv(await complianceReport(deps.db, deps.clock.now(), sessionOf(ctx).accountId)), { portal: true })
      .get(
        "/admin/compliance",
        async (ctx) => {
          const s = sessionOf(ctx);
          // Not an operator: the page does not exist for you.
          if (!s.isOperator) return notFoundPage();
          const report = await complianceReport(deps.db, deps.clock.now());
          return htmlResponse(CompliancePage({ session: await pageSession(deps, s), report, now: deps.clock.now(), operator: true }));
        },
        { portal: true },
      )
      .get(
        "/admin/compliance.csv",
        async (ctx) => {
          if (!sessionOf(ctx).isOperator) return notFoundPage();
          return complianceCsv(await complianceReport(deps.db, deps.clock.now()));
        },
        { portal: true },
      )
  );
};
