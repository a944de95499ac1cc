import type { Config } from "../config.ts";

/** A Host value: a name or an IPv4 address, or a bracketed IPv6 address, with an optional port (0-65535). */
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::(?:6553[0-5]|655[0-2]\d|65[0-4]\d{2}|6[0-4]\d{3}|[1-5]\d{4}|\d{1,4}))?$/;

/** Origins (`http://host:port/`) of request URLs that parsed: a few, the oldest replaced first. */
const parsedOrigins: string[] = [];
const PARSED_ORIGINS = 8;
let nextOrigin = 0;

/**
 * Whether a request URL names a host, that is, whether `new URL(request.url)` (which pages
 * call) can parse it. Bun builds request.url from the Host header: as the bare path when the
 * header is no host at all (`a b`, `a/b`, `a@b`), and as sent otherwise, which `new URL()`
 * refuses for `x:99999`, `%`, `[::1` or `1.2.3.999`. RFC 9112 §3.2 answers such a request
 * 400. Checked on every request, so an origin already seen costs one `startsWith` (about
 * 20 ns; `URL.canParse` costs 70-110 ns): a path and query never make a URL unparsable
 * once its scheme and host have parsed.
 */
export function namesHost(url: string): boolean {
  for (let i = 0; i < parsedOrigins.length; i++) if (url.startsWith(parsedOrigins[i]!)) return true;
  if (!URL.canParse(url)) return false;
  const schemeEnd = url.indexOf("://");
  const pathStart = schemeEnd < 0 ? -1 : url.indexOf("/", schemeEnd + 3);
  if (pathStart > 0) {
    parsedOrigins[nextOrigin] = url.slice(0, pathStart + 1);
    nextOrigin = (nextOrigin + 1) % PARSED_ORIGINS;
  }
  return true;
}

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
