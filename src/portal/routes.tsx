import { Elysia } from "elysia";
import type { Deps } from "../deps.ts";
import { HomePage } from "../../views/home.tsx";

export const portalRoutes = (deps: Deps) =>
  new Elysia({ name: "portal" }).get("/", ({ request, set }) => {
    set.headers["content-type"] = "text/html; charset=utf-8";
    return <HomePage origin={new URL(request.url).origin} keyPrefix={deps.config.keyPrefix} />;
  });
