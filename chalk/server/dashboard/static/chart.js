// A small SVG line chart over a fixed time window (no library): one or more lines sharing a
// y axis from 0, gaps where a value is null, a legend, and a readout of the point under the
// pointer. The figure carries data-points (how many time points it draws) for tests.

import { clock, h, s } from "./dom.js";

const WIDTH = 560;
const HEIGHT = 170;
const PAD = { left: 52, right: 10, top: 10, bottom: 22 };
const PLOT_W = WIDTH - PAD.left - PAD.right;
const PLOT_H = HEIGHT - PAD.top - PAD.bottom;

// The smallest "round" number (1, 2 or 5 times a power of ten) at or above `value`.
function niceCeiling(value) {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (value <= step * power) return step * power;
  }
  return 10 * power;
}

// The path of one line: M/L commands, a new M after each gap; a lone point is a dot.
function linePath(times, values, x, y) {
  const parts = [];
  let open = false;
  let run = 0;
  for (let i = 0; i < times.length; i += 1) {
    const value = values[i];
    if (value === null || value === undefined || Number.isNaN(value)) {
      if (open && run === 1) parts.push("l0.01 0");
      open = false;
      run = 0;
      continue;
    }
    parts.push(`${open ? "L" : "M"}${x(times[i]).toFixed(1)} ${y(value).toFixed(1)}`);
    open = true;
    run += 1;
  }
  if (open && run === 1) parts.push("l0.01 0");
  return parts.join(" ");
}

/**
 * chart({key, title, format, lines: [{label, values, cls}], times, end, windowSeconds})
 * -> <figure>. `times` are unix seconds shared by every line; `end` is the window's right edge
 * (the server's clock, so a skewed browser clock moves nothing).
 */
export function chart({ key, title, format, lines, times, end, windowSeconds }) {
  const start = end - windowSeconds;
  const x = (t) => PAD.left + ((t - start) / windowSeconds) * PLOT_W;
  let highest = 0;
  for (const line of lines) {
    for (const value of line.values) {
      if (value !== null && value !== undefined && value > highest) highest = value;
    }
  }
  const top = niceCeiling(highest);
  const y = (value) => PAD.top + PLOT_H - (value / top) * PLOT_H;
  const latest = lines.map((line) => `${line.label} ${format(lastValue(line.values))}`);

  const grid = [0, 0.5, 1].map((share) => {
    const value = top * share;
    return s(
      "g",
      { class: "tick" },
      s("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y(value), y2: y(value) }),
      s("text", { x: PAD.left - 6, y: y(value) + 4, "text-anchor": "end" }, format(value)),
    );
  });
  const minutes = Math.round(windowSeconds / 60);
  const marks = [minutes, Math.round((minutes * 2) / 3), Math.round(minutes / 3), 0].map(
    (ago) =>
      s(
        "text",
        {
          class: "axis",
          x: x(end - ago * 60),
          y: HEIGHT - 6,
          "text-anchor": ago === 0 ? "end" : ago === minutes ? "start" : "middle",
        },
        ago === 0 ? "now" : `-${ago}m`,
      ),
  );
  const paths = lines.map((line) =>
    s("path", { class: `line ${line.cls}`, d: linePath(times, line.values, x, y) }),
  );
  const cursor = s("line", {
    class: "cursor",
    x1: 0,
    x2: 0,
    y1: PAD.top,
    y2: PAD.top + PLOT_H,
    visibility: "hidden",
  });
  const readout = h("span", { class: "readout" }, latest.join(" · "));
  const svg = s(
    "svg",
    {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      role: "img",
      "aria-label": `${title} over the last ${minutes} minutes; latest: ${latest.join(", ")}`,
      preserveAspectRatio: "none",
    },
    grid,
    marks,
    paths,
    cursor,
  );
  svg.addEventListener("mousemove", (event) => {
    if (times.length === 0) return;
    const box = svg.getBoundingClientRect();
    const at = start + (((event.clientX - box.left) / box.width) * WIDTH - PAD.left) / PLOT_W
      * windowSeconds;
    const index = nearest(times, at);
    const cx = x(times[index]);
    cursor.setAttribute("x1", cx);
    cursor.setAttribute("x2", cx);
    cursor.setAttribute("visibility", "visible");
    const values = lines.map((line) => `${line.label} ${format(line.values[index])}`);
    readout.textContent = `${clock(new Date(times[index] * 1000).toISOString())}: ${values.join(" · ")}`;
  });
  svg.addEventListener("mouseleave", () => {
    cursor.setAttribute("visibility", "hidden");
    readout.textContent = latest.join(" · ");
  });

  return h(
    "figure",
    { class: "chart", "data-chart": key, "data-points": times.length },
    h("figcaption", {}, h("span", { class: "chart-title" }, title), readout),
    svg,
    lines.length > 1
      ? h(
          "ul",
          { class: "legend" },
          lines.map((line) => h("li", { class: line.cls }, line.label)),
        )
      : null,
  );
}

function lastValue(values) {
  for (let i = values.length - 1; i >= 0; i -= 1) {
    if (values[i] !== null && values[i] !== undefined) return values[i];
  }
  return null;
}

function nearest(times, at) {
  let best = 0;
  for (let i = 1; i < times.length; i += 1) {
    if (Math.abs(times[i] - at) < Math.abs(times[best] - at)) best = i;
  }
  return best;
}
