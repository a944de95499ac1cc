import { Elysia } from "elysia";
import type { Server } from "bun";
import type { Deps } from "../deps.ts";
import { clientIp, socketAddress } from "../gateway/chain.ts";
import { MAX_BODY_BYTES } from "../plugins/body-limit.ts";
import { requestOrigin } from "../plugins/origin.ts";
import { problemResponse } from "../plugins/problem.ts";
import {
  REVOCABLE_TOKEN_TYPES,
  kickLeakProcessing,
  leakProcessingSettled,
  loadScannerKeys,
  parseRevocationRequest,
  parseScannerReports,
  presharedTokenCheck,
  readBody,
  scannerFeedback,
  verifyScannerSignature,
  type ScannerKeys,
} from "./intake.ts";
import { recordLeakReports } from "./service.ts";

/**
 * GitLab's Token Revocation API must be rate-limited: per client address, across instances.
 * GitLab calls it twice per security report it ingests (the types, then the tokens).
 */
export const REVOCATION_LIMIT = { requests: 60, windowMs: 60_000 };

const SCANNERS = {
  github: { name: "GitHub", header: "github-public-key", headers: "Github-Public-Key-Identifier and Github-Public-Key-Signature", variable: "LEAK_KEYS_GITHUB" },
  gitlab: { name: "GitLab", header: "gitlab-public-key", headers: "Gitlab-Public-Key-Identifier and Gitlab-Public-Key-Signature", variable: "LEAK_KEYS_GITLAB" },
} as const;

type Scanner = keyof typeof SCANNERS;

const REFUSED = {
  missing: (s: (typeof SCANNERS)[Scanner]) => `The report must carry ${s.headers}, signing its raw body.`,
  unknown_key: (s: (typeof SCANNERS)[Scanner]) => `The report is signed with a key this server does not know (${s.variable} lists ${s.name}'s keys).`,
  bad_signature: (s: (typeof SCANNERS)[Scanner]) => `The signature in the report does not verify against its raw body with ${s.name}'s key.`,
};

type Context = { request: Request; server: Server<unknown> | null };

/**
 * Where public-code scanners report our keys. The scanners' POSTs are authorised by their
 * signatures alone (ECDSA P-256 over the raw body, keys from LEAK_KEYS_GITHUB /
 * LEAK_KEYS_GITLAB, read and checked here at start): anything unsigned, signed by an
 * unknown key or altered is a 401 and nothing is filed. A report is filed
 * (idempotently: the same report again is the row on file) and answered at once; acting on
 * it — revoking, rotating, notifying by the account's policy — runs off the request.
 * GitLab self-managed's Token Revocation API takes a pre-shared token (LEAK_GITLAB_TOKEN).
 * Routes whose configuration is unset answer 404.
 */
