// The applied feature graph: its classes and features, and which features call which group.

import { getJson } from "../api.js";
import { DASH, h, link, table } from "../dom.js";
import { groupLinks } from "./models.js";

const REFRESH_MS = 5000;
const HEADERS = ["Feature", "Type", "Primary key", "Depends on", "Calls group"];

export function graphView(main, ctx) {
  const body = h("div", { class: "graph" }, h("p", { class: "loading" }, "Loading…"));
  main.replaceChildren(h("h1", {}, "Applied graph"), body);
  const poller = ctx.poll("graph", REFRESH_MS, async (signal) => {
    const data = await getJson("/api/dashboard/graph", { signal });
    body.replaceChildren(...render(data));
  });
  return { title: "Graph", stop: () => poller.stop() };
}

function render(data) {
  if (!data.applied) {
    return [h("p", { class: "empty" }, "No graph applied yet: run `chalk apply` in the project.")];
  }
  return [
    h("p", { class: "summary" }, `Version ${data.graphVersion} · ${data.classes.length} ` +
      `class${data.classes.length === 1 ? "" : "es"} · ${data.edges.length} model call` +
      `${data.edges.length === 1 ? "" : "s"}`),
    callsByGroup(data.edges),
    ...data.classes.map(classSection),
  ];
}

// Groups and the features calling them: what breaks when a group does.
function callsByGroup(edges) {
  const byGroup = new Map();
  for (const edge of edges) {
    if (!byGroup.has(edge.group)) byGroup.set(edge.group, []);
    byGroup.get(edge.group).push(edge.feature);
  }
  if (byGroup.size === 0) return h("p", { class: "muted" }, "No feature calls a model.");
  return h(
    "section",
    { class: "calls" },
    h("h2", {}, "Model calls"),
    table(
      "Which features call which scaling group",
      ["Scaling group", "Features calling it"],
      [...byGroup.entries()].sort().map(([group, features]) =>
        h(
          "tr",
          { "data-calls-group": group },
          h("th", { scope: "row" }, groupLinks([group])),
          h("td", { class: "mono" }, features.join(", ")),
        ),
      ),
    ),
  );
}

function classSection(cls) {
  return h(
    "section",
    { class: "feature-class", "data-class": cls.name },
    h("h2", {}, cls.name),
    table(
      `Features of ${cls.name}`,
      HEADERS,
      cls.features.map((feature) =>
        h(
          "tr",
          { "data-feature": `${cls.name}.${feature.name}` },
          h("th", { scope: "row", class: "mono" }, feature.name),
          h("td", { class: "type" }, feature.type),
          h("td", {}, feature.primary ? "yes" : ""),
          h("td", { class: "mono" }, feature.dependsOn && feature.dependsOn.length
            ? feature.dependsOn.join(", ") : DASH),
          h("td", {}, feature.callsGroup
            ? link(`/groups/${encodeURIComponent(feature.callsGroup)}`, feature.callsGroup)
            : ""),
        ),
      ),
    ),
  );
}
