/** @jsxImportSource @kitajs/html */
import type { Children } from "@kitajs/html";
import { paths, Time } from "./components.tsx";

export interface PageSession {
  email: string;
  csrfToken: string;
  isOperator: boolean;
  /** Unread notifications (the count beside "Notifications"). */
  unread?: number;
  /** Rotations whose new secret waits to be revealed (the banner). */
  pendingReveals?: { id: string; keyId: string; keyLabel: string }[];
  /** Set while an operator has suspended the account: the banner says why on every page. */
  suspended?: { reason: string; since: string } | null;
}

/**
 * The page shell. No inline script or style (the CSP forbids both): htmx, its config in a
 * meta tag, and app.js come from static/. `includeIndicatorCSS: false` (htmx 4's name; htmx 2
 * called it includeIndicatorStyles) stops htmx adding its own indicator rules to the page;
 * app.css has them. With a session, <body> carries the CSRF header for
 * every htmx request (hx-headers:inherited, htmx 4's explicit inheritance) and boosts links
 * and forms, which still work as plain requests without JavaScript.
 */
export function Layout(props: { title: string; session?: PageSession; active?: string; children?: Children }) {
  const s = props.session;
  const nav = [
    ["dashboard", paths.dashboard, "Dashboard"],
    ["keys", paths.keys, "Keys"],
    ["billing", paths.billing, "Billing"],
    ["audit", paths.audit, "Audit log"],
    ["compliance", paths.compliance, "Compliance"],
    ["settings", paths.settings, "Settings"],
    ["docs", paths.docs, "API reference"],
  ] as const;
  return (
    <>
      {"<!doctype html>"}
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <meta name="viewport" content="width=device-width, initial-scale=1" />
          <meta name="htmx-config" content='{"includeIndicatorCSS":false}' />
          <title safe>{props.title} · Keyport</title>
          <link rel="icon" href="/static/favicon.svg" type="image/svg+xml" />
          <link rel="stylesheet" href="/static/app.css" />
          <script src="/static/htmx.min.js" defer></script>
          <script src="/static/app.js" defer></script>
        </head>
        <body hx-boost:inherited="true" hx-headers:inherited={s ? JSON.stringify({ "X-CSRF-Token": s.csrfToken }) : undefined}>
          <header class="top">
            <a class="brand" href={s ? paths.dashboard : paths.home}>
              Keyport
            </a>
            {s ? (
              <>
                <nav aria-label="Main">
                  {nav.map(([id, href, label]) => (
                    <a href={href} aria-current={props.active === id ? "page" : undefined}>
                      {label}
                    </a>
                  ))}
                  <a href={paths.notifications} aria-current={props.active === "notifications" ? "page" : undefined}>
                    Notifications
                    {s.unread ? (
                      <span class="count" aria-label={`${s.unread} unread`} safe>
                        {String(s.unread)}
                      </span>
                    ) : (
                      ""
                    )}
                  </a>
                  {s.isOperator ? (
                    <a href={paths.adminAccounts} aria-current={props.active === "operator" ? "page" : undefined}>
                      Operator
                    </a>
                  ) : (
                    ""
                  )}
                </nav>
                <form method="post" action={paths.logout} class="logout">
                  <input type="hidden" name="_csrf" value={s.csrfToken} />
                  <span class="who" safe>
                    {s.email}
                  </span>
                  <button type="submit" class="link">
                    Log out
                  </button>
                </form>
              </>
            ) : (
              <nav aria-label="Account">
                <a href={paths.pricing} aria-current={props.active === "pricing" ? "page" : undefined}>
                  Pricing
                </a>
                <a href={paths.docs} aria-current={props.active === "docs" ? "page" : undefined}>
                  API reference
                </a>
                <a href={paths.login}>Log in</a>
                <a href={paths.signup}>Sign up</a>
              </nav>
            )}
          </header>
          <main id="main">
            {s?.suspended ? (
              <div class="banner banner-suspended" role="alert">
                <p>
                  <strong>This account is suspended</strong> (since <Time iso={s.suspended.since} />
                  ). Its keys answer 403 <code>account_suspended</code> until an operator lifts the suspension; you can still see and manage them here.
                </p>
                <p safe>{`Reason: ${s.suspended.reason}`}</p>
              </div>
            ) : (
              ""
            )}
            {s?.pendingReveals?.length ? (
              <div class="banner" role="alert">
                <strong>A rotated key's new secret is waiting for you.</strong> Reveal it once and update your integration before the old key stops working.
                {s.pendingReveals.map((r) => (
                  <form method="post" action={paths.reveal(r.id)}>
                    <input type="hidden" name="_csrf" value={s.csrfToken} />
                    <button type="submit" safe>
                      {`Reveal the new secret (replaces ${r.keyLabel})`}
                    </button>
                  </form>
                ))}
              </div>
            ) : (
              ""
            )}
            {props.children}
          </main>
        </body>
      </html>
    </>
  );
}
