import type { Children } from "@kitajs/html";

/** The page shell: no inline script (the CSP forbids it), htmx and the stylesheet from static/. */
export function Layout(props: { title: string; children?: Children }) {
  return (
    <>
      {"<!doctype html>"}
      <html lang="en">
        <head>
          <meta charset="utf-8" />
          <meta name="viewport" content="width=device-width, initial-scale=1" />
          <title safe>{props.title} · Keyport</title>
          <link rel="stylesheet" href="/static/app.css" />
          <script src="/static/htmx.min.js" defer></script>
        </head>
        <body>
          <header class="top">
            <a class="brand" href="/">
              Keyport
            </a>
          </header>
          <main>{props.children}</main>
        </body>
      </html>
    </>
  );
}
