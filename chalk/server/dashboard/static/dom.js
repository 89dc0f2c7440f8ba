// Small DOM and formatting helpers shared by the views: h() builds elements, the format
// functions turn the API's numbers and times into what an operator reads.

const SVG_NS = "http://www.w3.org/2000/svg";

// h("td", {class: "num"}, "3") -> <td class="num">3</td>. Attributes whose value is null,
// undefined or false are left out; children may be strings, numbers, nodes, arrays or null.
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

// The same for SVG elements.
export function s(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(node, child);
    else node.append(child instanceof Node ? child : String(child));
  }
}

// A link the page's router follows without a reload.
export function link(href, ...children) {
  return h("a", { href, "data-link": true }, ...children);
}

export const DASH = "–";

export function orDash(value) {
  return value === null || value === undefined || value === "" ? DASH : value;
}

// Seconds as the shortest unit that reads well: 42s, 5m 3s, 3h 12m, 2d 4h.
export function duration(seconds) {
  if (seconds === null || seconds === undefined) return DASH;
  const total = Math.max(0, Math.floor(seconds));
  if (total < 60) return `${total}s`;
  if (total < 3600) return `${Math.floor(total / 60)}m ${total % 60}s`;
  if (total < 86400) return `${Math.floor(total / 3600)}h ${Math.floor((total % 3600) / 60)}m`;
  return `${Math.floor(total / 86400)}d ${Math.floor((total % 86400) / 3600)}h`;
}

// An RFC 3339 time as local HH:MM:SS (with the date when it is not today).
export function clock(text) {
  if (!text) return DASH;
  const at = new Date(text);
  if (Number.isNaN(at.getTime())) return text;
  const time = at.toLocaleTimeString([], { hour12: false });
  return at.toDateString() === new Date().toDateString()
    ? time
    : `${at.toLocaleDateString()} ${time}`;
}

export function ago(text, now = Date.now()) {
  if (!text) return DASH;
  const at = new Date(text).getTime();
  return Number.isNaN(at) ? text : `${duration((now - at) / 1000)} ago`;
}

// A rate or figure with about three significant digits.
export function number(value, unit = "") {
  if (value === null || value === undefined || Number.isNaN(value)) return DASH;
  const abs = Math.abs(value);
  let text;
  if (abs === 0) text = "0";
  else if (abs >= 100) text = value.toFixed(0);
  else if (abs >= 10) text = value.toFixed(1);
  else if (abs >= 0.01) text = value.toFixed(2);
  else text = value.toPrecision(2);
  if (text.includes(".") && !text.includes("e")) text = text.replace(/\.?0+$/, "");
  return unit ? `${text} ${unit}` : text;
}

// Seconds of latency as ms or s.
export function latency(seconds) {
  if (seconds === null || seconds === undefined) return DASH;
  return seconds < 1 ? `${number(seconds * 1000)} ms` : `${number(seconds)} s`;
}

const BYTE_UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

export function bytes(value) {
  if (value === null || value === undefined) return DASH;
  let size = value;
  let unit = 0;
  while (size >= 1024 && unit < BYTE_UNITS.length - 1) {
    size /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? size : size.toFixed(size >= 100 ? 0 : 1)} ${BYTE_UNITS[unit]}`;
}

export function millicores(value) {
  if (value === null || value === undefined) return DASH;
  if (value < 1000) return `${Math.round(value)}m`;
  return value === 1000 ? "1 core" : `${number(value / 1000)} cores`;
}

// A used/limit bar with its figures as text (the bar alone is not the information).
export function usageBar(used, limit, format) {
  if (used === null || used === undefined) return h("span", { class: "muted" }, DASH);
  const text = limit ? `${format(used)} / ${format(limit)}` : format(used);
  if (!limit) return h("span", {}, text);
  const share = Math.max(0, used / limit);
  const level = share >= 0.9 ? "high" : share >= 0.7 ? "mid" : "low";
  return h(
    "div",
    { class: "usage" },
    h(
      "div",
      {
        class: `bar ${level}`,
        role: "meter",
        "aria-valuemin": 0,
        "aria-valuemax": limit,
        "aria-valuenow": used,
        "aria-label": text,
      },
      h("span", { style: `width: ${Math.min(100, share * 100).toFixed(1)}%` }),
    ),
    h("span", { class: "usage-text" }, `${text} (${Math.round(share * 100)}%)`),
  );
}

// A status word in a badge; the class colours it, the text says it.
export function statusBadge(status, broken) {
  const kind = broken ? "bad broken" : statusKind(status);
  return h("span", { class: `badge ${kind}`, "data-status": status }, status || "Unknown");
}

function statusKind(status) {
  switch (status) {
    case "Ready":
    case "Running":
      return "good";
    case "Idle":
    case "Pending":
    case "Starting":
    case "Scaling":
    case "Rolling":
    case "Terminating":
      return "busy";
    case "Normal":
      return "info";
    default:
      return "warn";
  }
}

export function tagList(tags) {
  const entries = Object.entries(tags || {});
  if (entries.length === 0) return h("span", { class: "muted" }, DASH);
  return h(
    "ul",
    { class: "tags" },
    entries.map(([key, value]) => h("li", {}, `${key}=${value}`)),
  );
}

// A table with a caption (for screen readers; shown only where `visibleCaption`), column
// headers and rows of cells.
export function table(caption, headers, rows, { visibleCaption = false, cls = "" } = {}) {
  return h(
    "table",
    { class: `data ${cls}`.trim() },
    h("caption", { class: visibleCaption ? "" : "sr-only" }, caption),
    h("thead", {}, h("tr", {}, headers.map((name) => h("th", { scope: "col" }, name)))),
    h("tbody", {}, rows),
  );
}
