// The dashboard's entry point: routes by location (no reload between views), polls the
// overview every second for the header and the groups view, and keeps one banner saying when
// the server cannot be reached or answers an error.

import { ApiFailure, getJson, Poller } from "./api.js";
import { clock, h } from "./dom.js";
import { graphView } from "./views/graph.js";
import { groupView } from "./views/group.js";
import { groupsView } from "./views/overview.js";
import { modelsView } from "./views/models.js";

const OVERVIEW_MS = 1000;

const main = document.getElementById("view");
const banner = document.getElementById("banner");
const noteBox = document.getElementById("note");
const context = document.getElementById("context");
const updated = document.getElementById("updated");

// What failed, by poller name; the banner shows the first, cleared when it succeeds again.
const failures = new Map();
let lastGood = null;
let current = null;
let overview = null;
let overviewNote = null;
let viewNote = null;

function report(name, failure) {
  if (failure === null) {
    failures.delete(name);
    lastGood = new Date();
    updated.textContent = `updated ${clock(lastGood.toISOString())}`;
  } else {
    failures.set(name, failure);
    // Not the server's doing: a bug of the page, for its console (and its browser tests).
    if (!(failure instanceof ApiFailure)) console.error(failure);
  }
  drawBanner();
}

function drawBanner() {
  const failure = failures.values().next().value;
  document.body.classList.toggle("stale", Boolean(failure));
  if (!failure) {
    banner.hidden = true;
    banner.replaceChildren();
    return;
  }
  const since = lastGood ? ` Showing what it answered at ${clock(lastGood.toISOString())}.` : "";
  let text;
  if (failure instanceof ApiFailure && failure.unreachable) {
    text = `Cannot reach the server at ${window.location.host}: retrying every second.${since}`;
  } else if (failure instanceof ApiFailure) {
    // A 4xx is about what was asked (a group deleted meanwhile): nothing older to show.
    const stale = failure.status >= 500 ? since : "";
    text = `The server answered an error${failure.status ? ` (${failure.status})` : ""}: ` +
      `${failure.message}.${stale}`;
  } else {
    text = `The page failed to show the server's answer: ${failure.message}`;
  }
  banner.hidden = false;
  banner.replaceChildren(h("strong", {}, "Not live. "), text);
}

function drawNote() {
  const text = viewNote || overviewNote;
  noteBox.hidden = !text;
  noteBox.textContent = text ? `No time series: ${text}` : "";
}

const ctx = {
  poll(name, intervalMs, tick) {
    return new Poller(intervalMs, tick, (failure) => report(name, failure)).start();
  },
  note(text) {
    viewNote = text;
    drawNote();
  },
};

function drawContext(data) {
  const parts = [data.project, `backend ${data.backend}`];
  parts.push(data.graphVersion === null || data.graphVersion === undefined
    ? "no graph applied"
    : `graph v${data.graphVersion}`);
  const source = data.series ? data.series.source : "none";
  parts.push(source === "none" ? "no time series" : `series: ${source}`);
  context.textContent = parts.join(" · ");
}

const ROUTES = [
  [/^\/$/, () => groupsView(main), "groups"],
  [/^\/groups\/([^/]+)$/, (match) => groupView(main, decodeURIComponent(match[1]), ctx), "groups"],
  [/^\/models$/, () => modelsView(main, ctx), "models"],
  [/^\/graph$/, () => graphView(main, ctx), "graph"],
];

function route() {
  if (current) current.stop();
  for (const name of ["group", "series", "models", "graph"]) failures.delete(name);
  viewNote = null;
  drawNote();
  drawBanner();
  const path = window.location.pathname;
  for (const [pattern, make, nav] of ROUTES) {
    const match = path.match(pattern);
    if (!match) continue;
    current = make(match);
    markNav(nav);
    document.title = `${current.title} · scalegroup`;
    if (overview && current.overview) current.overview(overview);
    return;
  }
  current = { stop() {} };
  markNav(null);
  main.replaceChildren(
    h("h1", {}, "Not found"),
    h("p", {}, `The dashboard has no page at ${path}. `, h("a", { href: "/", "data-link": true },
      "Back to the groups")),
  );
}

function markNav(active) {
  for (const item of document.querySelectorAll("nav [data-nav]")) {
    if (item.dataset.nav === active) item.setAttribute("aria-current", "page");
    else item.removeAttribute("aria-current");
  }
}

// Links inside the page change the view without a reload.
document.addEventListener("click", (event) => {
  const anchor = event.target.closest("a[data-link]");
  if (!anchor || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  event.preventDefault();
  if (anchor.getAttribute("href") !== window.location.pathname) {
    window.history.pushState(null, "", anchor.getAttribute("href"));
    route();
  }
  main.focus({ preventScroll: true });
});
window.addEventListener("popstate", route);

new Poller(
  OVERVIEW_MS,
  async (signal) => {
    overview = await getJson("/api/dashboard/overview", { signal });
    drawContext(overview);
    overviewNote = overview.series && overview.series.source === "none"
      ? overview.series.note || "no source"
      : null;
    drawNote();
    if (current && current.overview) current.overview(overview);
  },
  (failure) => report("overview", failure),
).start();
route();
