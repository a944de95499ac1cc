// Keyport's only script besides htmx: the copy button of a secret shown once, and local
// times. Loaded from /static so the Content-Security-Policy needs no inline script and no
// eval. The pages work without it: times then read in UTC, as the server wrote them.

document.addEventListener("click", (event) => {
  const button = event.target instanceof Element ? event.target.closest("[data-copy-target]") : null;
  if (!button) return;
  const source = document.getElementById(button.getAttribute("data-copy-target") || "");
  if (!source) return;
  const text = source.textContent || "";
  const done = () => {
    button.textContent = "Copied";
    setTimeout(() => (button.textContent = "Copy"), 2000);
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => selectText(source));
  } else {
    selectText(source);
  }
});

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
