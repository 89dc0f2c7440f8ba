// The groups overview: one row per scaling group, broken ones first (the server sorts them)
// with their reason on a row of its own right below.

import {
  ago,
  DASH,
  h,
  link,
  number,
  orDash,
  statusBadge,
  table,
  tagList,
} from "../dom.js";

const HEADERS = [
  "Status",
  "Group",
  "Ready",
  "Model",
  "Image",
  "URL",
  "Tags",
  "Resources",
  "Autoscaling",
  "Last scaling decision",
  "Calls/s",
];

export function groupsView(main) {
  main.replaceChildren(
    h("h1", {}, "Scaling groups"),
    h("p", { class: "summary", id: "groups-summary" }, "Loading…"),
    h("div", { id: "groups-table", class: "scroll" }),
  );
  return {
    title: "Groups",
    overview(data) {
      const groups = data.groups || [];
      main.querySelector("#groups-summary").textContent = summary(groups);
      const body = groups.length
        ? table("Scaling groups, broken ones first", HEADERS, groups.flatMap(groupRows), {
            cls: "groups",
          })
        : h(
            "p",
            { class: "empty" },
            "No scaling groups yet. Create one with `chalk scaling-group create` or ",
            "ChalkClient.deploy_model_version_to_scaling_group.",
          );
      main.querySelector("#groups-table").replaceChildren(body);
    },
    stop() {},
  };
}

function summary(groups) {
  const broken = groups.filter((group) => group.broken).length;
  const ready = groups.reduce((sum, group) => sum + (group.readyReplicas || 0), 0);
  const desired = groups.reduce((sum, group) => sum + (group.desiredReplicas || 0), 0);
  const parts = [`${groups.length} group${groups.length === 1 ? "" : "s"}`];
  parts.push(broken ? `${broken} broken` : "none broken");
  parts.push(`${ready}/${desired} replicas ready`);
  return parts.join(" · ");
}

function groupRows(group) {
  const row = h(
    "tr",
    {
      "data-group": group.name,
      "data-broken": group.broken ? "true" : "false",
      class: group.broken ? "broken" : null,
    },
    h("td", {}, statusBadge(group.status, group.broken)),
    h("th", { scope: "row" }, link(`/groups/${encodeURIComponent(group.name)}`, group.name)),
    h("td", { class: "num" }, `${orDash(group.readyReplicas)}/${orDash(group.desiredReplicas)}`),
    h("td", { class: "nowrap" }, modelText(group)),
    h("td", { class: "mono clip", title: group.image || "" }, orDash(group.image)),
    h("td", { class: "mono clip url", title: group.url || null }, orDash(group.url)),
    h("td", {}, tagList(group.tags)),
    h("td", { class: "nowrap" }, resourcesText(group.resources)),
    h("td", { class: "nowrap" }, boundsText(group.autoscaling)),
    h("td", { class: "decision-cell" }, decisionText(group.autoscaling)),
    h("td", { class: "num" }, number(group.callsPerSecond)),
  );
  if (!group.broken) return [row];
  const reason = h(
    "tr",
    { class: "broken-reason", "data-reason-of": group.name },
    h(
      "td",
      { colspan: HEADERS.length },
      h("strong", {}, "Broken: "),
      group.brokenReason || "no reason given",
    ),
  );
  return [row, reason];
}

// "ner v2", or "ner v2 (v1 serves)" while an older version still serves (a rollout).
export function modelText(group) {
  if (!group.model) return h("span", { class: "muted" }, DASH);
  if (!known(group.modelVersion)) return group.model;
  const text = `${group.model} v${group.modelVersion}`;
  const serving = group.servingModelVersion;
  return known(serving) && serving !== group.modelVersion
    ? h("span", {}, text, " ", h("span", { class: "muted" }, `(v${serving} serves)`))
    : text;
}

function known(value) {
  return value !== null && value !== undefined;
}

export function resourcesText(resources) {
  if (!resources) return DASH;
  const parts = [];
  if (resources.cpu) parts.push(`cpu ${resources.cpu}`);
  if (resources.memory) parts.push(`mem ${resources.memory}`);
  if (resources.gpu) parts.push(`gpu ${resources.gpu}`);
  return parts.length ? parts.join(", ") : DASH;
}

export function boundsText(autoscaling) {
  if (!autoscaling) return DASH;
  const bounds =
    autoscaling.min === autoscaling.max
      ? `${autoscaling.min} (fixed)`
      : `${autoscaling.min}–${autoscaling.max}`;
  return autoscaling.targetCpu === null || autoscaling.targetCpu === undefined
    ? bounds
    : `${bounds}, cpu ${autoscaling.targetCpu}%`;
}

export function decisionText(autoscaling) {
  const decision = autoscaling && autoscaling.decision;
  if (!decision) return h("span", { class: "muted" }, "no decision yet");
  return h(
    "span",
    { class: "decision" },
    h("strong", {}, `${decision.desired}`),
    ` · ${decision.reason || "no reason given"}`,
    decision.at ? h("span", { class: "muted" }, ` (${ago(decision.at)})`) : null,
  );
}
