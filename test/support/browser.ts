import type { Harness } from "./harness.ts";

/**
 * A cookie-keeping client over `app.handle`, enough to walk the portal as a browser does:
 * it keeps `kp_session`, reads the CSRF token off pages, posts forms url-encoded, and can
 * act as htmx (HX-Request) or as a plain form.
 */
export class Browser {
  cookie: string | undefined;
  csrf: string | undefined;
  constructor(private readonly h: Harness) {}

  private remember(res: Response): void {
    const set = res.headers.get("set-cookie");
    if (set) {
      const [pair] = set.split(";");
      const value = pair!.slice(pair!.indexOf("=") + 1);
      this.cookie = value ? `kp_session=${value}` : undefined;
    }
  }

  async get(path: string, headers: Record<string, string> = {}): Promise<Response> {
    const res = await this.h.req(path, { headers: { accept: "text/html", ...(this.cookie ? { cookie: this.cookie } : {}), ...headers } });
    this.remember(res);
    return res;
  }

  /** GET a page and keep its CSRF token (the hidden `_csrf` field). */
  async page(path: string): Promise<string> {
    const res = await this.get(path);
    const html = await res.text();
    const m = /name="_csrf" value="([^"]+)"/.exec(html);
    if (m) this.csrf = m[1];
    return html;
  }

  async post(path: string, form: Record<string, string | string[]>, opts: { htmx?: boolean; csrf?: string | null; headers?: Record<string, string> } = {}): Promise<Response> {
    const body = new URLSearchParams();
    for (const [k, v] of Object.entries(form)) for (const one of Array.isArray(v) ? v : [v]) body.append(k, one);
    const token = opts.csrf === undefined ? this.csrf : opts.csrf;
    if (token && !opts.htmx) body.append("_csrf", token);
    const headers: Record<string, string> = {
      "content-type": "application/x-www-form-urlencoded",
      accept: "text/html",
      "sec-fetch-site": "same-origin",
      ...(this.cookie ? { cookie: this.cookie } : {}),
      ...(opts.htmx ? { "hx-request": "true", ...(token ? { "x-csrf-token": token } : {}) } : {}),
      ...opts.headers,
    };
    const res = await this.h.req(path, { method: "POST", headers, body: body.toString() });
    this.remember(res);
    return res;
  }

  /** Signs up (which logs in) and loads a page to pick up the CSRF token. */
  async signUp(email: string, password = "a long and unusual passphrase"): Promise<void> {
    const res = await this.post("/signup", { email, password });
    if (res.status !== 303) throw new Error(`sign-up failed: ${res.status} ${await res.text()}`);
    await this.page("/portal/keys");
  }
}
