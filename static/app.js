// Keyport's only script besides htmx: copy buttons (a secret shown once, code samples), and local
// times. Loaded from /static so the Content-Security-Policy needs no inline script and no
// eval. The pages work without it: times then read in UTC, as the server wrote them.

document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-copy-target]") : null;
  if (!button) return;
  const source = document.getElementById(button.getAttribute("data-copy-target") || "");
  if (!source) return;
  const shown = source.textContent || "";
  const done = (label) => {
    button.textContent = label;
    setTimeout(() => (button.textContent = "Copy"), 2000);
  };
  if (!navigator.clipboard || !window.isSecureContext) {
    selectText(source);
    return;
  }
  // A reference sample shows the sandbox key masked (kp_test_AbCd…wxyz); the copy holds the
  // whole key, asked of the server for this session only when the button is pressed.
  const mask = button.getAttribute("data-sandbox-mask");
  const text = mask && shown.includes(mask) ? wholeSandboxKey().then((key) => (key ? shown.split(mask).join(key) : shown)) : Promise.resolve(shown);
  const write =
    typeof ClipboardItem === "function" && navigator.clipboard.write
      ? // A promised item keeps the click's permission while the key is fetched (Safari needs it).
        navigator.clipboard.write([new ClipboardItem({ "text/plain": text.then((t) => new Blob([t], { type: "text/plain" })) })])
      : text.then((t) => navigator.clipboard.writeText(t));
  write.then(
    () => done("Copied"),
    () => selectText(source),
  );
});

// Copy buttons that need this script are rendered hidden; without JavaScript they would do nothing.
function showCopyButtons(root) {
  if (!root || typeof root.querySelectorAll !== "function") return;
  for (const b of root.querySelectorAll("button.copy[hidden]")) b.hidden = false;
}
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", () => showCopyButtons(document));
else showCopyButtons(document);
document.addEventListener("htmx:after:swap", () => showCopyButtons(document));

/** The session's sandbox key, whole, or null when it has expired (the sample is copied masked). */
function wholeSandboxKey() {
  const headers = JSON.parse(document.body.getAttribute("hx-headers:inherited") || "{}");
  return fetch("/docs/sandbox-key", { method: "POST", headers, credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : null))
    .then((j) => (j && typeof j.key === "string" ? j.key : null), () => null);
}

function selectText(node) {
  const range = document.createRange();
  range.selectNodeContents(node);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

// Times: the server renders <time datetime="2026-03-01T09:05:00.000Z">2026-03-01 09:05 UTC</time>
// (views/components.tsx, Time); this rewrites the text into the reader's time zone in the same
// shape, "2026-03-01 10:05 GMT+1", and keeps the UTC text in the title. Rewriting again is
// harmless: the text is always computed from the datetime attribute.
const localFormat = new Intl.DateTimeFormat(undefined, {
  year: "numeric",
  month: "2-digit",
  day: "2-digit",
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
  timeZoneName: "short",
  numberingSystem: "latn",
});

function localTime(date) {
  const part = {};
  for (const p of localFormat.formatToParts(date)) part[p.type] = p.value;
  return `${part.year}-${part.month}-${part.day} ${part.hour}:${part.minute} ${part.timeZoneName}`;
}

function localizeTimes(root) {
  if (!root || typeof root.querySelectorAll !== "function") return;
  const times = Array.from(root.querySelectorAll("time[datetime]"));
  if (root instanceof Element && root.matches("time[datetime]")) times.push(root);
  for (const time of times) {
    const iso = time.getAttribute("datetime") || "";
    // Only instants (a date and a time); a bare date has no zone to convert.
    if (!iso.includes("T")) continue;
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) continue;
    time.textContent = localTime(date);
    time.title = `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
    time.dataset.local = "";
  }
}

if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", () => localizeTimes(document));
} else {
  localizeTimes(document);
}
// htmx 4 names its events htmx:phase:action. After a swap, localise the whole document: when
// an outerHTML swap replaced the element that made the request, the event is dispatched on
// that detached element and does not reach this listener, so htmx:after:process (dispatched
// on every piece of new content, attached) is listened to as well.
document.addEventListener("htmx:after:swap", () => localizeTimes(document));
document.addEventListener("htmx:after:process", (event) => localizeTimes(event.target));
