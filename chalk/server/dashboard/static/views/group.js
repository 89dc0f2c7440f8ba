// One group's page: its settings, rollout (old and new revision side by side), replicas,
// charts of the last 15 minutes (the whole group or one replica) and its events.

import { ApiFailure, getJson } from "../api.js";
import {
  bytes,
  clock,
  DASH,
  duration,
  h,
  latency,
  link,
  millicores,
  number,
  orDash,
  statusBadge,
  table,
  tagList,
  usageBar,
} from "../dom.js";
import { chart } from "../chart.js";
import { SeriesBuffer } from "../series.js";
import { boundsText, decisionText, modelText, resourcesText } from "./overview.js";

const DETAIL_MS = 1000;
const SERIES_MS = 2000;
const WHOLE_GROUP = "";

const CHARTS = [
  { key: "callsPerSecond", title: "Calls/s", lines: [["callsPerSecond", "calls/s", "c1"]] },
  { key: "rowsPerSecond", title: "Rows/s", lines: [["rowsPerSecond", "rows/s", "c2"]] },
  {
    key: "latency",
    title: "Latency",
    format: latency,
    lines: [
      ["p50Seconds", "p50", "c3"],
      ["p99Seconds", "p99", "c4"],
    ],
  },
  {
    key: "errorsPerSecond",
    title: "Errors and restarts/s",
    lines: [
      ["errorsPerSecond", "errors/s", "c5"],
      ["restartsPerSecond", "restarts/s", "c4"],
    ],
    groupOnly: ["restartsPerSecond"],
  },
];

export function groupView(main, name, ctx) {
  const base = `/api/dashboard/groups/${encodeURIComponent(name)}`;
  const buffer = new SeriesBuffer();
  let shown = WHOLE_GROUP;
  const picker = h("select", { id: "series-of" });
  picker.addEventListener("change", () => {
    shown = picker.value;
    drawCharts();
  });
  const pick = h("span", {}, h("label", { for: "series-of" }, "Show "), picker);
  const parts = {
    head: h("div", { class: "group-head" }, h("h1", {}, name)),
    settings: h("dl", { class: "settings" }),
    rollout: h("section", { class: "rollout", "aria-labelledby": "rollout-title", hidden: true }),
    replicas: h("div", { class: "scroll" }),
    charts: h("div", { class: "charts" }),
    events: h("ol", { class: "events" }),
  };
  main.replaceChildren(
    parts.head,
    parts.settings,
    parts.rollout,
    h("section", { "aria-labelledby": "replicas-title" },
      h("h2", { id: "replicas-title" }, "Replicas"), parts.replicas),
    h(
      "section",
      { "aria-labelledby": "charts-title" },
      h(
        "div",
        { class: "section-head" },
        h("h2", { id: "charts-title" }, "Last 15 minutes"),
        pick,
      ),
      parts.charts,
    ),
    h("section", { "aria-labelledby": "events-title" },
      h("h2", { id: "events-title" }, "Events"), parts.events),
  );

  // Every replica of the group (from its detail) and every one with points in the window.
  let replicaNames = [];

  function drawCharts() {
    pick.hidden = buffer.source === "none";
    const empty = chartsMissing();
    if (empty !== null) {
      parts.charts.replaceChildren(h("p", { class: "empty", "data-no-charts": true }, empty));
      return;
    }
    const data = buffer.of(shown);
    const end = buffer.end;
    parts.charts.replaceChildren(
      ...CHARTS.map((spec) =>
        chart({
          key: spec.key,
          title: shown ? `${spec.title} · ${shown}` : spec.title,
          format: spec.format || ((value) => number(value)),
          times: data.t,
          end,
          windowSeconds: buffer.windowSeconds,
          lines: spec.lines
            .filter(([field]) => !(shown && (spec.groupOnly || []).includes(field)))
            .map(([field, label, cls]) => ({ label, cls, values: data[field] })),
        }),
      ),
    );
  }

  // One line instead of the charts when they would all be empty, saying why; null: draw them.
  function chartsMissing() {
    if (buffer.source === null) return "Loading…";
    if (buffer.source === "none") return `No time series here: ${buffer.note || "no source"}`;
    if (buffer.group.t.length === 0) {
      return buffer.note || "No calls measured in the last 15 minutes.";
    }
    if (shown && !buffer.has(shown)) return `Replica ${shown}: no points yet.`;
    return null;
  }

  function drawPicker() {
    const withPoints = new Set(buffer.replicaNames());
    const names = [...new Set([...replicaNames, ...withPoints])].sort();
    const wanted = [WHOLE_GROUP, ...names];
    if (!wanted.includes(shown)) shown = WHOLE_GROUP; // its replica is gone
    const labels = wanted.map((value) => {
      if (!value) return "whole group";
      return withPoints.has(value) ? `replica ${value}` : `replica ${value} (no points yet)`;
    });
    const have = [...picker.options].map((option) => option.textContent);
    if (JSON.stringify(labels) === JSON.stringify(have)) return;
    picker.replaceChildren(
      ...wanted.map((value, i) => h("option", { value, selected: value === shown }, labels[i])),
    );
  }

  // The server knows no such group (a mistyped address, or deleted meanwhile): say so once,
  // and stop asking about it.
  function unknown() {
    detail.stop();
    if (series) series.stop();
    ctx.note(null);
    main.replaceChildren(
      h("h1", {}, "Unknown scaling group"),
      h(
        "p",
        { class: "unknown-group", "data-unknown-group": name },
        `There is no scaling group named '${name}'. `,
        link("/", "Back to the groups"),
      ),
    );
  }

  // Returns what `request` answers, or null after showing that the group is unknown.
  async function known(request) {
    try {
      return await request();
    } catch (error) {
      if (error instanceof ApiFailure && error.status === 404) {
        unknown();
        return null;
      }
      throw error;
    }
  }

  let series = null;
  const detail = ctx.poll("group", DETAIL_MS, async (signal) => {
    const data = await known(() => getJson(base, { signal }));
    if (data === null) return;
    renderDetail(parts, data);
    replicaNames = (data.replicas || []).map((replica) => replica.name);
    if (series === null) {
      // Asked only once the group is known: an unknown one costs one failed request.
      series = ctx.poll("series", SERIES_MS, pollSeries);
    } else if (buffer.source !== null) {
      drawPicker();
    }
  });

  async function pollSeries(signal) {
    const since = buffer.last === null ? "" : `?since=${buffer.last}`;
    const data = await known(() => getJson(`${base}/series${since}`, { signal }));
    if (data === null) return;
    buffer.add(data);
    ctx.note(data.source === "none" ? data.note || "no source" : null);
    drawPicker();
    drawCharts();
  }

  return {
    title: name,
    stop() {
      detail.stop();
      if (series) series.stop();
    },
  };
}

