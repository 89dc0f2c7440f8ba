// The page's copy of one group's time series: the answers of /series?since=... appended in
// time order and trimmed to the server's window, for the whole group and each replica.

export const FIELDS = [
  "callsPerSecond",
  "rowsPerSecond",
  "p50Seconds",
  "p99Seconds",
  "errorsPerSecond",
  "restartsPerSecond", // the controller's figure: the whole group only
];

function empty() {
  const columns = { t: [] };
  for (const field of FIELDS) columns[field] = [];
  return columns;
}

export class SeriesBuffer {
  constructor() {
    this.group = empty();
    this.replicas = new Map();
    this.windowSeconds = 900;
    this.last = null; // the newest t held: the next request's `since`
    this.end = Date.now() / 1000; // the chart's right edge, on the server's clock
    this.source = null; // "local", "prometheus" or "none" (then `note` says why)
    this.note = null;
  }

  add(answer) {
    this.source = answer.source;
    this.note = answer.note;
    if (answer.windowSeconds) this.windowSeconds = answer.windowSeconds;
    const generated = Date.parse(answer.generatedAt);
    if (!Number.isNaN(generated)) this.end = generated / 1000;
    const start = this.end - this.windowSeconds;
    appendTo(this.group, answer.group, this.last);
    trim(this.group, start);
    for (const [name, columns] of Object.entries(answer.replicas || {})) {
      if (!this.replicas.has(name)) this.replicas.set(name, empty());
      appendTo(this.replicas.get(name), columns, this.last);
    }
    for (const [name, columns] of this.replicas) {
      trim(columns, start);
      if (columns.t.length === 0 && !(name in (answer.replicas || {}))) {
        this.replicas.delete(name); // gone for a whole window
      }
    }
    const times = this.group.t;
    if (times.length) this.last = times[times.length - 1];
  }

  // The columns of the whole group ("") or of one replica.
  of(name) {
    return (name && this.replicas.get(name)) || this.group;
  }

  // Whether replica `name` has points in the window.
  has(name) {
    return this.replicas.has(name) && this.replicas.get(name).t.length > 0;
  }

  replicaNames() {
    return [...this.replicas.keys()].sort();
  }
}

// Append the points of `incoming` newer than `after` (a server that ignores `since` repeats
// nothing here).
function appendTo(columns, incoming, after) {
  if (!incoming || !Array.isArray(incoming.t)) return;
  const newest = columns.t.length ? columns.t[columns.t.length - 1] : after;
  for (let i = 0; i < incoming.t.length; i += 1) {
    if (newest !== null && incoming.t[i] <= newest) continue;
    columns.t.push(incoming.t[i]);
    for (const field of FIELDS) {
      const values = incoming[field];
      columns[field].push(values && i < values.length ? values[i] : null);
    }
  }
}

function trim(columns, start) {
  let drop = 0;
  while (drop < columns.t.length && columns.t[drop] < start) drop += 1;
  if (drop === 0) return;
  for (const key of Object.keys(columns)) columns[key].splice(0, drop);
}
