// reiddata show: a dataset's identities as contact sheets, filtered and paged.
"use strict";

const S = PAGE.samples;
const M = PAGE.meta;
const VIDEO = M.kind === "video";
const PER_PAGE = M.per_page; // identities per page
const MAX_SHOWN = VIDEO ? 8 : 48; // items per identity card; the rest counted
const CODES = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"; // attribute value indices
const state = { split: -1, camera: -1, view: -1, attributes: M.attributes.map(() => -1), pid: "", page: 0 };
let groups = [];
let matched = 0;

function matches(i) {
  if (state.split >= 0 && S.split[i] !== state.split) return false;
  if (state.camera >= 0 && S.camera[i] !== state.camera) return false;
  if (state.view >= 0 && S.view[i] !== state.view) return false;
  for (let a = 0; a < state.attributes.length; a++) {
    if (state.attributes[a] < 0) continue;
    const codes = S.attributes[i];
    if (!codes || CODES.indexOf(codes[a]) !== state.attributes[a]) return false;
  }
  if (state.pid && String(S.pid[i]) !== state.pid && !String(S.pid_raw[i]).includes(state.pid)) return false;
  return true;
}

// PAGE.order lists the samples by (pid, view, camera, key): one pass groups them by identity.
function regroup() {
  groups = [];
  matched = 0;
  let current = null;
  for (const i of PAGE.order) {
    if (!matches(i)) continue;
    matched++;
    if (!current || S.pid[i] !== current.pid) {
      current = { pid: S.pid[i], items: [] };
      groups.push(current);
    }
    current.items.push(i);
  }
  state.page = 0;
}

function describe(i) {
  return `${S.key[i]} | ${S.source[i]} | ${M.splits[S.split[i]]} | camera ${S.camera[i]} | ${M.views[S.view[i]]}`;
}

function item(i) {
  if (!VIDEO) return thumb(S.tile[i], describe(i));
  const strip = el("div", { class: "strip" }, el("span", { class: "name", text: S.key[i] }));
  S.frames[i].forEach((frame, k) => {
    const picked = S.picked[i][k] === 1;
    const title = `${describe(i)} | frame ${frame} of ${S.num_frames[i]}${picked ? " (sampled)" : ""}`;
    strip.append(el("div", { class: "frame" }, thumb(S.tile[i] + k, title, picked ? "picked" : null), el("span", { text: frame })));
  });
  return strip;
}

function attributeText(i) {
  if (!S.attributes[i]) return null;
  const codes = S.attributes[i];
  return M.attributes.map((a, k) => `${a.name}: ${codes[k] === "." ? "-" : a.values[CODES.indexOf(codes[k])]}`).join(", ");
}

function card(group) {
  const first = group.items[0];
  const splits = [...new Set(group.items.map((i) => M.splits[S.split[i]]))].join(", ");
  const labelled = group.items.find((i) => S.attributes[i]);
  const facts = [`${group.items.length} ${VIDEO ? "tracklets" : "images"}`, `splits: ${splits}`];
  const views = new Map();
  for (const i of group.items) {
    if (!views.has(S.view[i])) views.set(S.view[i], new Map());
    const cams = views.get(S.view[i]);
    if (!cams.has(S.camera[i])) cams.set(S.camera[i], []);
    cams.get(S.camera[i]).push(i);
  }
  const columns = el("div", { class: "views" });
  let shown = 0;
  for (const [view, cams] of [...views.entries()].sort((a, b) => a[0] - b[0])) {
    const column = el("div", { class: "view" }, el("h4", { text: M.views[view] }));
    for (const [camera, items] of [...cams.entries()].sort((a, b) => a[0] - b[0])) {
      const row = el("div", { class: "camera" }, el("span", { class: "label", text: `cam ${camera}` }));
      for (const i of items) {
        if (shown >= MAX_SHOWN) break;
        row.append(item(i));
        shown++;
      }
      column.append(row);
    }
    columns.append(column);
  }
  const more = shown < group.items.length ? el("div", { class: "more", text: `+${group.items.length - shown} more not shown` }) : null;
  const sid = labelled !== undefined && S.sid[labelled] ? M.groups.map((g, k) => `${g} ${S.sid[labelled][k]}`).join(", ") : null;
  return el(
    "article",
    { class: "identity" },
    el("h3", { text: `identity ${group.pid} (${S.pid_raw[first]})` }),
    el("div", { class: "facts", text: facts.join(" | ") }),
    labelled !== undefined ? el("div", { class: "facts", text: attributeText(labelled) }) : null,
    sid ? el("div", { class: "facts", text: `SIDs: ${sid}` }) : null,
    columns,
    more
  );
}

function render() {
  const list = document.getElementById("identities");
  list.replaceChildren();
  const pages = Math.max(1, Math.ceil(groups.length / PER_PAGE));
  state.page = Math.max(0, Math.min(state.page, pages - 1));
  for (const group of groups.slice(state.page * PER_PAGE, (state.page + 1) * PER_PAGE)) list.append(card(group));
  if (!groups.length) list.append(el("p", { class: "more", text: "Nothing matches these filters." }));
  document.getElementById("count").textContent = `${groups.length} identities, ${matched} ${VIDEO ? "tracklets" : "images"}`;
  document.getElementById("page-label").textContent = `page ${state.page + 1} / ${pages}`;
  document.getElementById("prev-page").disabled = state.page === 0;
  document.getElementById("next-page").disabled = state.page >= pages - 1;
}

function refilter() {
  regroup();
  render();
}

function controls() {
  const number = (event) => parseInt(event.target.value, 10);
  const any = [["-1", "any"]];
  const filters = [
    select("filter-split", "split", any.concat(M.splits.map((s, k) => [k, s])), (e) => { state.split = number(e); refilter(); }),
    select("filter-camera", "camera", any.concat(M.cameras.map((c) => [c, c])), (e) => { state.camera = number(e); refilter(); }),
    select("filter-view", "view", any.concat(M.views.map((v, k) => [k, v])), (e) => { state.view = number(e); refilter(); }),
  ];
  M.attributes.forEach((a, k) => {
    const options = any.concat(a.values.map((v, j) => [j, v]));
    filters.push(select(`filter-attribute-${k}`, a.name, options, (e) => { state.attributes[k] = number(e); refilter(); }));
  });
  const pid = el("input", { id: "filter-pid", type: "search", placeholder: "identity", size: 10 });
  pid.addEventListener("input", () => { state.pid = pid.value.trim(); refilter(); });
  filters.push(el("label", { class: "filter" }, "identity ", pid));
  const pager = el(
    "span",
    { class: "pager" },
    el("button", { id: "prev-page", text: "previous", onclick: () => { state.page--; render(); window.scrollTo(0, 0); } }),
    el("span", { id: "page-label" }),
    el("button", { id: "next-page", text: "next", onclick: () => { state.page++; render(); window.scrollTo(0, 0); } }),
    el("span", { id: "count", class: "count" })
  );
  return el("div", { class: "controls" }, ...filters, pager);
}

function main() {
  const app = document.getElementById("app");
  app.replaceChildren();
  app.append(el("div", { class: "overview" }, ...M.tables.map((t) => table(t.caption, t.header, t.rows))));
  if (VIDEO) {
    app.append(el("p", { class: "legend", text: M.sampler }));
  }
  const warned = warnings(M.warnings, VIDEO ? "frames" : "images");
  if (warned) app.append(warned);
  app.append(controls(), el("div", { id: "identities" }));
  refilter();
}

main();