function renderDetail(parts, data) {
  const group = data.group;
  const heading = h("h1", {}, group.name, " ", statusBadge(group.status, group.broken));
  parts.head.replaceChildren(heading);
  if (group.broken) {
    parts.head.append(
      h("p", { class: "broken-reason", role: "note" }, h("strong", {}, "Broken: "),
        group.brokenReason || "no reason given"),
    );
  }
  parts.settings.replaceChildren(
    ...setting("Ready", `${orDash(group.readyReplicas)} of ${orDash(group.desiredReplicas)}`),
    ...setting("Model", modelText(group)),
    ...setting("Image", h("span", { class: "mono" }, orDash(group.image))),
    ...setting("URL", h("span", { class: "mono", title: group.url || null }, orDash(group.url))),
    ...setting("Resources", resourcesText(group.resources)),
    ...setting("Autoscaling", boundsText(group.autoscaling)),
    ...setting("Last scaling decision", decisionText(group.autoscaling)),
    ...setting("Tags", tagList(group.tags)),
  );
  renderRollout(parts.rollout, data.rollout);
  parts.replicas.replaceChildren(replicaTable(data.replicas || []));
  // Redrawn only when they change: an event opened to read its whole message stays open.
  const events = data.events || [];
  const shown = JSON.stringify(events);
  if (parts.events.dataset.shown !== shown) {
    const open = new Set(
      [...parts.events.querySelectorAll("details[open]")].map((item) => item.dataset.key),
    );
    parts.events.replaceChildren(...eventItems(events, open));
    parts.events.dataset.shown = shown;
  }
}

function setting(term, value) {
  return [h("dt", {}, term), h("dd", {}, value)];
}