export const leaksIntake = (deps: Deps) => {
  const keys: Record<Scanner, ScannerKeys | undefined> = {
    github: loadScannerKeys(deps.config.leakKeysGithub, SCANNERS.github.variable),
    gitlab: loadScannerKeys(deps.config.leakKeysGitlab, SCANNERS.gitlab.variable),
  };
  // A report answered just before SIGTERM is still acted on before the database closes.
  deps.shutdown.register("leak reports processed", () => leakProcessingSettled(deps));
  const origin = (request: Request) => requestOrigin(request, deps.config);
  // The rest of the body is never read: the connection closes after the answer (as the body limit's 413).
  const tooLarge = (request: Request) => problemResponse(origin(request), "payload_too_large", `The request body is larger than ${MAX_BODY_BYTES} bytes.`, {}, { connection: "close" });

  const scannerReport = (scanner: Scanner) => {
    const about = SCANNERS[scanner];
    return async ({ request, server }: Context) => {
      const known = keys[scanner];
      if (!known) return problemResponse(origin(request), "not_found", `This server takes no reports from ${about.name} (${about.variable} is not set).`);
      const body = await readBody(request, MAX_BODY_BYTES);
      if (body === null) return tooLarge(request);
      const signed = verifyScannerSignature(known, request.headers.get(`${about.header}-identifier`), request.headers.get(`${about.header}-signature`), body);
      if (!signed.ok) {
        deps.log.warn("leak report refused", { source: scanner, why: signed.why, ip: clientIp(request.headers, socketAddress(server, request), deps.config.trustProxy) });
        return problemResponse(origin(request), "invalid_api_key", REFUSED[signed.why](about));
      }
      const parsed = parseScannerReports(body);
      if (!parsed.ok) return problemResponse(origin(request), "invalid_request", parsed.detail, { errors: parsed.errors });
      const recorded = await recordLeakReports(
        deps,
        parsed.value.map((r) => ({ token: r.token, url: r.url, source: scanner, type: r.type })),
        { actor: scanner },
      );
      deps.log.info("leak reports filed", { source: scanner, reports: recorded.length, known: recorded.filter((r) => r.known).length, repeated: recorded.filter((r) => r.repeated).length });
      if (recorded.some((r) => !r.repeated)) kickLeakProcessing(deps);
      // Feedback is optional in GitHub's partner program: without it the answer is an empty array.
      return Response.json(deps.config.leakFeedback ? scannerFeedback(parsed.value, recorded) : []);
    };
  };

  /** The revocation API's gate: configured (else 404), within the client's rate (429), with the pre-shared token (401). */
  const revocationRefusal = async ({ request, server }: Context): Promise<Response | null> => {
    const token = deps.config.leakGitlabToken;
    if (!token) return problemResponse(origin(request), "not_found", "This server has no GitLab Token Revocation API (LEAK_GITLAB_TOKEN is not set).");
    const ip = clientIp(request.headers, socketAddress(server, request), deps.config.trustProxy) ?? "unknown";
    const decision = await deps.state.rateLimit(`leak-revocation:${ip}`, REVOCATION_LIMIT.requests, REVOCATION_LIMIT.windowMs, deps.clock.now());
    if (!decision.allowed) {
      const seconds = Math.max(1, Math.ceil(decision.retryAfterMs / 1000));
      return problemResponse(origin(request), "rate_limited", `Too many requests from this address; retry in ${seconds} s.`, {}, { "retry-after": String(seconds) });
    }
    const check = presharedTokenCheck(request.headers.get("authorization"), token);
    if (check === "missing") return problemResponse(origin(request), "missing_api_key", "The Token Revocation API needs the pre-shared token as the Authorization header.");
    if (check === "wrong") {
      deps.log.warn("leak revocation refused", { why: "wrong token", ip });
      return problemResponse(origin(request), "invalid_api_key", "The pre-shared token is not valid.");
    }
    return null;
  };

  return new Elysia({ name: "leaks-intake", prefix: "/leaks" })
    .post("/github", scannerReport("github"), { parse: "none" })
    .post("/gitlab", scannerReport("gitlab"), { parse: "none" })
    .get("/gitlab/v1/revocable_token_types", async ({ request, server }) => (await revocationRefusal({ request, server })) ?? Response.json({ types: REVOCABLE_TOKEN_TYPES }))
    .post(
      "/gitlab/v1/revoke_tokens",
      async ({ request, server }) => {
        const refused = await revocationRefusal({ request, server });
        if (refused) return refused;
        const body = await readBody(request, MAX_BODY_BYTES);
        if (body === null) return tooLarge(request);
        const parsed = parseRevocationRequest(body);
        if (!parsed.ok) return problemResponse(origin(request), "invalid_request", parsed.detail, { errors: parsed.errors });
        const recorded = await recordLeakReports(
          deps,
          parsed.value.map((t) => ({ token: t.token, url: t.location, source: "gitlab-revocation" as const, type: t.type })),
          { actor: "gitlab" },
        );
        deps.log.info("leak reports filed", { source: "gitlab-revocation", reports: recorded.length, known: recorded.filter((r) => r.known).length, repeated: recorded.filter((r) => r.repeated).length });
        if (recorded.some((r) => !r.repeated)) kickLeakProcessing(deps);
        // 204: "all submitted tokens have been accepted for eventual revocation".
        return new Response(null, { status: 204 });
      },
      { parse: "none" },
    );
};
