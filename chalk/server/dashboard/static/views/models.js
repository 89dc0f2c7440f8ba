// Model versions: per model, each version's schemas, image, aliases and the groups running it.

import { getJson } from "../api.js";
import { clock, DASH, h, link, orDash, table } from "../dom.js";

const REFRESH_MS = 5000;
const HEADERS = ["Version", "Aliases", "Image", "Inputs", "Output", "Deterministic", "Created",
  "Groups"];

export function modelsView(main, ctx) {
  const list = h("div", { class: "models" }, h("p", { class: "loading" }, "Loading…"));
  main.replaceChildren(h("h1", {}, "Model versions"), list);
  const poller = ctx.poll("models", REFRESH_MS, async (signal) => {
    const data = await getJson("/api/dashboard/models", { signal });
    const models = data.models || [];
    list.replaceChildren(
      ...(models.length
        ? models.map(modelSection)
        : [h("p", { class: "empty" }, "No model registered yet (chalk model register).")]),
    );
  });
  return { title: "Models", stop: () => poller.stop() };
}

function modelSection(model) {
  const versions = [...(model.versions || [])].sort((a, b) => b.version - a.version);
  return h(
    "section",
    { class: "model", "data-model": model.name },
    h("h2", {}, model.name),
    table(
      `Versions of ${model.name}`,
      HEADERS,
      versions.map((version) =>
        h(
          "tr",
          { "data-version": version.version },
          h("th", { scope: "row", class: "num" }, `v${version.version}`),
          h("td", {}, aliases(version.aliases)),
          h("td", { class: "mono clip", title: version.image || "" }, orDash(version.image)),
          h("td", {}, schema(version.inputSchema)),
          h("td", {}, schema(version.outputSchema)),
          h("td", {}, version.deterministic ? "yes" : "no"),
          h("td", {}, clock(version.createdAt)),
          h("td", {}, groupLinks(version.groups)),
        ),
      ),
    ),
  );
}

function aliases(names) {
  if (!names || names.length === 0) return h("span", { class: "muted" }, DASH);
  return h("ul", { class: "tags" }, names.map((name) => h("li", {}, name)));
}

function schema(fields) {
  if (!fields || fields.length === 0) return h("span", { class: "muted" }, DASH);
  return h(
    "ol",
    { class: "schema" },
    fields.map((field) =>
      h("li", {}, h("span", { class: "mono" }, field.name), " ", h("span", { class: "type" },
        field.type)),
    ),
  );
}

export function groupLinks(names) {
  if (!names || names.length === 0) return h("span", { class: "muted" }, "none");
  return h(
    "ul",
    { class: "inline" },
    names.map((name) => h("li", {}, link(`/groups/${encodeURIComponent(name)}`, name))),
  );
}