function renderRollout(section, rollout) {
  if (!rollout || !rollout.revisions || rollout.revisions.length === 0) {
    section.hidden = true;
    section.replaceChildren();
    return;
  }
  section.hidden = false;
  section.replaceChildren(
    h("h2", { id: "rollout-title" }, rollout.inProgress ? "Rollout in progress" : "Rollout"),
    h(
      "div",
      { class: "revisions" },
      rollout.revisions.map((revision) => revisionCard(revision)),
    ),
  );
}

function revisionCard(revision) {
  const share = revision.replicas ? revision.readyReplicas / revision.replicas : 0;
  return h(
    "article",
    {
      class: `revision ${revision.role}`,
      "data-revision": revision.revision,
      "data-role": revision.role,
    },
    h("h3", {}, `${revision.role === "new" ? "New" : "Old"} · revision ${revision.revision}`),
    h(
      "dl",
      {},
      ...setting("Model version", orDash(revision.modelVersion)),
      ...setting("Image", h("span", { class: "mono" }, orDash(revision.image))),
      ...setting("Ready", `${revision.readyReplicas} of ${revision.replicas}`),
    ),
    h(
      "div",
      {
        class: "bar progress",
        role: "progressbar",
        "aria-valuemin": 0,
        "aria-valuemax": revision.replicas,
        "aria-valuenow": revision.readyReplicas,
        "aria-label": `revision ${revision.revision}: ${revision.readyReplicas} of ${revision.replicas} ready`,
      },
      h("span", { style: `width: ${(share * 100).toFixed(1)}%` }),
    ),
  );
}

const REPLICA_HEADERS = [
  "Replica",
  "Revision",
  "State",
  "Ready",
  "Restarts",
  "CPU",
  "Memory",
  "In flight",
  "Age",
  "Last exit",
  "Endpoint",
];

function replicaTable(replicas) {
  if (replicas.length === 0) return h("p", { class: "empty" }, "No replicas.");
  return table(
    "Replicas",
    REPLICA_HEADERS,
    replicas.map((replica) =>
      h(
        "tr",
        { "data-replica": replica.name, class: replica.ready ? null : "not-ready" },
        h("th", { scope: "row", class: "mono" }, replica.name),
        h("td", { class: "num" }, orDash(replica.revision)),
        h("td", {}, statusBadge(replica.state, false)),
        h("td", {}, replica.ready ? "yes" : "no"),
        h("td", { class: replica.restarts ? "num warn-text" : "num" }, orDash(replica.restarts)),
        h("td", {}, usageBar(replica.cpuMillicores, replica.cpuLimitMillicores, millicores)),
        h("td", {}, usageBar(replica.memoryBytes, replica.memoryLimitBytes, bytes)),
        h("td", { class: "num" }, orDash(replica.inFlight)),
        h("td", { class: "num" }, duration(replica.ageSeconds)),
        h(
          "td",
          { class: replica.lastExit ? "nowrap warn-text" : "muted" },
          replica.lastExit || DASH,
        ),
        h("td", { class: "mono nowrap" }, orDash(replica.endpoint)),
      ),
    ),
    { cls: "replicas" },
  );
}

// A message longer than this, or of several lines (a crash's log tail), shows its first line
// and opens on a click.
const SHORT_MESSAGE = 160;

function eventItems(events, open) {
  if (events.length === 0) return [h("li", { class: "empty" }, "No events.")];
  return events.map((event) => {
    const key = `${event.at} ${event.reason} ${event.message.length}`;
    return h(
      "li",
      { class: `event ${event.type === "Warning" ? "warning" : "normal"}` },
      h("time", { datetime: event.at }, clock(event.at)),
      h("span", { class: `badge ${event.type === "Warning" ? "warn" : "info"}` }, event.type),
      h("strong", {}, event.reason),
      message(event.message, key, open.has(key)),
    );
  });
}

function message(text, key, isOpen) {
  const firstLine = text.split("\n", 1)[0];
  if (text.length <= SHORT_MESSAGE && firstLine === text) {
    return h("span", { class: "message" }, text);
  }
  const summary = firstLine.length > SHORT_MESSAGE
    ? `${firstLine.slice(0, SHORT_MESSAGE)}…`
    : firstLine;
  return h(
    "details",
    { class: "message", "data-key": key, open: isOpen },
    h("summary", {}, summary),
    h("pre", {}, text),
  );
}
