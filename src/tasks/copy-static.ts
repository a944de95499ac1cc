import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { projectRoot } from "../embedded.ts";

/** static/htmx.min.js comes from the pinned htmx.org package, never edited by hand (postinstall). */
const from = join(projectRoot, "node_modules", "htmx.org", "dist", "htmx.min.js");
mkdirSync(join(projectRoot, "static"), { recursive: true });
copyFileSync(from, join(projectRoot, "static", "htmx.min.js"));
console.log("static/htmx.min.js copied from htmx.org");
