import type { Config } from "../config.ts";

/** A Host value: a name or an IPv4 address, or a bracketed IPv6 address, with an optional port. */
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

/**
 * The origin a client reached this server at (`https://api.example.com`), for absolute URLs
 * in answers: problem types, the reference's code samples. The request's own scheme and
 * host (Bun builds request.url from the Host header); behind TRUST_PROXY, the proxy's
 * X-Forwarded-Proto and X-Forwarded-Host. A host that is not a host name or address
 * becomes `localhost`, so a hostile Host header cannot put markup or another path in a URL.
 */
export function requestOrigin(request: Request, config: Pick<Config, "trustProxy">): string {
  const url = request.url;
  const schemeEnd = url.indexOf("://");
  let scheme = schemeEnd > 0 ? url.slice(0, schemeEnd) : "http";
  const hostStart = schemeEnd > 0 ? schemeEnd + 3 : 0;
  const pathStart = url.indexOf("/", hostStart);
  let host = url.slice(hostStart, pathStart < 0 ? undefined : pathStart);
  if (config.trustProxy) {
    const proto = request.headers.get("x-forwarded-proto")?.split(",")[0]?.trim().toLowerCase();
    if (proto === "https" || proto === "http") scheme = proto;
    const fwdHost = request.headers.get("x-forwarded-host")?.split(",")[0]?.trim();
    if (fwdHost) host = fwdHost;
  }
  if (scheme !== "https" && scheme !== "http") scheme = "http";
  if (!HOST.test(host)) host = "localhost";
  return `${scheme}://${host}`;
}
