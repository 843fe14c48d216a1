// reidmodels evaluate --report: the queries a model gets wrong, per protocol.
"use strict";

const M = PAGE.meta;
const state = { protocol: 0, kind: "all" };

function place(item) {
  return `camera ${item.camid}, ${item.view}`;
}

function hit(h) {
  const title = `rank ${h.rank}: ${h.key} (identity ${h.pid}, ${place(h)}), distance ${h.distance}: ${h.class}`;
  return el(
    "figure",
    { class: `hit ${h.class}` },
    thumb(h.tile, title),
    el("span", { text: `${h.rank}. ${h.distance.toFixed(3)}` }),
    el("span", { text: h.key }),
    el("span", { text: `id ${h.pid}, cam ${h.camid}` }),
    el("span", { text: h.view })
  );
}

function query(q) {
  const label = q.kind === "worst" ? `worst #${q.ordinal}` : `random sample #${q.ordinal}`;
  return el(
    "div",
    { class: `query kind-${q.kind}` },
    el(
      "div",
      { class: "qinfo" },
      el("div", { class: "kind", text: label }),
      thumb(q.tile, `query ${q.key} (identity ${q.pid}, ${place(q)})`),
      el("div", { text: q.key }),
      el("div", { text: `identity ${q.pid}, ${place(q)}` }),
      el("div", { text: `AP ${q.ap.toFixed(3)}, first match at rank ${q.first_match}` })
    ),
    el("div", { class: "ranked" }, ...q.hits.map(hit))
  );
}

function protocolSection(p) {
  const m = p.metrics;
  const figures = `mAP ${m.mAP.toFixed(3)} (chance ${m.chance_mAP.toFixed(3)}), Rank-1 ${m.rank1.toFixed(3)}, mINP ${m.mINP.toFixed(3)}, ${m.queries} queries`;
  const shown = p.queries.filter((q) => state.kind === "all" || q.kind === state.kind);
  return el(
    "section",
    { class: "protocol", id: "protocol" },
    el("h2", { text: `protocol ${p.name} (match by ${p.match})` }),
    el("p", { class: "sub", text: p.description }),
    el("p", { text: figures }),
    ...shown.map(query),
    shown.length ? null : el("p", { class: "more", text: "No queries of this kind." })
  );
}

function render() {
  const holder = document.getElementById("protocols");
  holder.replaceChildren(protocolSection(PAGE.protocols[state.protocol]));
}

function main() {
  const app = document.getElementById("app");
  app.replaceChildren();
  const about = `${M.method} on ${M.dataset} (version ${M.version}); ${M.worst} worst queries by AP and ${M.sample} drawn at random (seed ${M.seed}) per protocol, each with its top ${M.top_k} (${M.metric} distance). ${M.note}`;
  app.append(el("p", { text: about }));
  app.append(
    el(
      "p",
      { class: "legend" },
      el("span", { class: "correct", text: "green: same identity (a true match)" }),
      el("span", { class: "wrong", text: "red: another identity" }),
      el("span", { class: "junk", text: "dashed grey: junk (same identity, same camera or view: ignored by the protocol)" })
    )
  );
  const warned = warnings(M.warnings, "images");
  if (warned) app.append(warned);
  app.append(el("div", { class: "figures" }, ...PAGE.figures.map((f) => el("img", { src: f, alt: f }))));
  const protocols = PAGE.protocols.map((p, k) => [k, p.name]);
  const kinds = [["all", "worst and random"], ["worst", "worst only"], ["random", "random sample only"]];
  app.append(
    el(
      "div",
      { class: "controls" },
      select("protocol-select", "protocol", protocols, (e) => { state.protocol = parseInt(e.target.value, 10); render(); }),
      select("kind-select", "queries", kinds, (e) => { state.kind = e.target.value; render(); })
    )
  );
  app.append(el("div", { id: "protocols" }));
  render();
}

main();
