// Shared by every reiddata page. Dataset values reach the page only as text
// (textContent, setAttribute), never as markup: a key or attribute value holding
// "<script>" is shown as those characters.
"use strict";

const PAGE = window.REID_PAGE;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// Tile t of the sprite sheets: an <img> of its sheet, cropped by object-position.
function thumb(t, title, extraClass) {
  const grid = PAGE.grid;
  const sheet = Math.floor(t / grid.per_sheet);
  const place = t % grid.per_sheet;
  const x = (place % grid.columns) * grid.tile[0];
  const y = Math.floor(place / grid.columns) * grid.tile[1];
  const src = grid.folder + "/sheet-" + String(sheet).padStart(6, "0") + ".jpg";
  const img = el("img", { class: "thumb" + (extraClass ? " " + extraClass : ""), src: src, alt: title, title: title });
  img.width = grid.tile[0];
  img.height = grid.tile[1];
  img.style.objectPosition = `-${x}px -${y}px`;
  return img;
}

function table(caption, header, rows) {
  const head = el("tr", {}, ...header.map((h) => el("th", { text: h })));
  const body = rows.map((r) => el("tr", {}, ...r.map((c) => el("td", { text: c }))));
  return el("table", {}, el("caption", { text: caption }), el("thead", {}, head), el("tbody", {}, ...body));
}

function select(id, label, options, onchange) {
  const box = el("select", { id: id, onchange: onchange });
  for (const [value, text] of options) box.append(el("option", { value: value, text: text }));
  return el("label", { class: "filter" }, label + " ", box);
}

function warnings(list, what) {
  if (!list || !list.length) return null;
  const items = list.slice(0, 200).map((w) =>
    el("li", { text: `${w.key}${w.frame === null || w.frame === undefined ? "" : " frame " + w.frame}: ${w.error}` })
  );
  const more = list.length > 200 ? el("li", { text: `... and ${list.length - 200} more` }) : null;
  return el(
    "section",
    { class: "warnings", id: "warnings" },
    el("h2", { text: `${list.length} ${what} failed to decode (shown crossed out)` }),
    el("ul", {}, ...items, more)
  );
}
