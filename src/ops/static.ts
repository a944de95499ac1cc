import { Elysia } from "elysia";
import { staticFile } from "../embedded.ts";
import type { Deps } from "../deps.ts";
import { requestOrigin } from "../plugins/origin.ts";
import { problemResponse } from "../plugins/problem.ts";

const types: Record<string, string> = {
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
  ico: "image/x-icon",
  png: "image/png",
};

/** static/: a flat folder of names like `htmx.min.js`; nothing outside it is reachable. */
export const staticRoutes = (deps: Pick<Deps, "config">) =>
  new Elysia({ name: "static" }).get("/static/:name", async ({ params, request }) => {
    const name = params.name;
    const ext = /^[a-z0-9][a-z0-9.-]*\.([a-z0-9]+)$/.exec(name)?.[1];
    const path = ext && types[ext] ? staticFile(name) : undefined;
    const file = path ? Bun.file(path) : undefined;
    if (!file || !(await file.exists())) return problemResponse(requestOrigin(request, deps.config), "not_found", "No such static file.");
    return new Response(file, {
      headers: { "content-type": types[ext!]!, "cache-control": "public, max-age=3600" },
    });
  });
