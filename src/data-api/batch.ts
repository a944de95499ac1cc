import { analyzeEmail } from "./email.ts";
import { analyzeIp } from "./ip.ts";
import type { BatchItem, BatchResult } from "./model.ts";

/**
 * One item of a batch. A bad item is a value in the results, not a failed batch: an email
 * always has an analysis (`valid: false` when malformed), an IP that does not parse answers
 * the same `invalid_request` code the single-item route does.
 *
 * @example
 * runBatchItem({ type: "ip", value: "nope" })
 * // { type: "ip", value: "nope", error: { code: "invalid_request", detail: "…" } }
 */
export function runBatchItem(item: BatchItem): BatchResult {
  if (item.type === "email") return { type: "email", value: item.value, result: analyzeEmail(item.value) };
  const result = analyzeIp(item.value);
  if (result === null) {
    return { type: "ip", value: item.value, error: { code: "invalid_request", detail: "The value is not a valid IPv4 or IPv6 address." } };
  }
  return { type: "ip", value: item.value, result };
}
