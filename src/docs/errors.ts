import { ERROR_CODES, type ErrorCode } from "../errors.ts";
import { STATUS } from "../plugins/problem.ts";

/**
 * What each problem `code` means and what the caller should do, for the reference's errors
 * page (/docs/errors). Typed by the code list, so a new code cannot ship unexplained; the
 * status comes from the one code → status table the server answers with.
 */
const EXPLAINED: Record<ErrorCode, { meaning: string; action: string }> = {
  invalid_request: {
    meaning: "The request is malformed: a parameter, the query or the body fails its schema. `errors` names every failing field with a message.",
    action: "Fix the fields listed in `errors` and send again; the operation's page lists each parameter's type and constraints.",
  },
  payload_too_large: {
    meaning: "The request body is larger than the server accepts.",
    action: "Send a smaller body; split a batch into several requests of at most 100 items.",
  },
  not_found: {
    meaning: "No route matches the method and path, or the object does not exist in your account (another account's object is reported the same way).",
    action: "Check the path and the id; list the objects to find the right id.",
  },
  missing_api_key: {
    meaning: "The request carries no key.",
    action: "Send the key as `Authorization: Bearer <key>` or `X-API-Key: <key>`.",
  },
  invalid_api_key: {
    meaning: "The key is malformed, has a wrong checksum, or is unknown.",
    action: "Copy the key again from where you stored it when it was created; keys are shown only once, so create a new one if it is lost.",
  },
  key_revoked: {
    meaning: "The key was revoked, or its roll's grace period has ended.",
    action: "Use the key that replaced it, or create a new key in the portal.",
  },
  key_expired: {
    meaning: "The key's expiry date has passed.",
    action: "Create a new key, or set a later expiry before the next key expires.",
  },
  insufficient_scope: {
    meaning: "The key is valid but lacks the scope this operation needs (`requiredScope` names it).",
    action: "Add the scope to the key in the portal, or use a key that holds it.",
  },
  ip_not_allowed: {
    meaning: "The key has an IP allowlist and the request came from an address outside it.",
    action: "Call from an allowed address, or add this address or its range to the key's allowlist.",
  },
  account_suspended: {
    meaning: "An operator has suspended the account the key belongs to: none of its keys is served until the account is restored.",
    action: "Sign in to the portal to read why, and contact the operators of this service.",
  },
  product_not_in_plan: {
    meaning: "The key is valid, but the account's plan does not include the product this operation belongs to.",
    action: "See /pricing for the plans that include it, and change plan on the Billing page.",
  },
  sandbox_unavailable: {
    meaning: "A test key's calls go to the product's sandbox, and this product has none.",
    action: "Call it with a live key, or ask the product's operators for a sandbox.",
  },
  upstream_unavailable: {
    meaning: "The gateway passed the request on, but the product's server refused the connection or could not be reached.",
    action: "Retry with backoff; if it persists, the product's operators need to know (quote the X-Request-Id).",
  },
  upstream_timeout: {
    meaning: "The product's server did not start answering within the product's timeout.",
    action: "Retry later; a request that changes state may have been carried out, so check before repeating it.",
  },
  product_exists: {
    meaning: "A product with this id is already registered.",
    action: "Choose another id, or update the existing product (a new spec version) instead.",
  },
  rate_limited: {
    meaning:
      "The key has used its requests for the current minute, or the account has used its plan's requests per second across all its keys (or too many requests failed authentication from your address). The `RateLimit` header names the policies: `default` is the key's, `plan` the plan's.",
    action: "Wait the seconds in `Retry-After` (the `RateLimit` header's `t`), then retry; raise the key's limit, or move to a plan with more requests per second.",
  },
  quota_exceeded: {
    meaning: "The key's monthly quota is used up, or the account's calls this month have reached the cap of its plan (the free plan's included calls; paid plans keep serving and bill the overage).",
    action: "Wait for the next UTC month (`Retry-After`), raise the key's monthly quota, or move to a paid plan.",
  },
  temporarily_unavailable: {
    meaning: "The server cannot verify keys or count requests right now (its database or Redis is away).",
    action: "Retry after a short pause with exponential backoff; nothing was counted.",
  },
  invalid_session: {
    meaning: "The portal session in the cookie has ended.",
    action: "Log in again.",
  },
  csrf_failed: {
    meaning: "A state-changing request authenticated by a portal session did not carry the session's CSRF token, or came from another site.",
    action: "Send the `X-CSRF-Token` header from the portal page, or call the API with a key instead of the session.",
  },
  test_key_not_allowed: {
    meaning: "A test key was used on the management API, which changes an account's real keys.",
    action: "Use a live key holding `keys:manage`.",
  },
  key_replaced: {
    meaning:
      "This key is being replaced (or was reported leaked): it can no longer manage keys. A key in a roll's or a scheduled rotation's grace period may still read the management API but change nothing (keys, rotations and their secrets, the webhook, the policies); the old key of an emergency rotation, and a key a leak report flagged, may not use it at all. The data API still answers it until its grace period ends.",
    action: "Use the key that replaces it (reveal the rotation's new secret in the portal), or sign in to the portal.",
  },
  email_taken: {
    meaning: "An account with this email address already exists.",
    action: "Log in, or sign up with another address.",
  },
  invalid_credentials: {
    meaning: "The email address and password do not match an account.",
    action: "Check both and try again.",
  },
  too_many_attempts: {
    meaning: "Too many attempts: failed sign-ins or password checks for this account, sign-ups or resets from this address, or webhook test sends and resends for this account.",
    action: "Wait the seconds in `Retry-After` and try again.",
  },
  email_not_verified: {
    meaning: "The account's email address is not confirmed yet, and this server requires a confirmed address before an account holds live keys. Test keys and the reference's sandbox work meanwhile.",
    action: "Follow the link in the confirmation mail sent at sign-up, or send a new one from the portal's Keys page; then create the live key again.",
  },
  key_limit_reached: {
    meaning: "The account holds the most active keys it may.",
    action: "Revoke a key you no longer use, then create the new one.",
  },
  key_not_active: {
    meaning: "The key is revoked (or its grace period ended), so it can no longer be changed, rolled or rotated.",
    action: "Work on the key that replaced it, or create a new key.",
  },
  rotation_in_progress: {
    meaning: "The key already has a scheduled or running rotation.",
    action: "Cancel that rotation first, or wait for it to finish.",
  },
  rotation_not_cancellable: {
    meaning: "The rotation has already run or was cancelled.",
    action: "Nothing to cancel; list the key's rotations to see its state.",
  },
  rotation_failed: {
    meaning: "The rotation could not complete (the key changed state while it ran).",
    action: "Check the key's status and schedule a new rotation.",
  },
  secret_gone: {
    meaning: "The new secret of this rotation was revealed already, or its reveal window has passed; secrets are shown once.",
    action: "Rotate the key again to get a new secret.",
  },
  no_webhook: {
    meaning: "The account has no webhook endpoint.",
    action: "Set one with `PUT /api/webhook` first.",
  },
  webhook_target_refused: {
    meaning: "The webhook URL is refused: not https (except for localhost), or it points to a private or loopback address.",
    action: "Use a public https URL; an operator can allow private targets for local testing.",
  },
  internal_error: {
    meaning: "Something failed on the server's side.",
    action: "Retry later; if it persists, report the `X-Request-Id` of the answer to the operators.",
  },
};

export interface ErrorDoc {
  code: ErrorCode;
  status: number;
  meaning: string;
  action: string;
}

/** Every code, in the list's order (grouped by capability), with its status and explanation. */
export const ERROR_DOCS: ErrorDoc[] = ERROR_CODES.map((code) => ({ code, status: STATUS[code], ...EXPLAINED[code] }));

/** The errors page's anchor of a code: the fragment every problem's `type` ends with. */
export const errorAnchor = (code: string) => `/docs/errors#${code}`;
