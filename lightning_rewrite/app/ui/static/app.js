// The Copy-Paste-Context page: a grid of samples to paint on, and buttons that send the painted
// masks to the server (which holds the model, the selections and the edits).
"use strict";

const $ = (id) => document.getElementById(id);
const COLORS = { paint: [0, 160, 255, 150], object: [40, 220, 60, 110], paste: [255, 60, 60, 110], context: [255, 215, 30, 110] };
let S = null;                      // the server's state
let W = 64, H = 64;                // image size
const masks = new Map();           // sample index -> Uint8Array(H*W) of painted pixels
let view = { kind: "page", start: Number(localStorage.getItem("lr.start") || 0) };
let active = null;                 // the sample painted last
let mode = "paint";                // or "paste": the next click places the object
let showOriginal = false, showMatches = false;
let polling = null;

function say(text, error = false) {
  const m = $("message");
  m.textContent = text;
  m.className = error ? "error" : "";
}

async function api(path, body) {
  const options = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({ error: `${path}: the server answered ${response.status}` }));
  if (!response.ok || data.error) { say(data.error || `${path} failed`, true); throw new Error(data.error); }
  return data;
}

// -- masks -----------------------------------------------------------------------------------

function maskOf(index) {
  if (!masks.has(index)) masks.set(index, new Uint8Array(W * H));
  return masks.get(index);
}

function dab(mask, x, y, size, value) {
  const r = size / 2, r2 = r * r;
  const px = Math.floor(x), py = Math.floor(y);
  if (px >= 0 && px < W && py >= 0 && py < H) mask[py * W + px] = value;
  for (let j = Math.floor(y - r); j <= Math.ceil(y + r); j++) {
    for (let i = Math.floor(x - r); i <= Math.ceil(x + r); i++) {
      if (i < 0 || j < 0 || i >= W || j >= H) continue;
      const dx = i + 0.5 - x, dy = j + 0.5 - y;
      if (dx * dx + dy * dy <= r2) mask[j * W + i] = value;
    }
  }
}

function stroke(index, from, to) {
  const mask = maskOf(index), size = Number($("brush").value), value = $("eraser").checked ? 0 : 1;
  const steps = Math.max(1, Math.ceil(Math.hypot(to[0] - from[0], to[1] - from[1]) * 2));
  for (let s = 0; s <= steps; s++) {
    dab(mask, from[0] + (to[0] - from[0]) * s / steps, from[1] + (to[1] - from[1]) * s / steps, size, value);
  }
}

function maskURL(mask) {
  const c = document.createElement("canvas");
  c.width = W; c.height = H;
  const ctx = c.getContext("2d"), img = ctx.createImageData(W, H);
  for (let p = 0; p < W * H; p++) {
    const v = mask[p] ? 255 : 0;
    img.data.set([v, v, v, 255], p * 4);
  }
  ctx.putImageData(img, 0, 0);
  return c.toDataURL("image/png");
}

function decodeMask(url) {
  return new Promise((resolve) => {
    const img = new Image();
    img.onload = () => {
      const c = document.createElement("canvas");
      c.width = W; c.height = H;
      const ctx = c.getContext("2d");
      ctx.drawImage(img, 0, 0, W, H);
      const d = ctx.getImageData(0, 0, W, H).data, m = new Uint8Array(W * H);
      for (let p = 0; p < W * H; p++) m[p] = d[p * 4] > 127 ? 1 : 0;
      resolve(m);
    };
    img.src = url;
  });
}

function tint(canvas, layers) {
  const ctx = canvas.getContext("2d"), img = ctx.createImageData(W, H);
  for (const [mask, color] of layers) {
    for (let p = 0; p < W * H; p++) if (mask[p]) img.data.set(color, p * 4);
  }
  ctx.putImageData(img, 0, 0);
}

// -- the grid ----------------------------------------------------------------------------------

function indices() {
  if (view.kind === "search") return view.indices;
  return Array.from({ length: S.page }, (_, k) => view.start + k).filter((i) => i <= S.max_index);
}

function imageURL(index) {
  return `/api/image/${index}?original=${showOriginal ? 1 : 0}&matches=${showMatches ? 1 : 0}&s=${S.state}&c=${S.context.length}`;
}

async function drawGrid() {
  const shown = indices();
  const grid = $("grid");
  grid.innerHTML = "";
  $("range").textContent = view.kind === "search" ? `best ${shown.length} of ${view.searched} searched`
    : `samples ${shown[0]} – ${shown[shown.length - 1]}`;
  $("view-label").textContent = showOriginal ? "unedited (original)" : (S.stack.length ? `edited (${S.stack.length} edit${S.stack.length > 1 ? "s" : ""})` : "unedited");
  const selections = await selectionMasks();
  for (const [k, index] of shown.entries()) {
    const cell = document.createElement("figure");
    cell.className = "cell" + (index === active ? " active" : "");
    cell.dataset.index = index;
    const score = view.kind === "search" ? ` · match ${view.scores[k]}` : "";
    cell.innerHTML = `<div class="stack"><img class="sample" alt="sample ${index}"><canvas class="overlay" width="${W}" height="${H}"></canvas>` +
      `<canvas class="paint" width="${W}" height="${H}"></canvas></div><figcaption>#${index}${score}</figcaption>`;
    grid.appendChild(cell);
    tint(cell.querySelector(".overlay"), selections.filter((s) => s.sample === index).map((s) => [s.mask, COLORS[s.kind]]));
    repaint(index);
    wire(cell, index);
  }
  if (!showMatches) await api("/api/render", { indices: shown, original: showOriginal }).catch(() => null);
  const loads = [];
  for (const cell of grid.children) {
    const img = cell.querySelector("img");
    loads.push(new Promise((resolve) => { img.onload = img.onerror = resolve; }));
    img.src = imageURL(Number(cell.dataset.index));
  }
  await Promise.all(loads);
  grid.dataset.state = `${S.state}:${showOriginal ? 1 : 0}:${showMatches ? 1 : 0}`;
  await drawGoal();
  grid.dataset.first = shown[0];  // drawn: the tests wait for it
}

async function selectionMasks() {
  const out = [];
  const add = async (sel, kind) => { if (sel) out.push({ sample: sel.sample, kind, mask: await decodeMask(sel.mask) }); };
  await add(S.object, "object");
  await add(S.paste, "paste");
  for (const c of S.context) await add(c, "context");
  return out;
}

function repaint(index) {
  const cell = document.querySelector(`.cell[data-index="${index}"]`);
  if (cell) tint(cell.querySelector(".paint"), masks.has(index) ? [[masks.get(index), COLORS.paint]] : []);
}

function wire(cell, index) {
  const canvas = cell.querySelector(".paint");
  let last = null;
  const at = (e) => [e.offsetX / canvas.clientWidth * W, e.offsetY / canvas.clientHeight * H];
  canvas.addEventListener("pointerdown", async (e) => {
    if (mode === "paste") { await placePaste(index, at(e)); return; }
    canvas.setPointerCapture(e.pointerId);
    last = at(e);
    stroke(index, last, last);
    setActive(index);
    repaint(index);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (last === null) return;
    const p = at(e);
    stroke(index, last, p);
    last = p;
    repaint(index);
  });
  const end = () => { last = null; };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
}

function setActive(index) {
  active = index;
  for (const c of document.querySelectorAll(".cell")) c.classList.toggle("active", Number(c.dataset.index) === index);
}

// The goal, drawn over the paste: the copied object's pixels where it will be pasted.
async function drawGoal() {
  if (!S.object || !S.paste) return;
  const cell = document.querySelector(`.cell[data-index="${S.paste.sample}"]`);
  if (!cell) return;
  const [om, pm] = [await decodeMask(S.object.mask), await decodeMask(S.paste.mask)];
  const box = (m) => { let t = H, l = W, b = -1, r = -1; for (let p = 0; p < W * H; p++) if (m[p]) { const y = Math.floor(p / W), x = p % W; t = Math.min(t, y); b = Math.max(b, y); l = Math.min(l, x); r = Math.max(r, x); } return [t, l]; };
  const [ot, ol] = box(om), [pt, pl] = box(pm);
  const source = await new Promise((resolve) => { const i = new Image(); i.onload = () => resolve(i); i.src = `/api/image/${S.object.sample}?original=1&s=${S.state}`; });
  const c = document.createElement("canvas"); c.width = W; c.height = H;
  const sctx = c.getContext("2d"); sctx.drawImage(source, 0, 0);
  const src = sctx.getImageData(0, 0, W, H).data;
  const overlay = cell.querySelector(".overlay"), ctx = overlay.getContext("2d"), img = ctx.getImageData(0, 0, W, H);
  for (let p = 0; p < W * H; p++) {
    if (!pm[p]) continue;
    const y = Math.floor(p / W) - pt + ot, x = p % W - pl + ol;
    if (y < 0 || x < 0 || y >= H || x >= W) continue;
    img.data.set([src[(y * W + x) * 4], src[(y * W + x) * 4 + 1], src[(y * W + x) * 4 + 2], 230], p * 4);
  }
  ctx.putImageData(img, 0, 0);
}

// -- the trays and settings ----------------------------------------------------------------

function thumb(sel) {
  return `<span class="thumb"><img src="/api/image/${sel.sample}?original=1" alt="sample ${sel.sample}">` +
    `<canvas width="${W}" height="${H}"></canvas></span>`;
}

async function drawTrays() {
  const tray = $("copy-tray");
  tray.innerHTML = S.object ? `${thumb(S.object)} #${S.object.sample}${S.paste ? ` → #${S.paste.sample}` : " (not pasted)"}` : "<em>nothing copied</em>";
  if (S.object) tint(tray.querySelector("canvas"), [[await decodeMask(S.object.mask), COLORS.object]]);
  const list = $("context-tray");
  list.innerHTML = "";
  for (const [k, c] of S.context.entries()) {
    const li = document.createElement("li");
    li.innerHTML = `${thumb(c)} #${c.sample} <button class="show">show</button> <button class="remove">remove</button>`;
    tint(li.querySelector("canvas"), [[await decodeMask(c.mask), COLORS.context]]);
    li.querySelector(".show").onclick = () => { view = { kind: "page", start: c.sample }; refresh(); };
    li.querySelector(".remove").onclick = async () => { await api("/api/context/remove", { k }); await refresh(); };
    list.appendChild(li);
  }
  $("stack").innerHTML = S.stack.map((e) => `<li>${e.kind || "edit"}: ${e.label}${e.steps ? ` (${e.steps} steps)` : ""}</li>`).join("") || "<li><em>none</em></li>";
}

function drawSettings() {
  const fill = (select, options, value) => {
    select.innerHTML = options.map((o) => `<option value="${o.value}">${o.label}</option>`).join("");
    select.value = value;
  };
  fill($("layer"), S.layers.map((l) => ({ value: l.name, label: `${l.alias || l.name} (${l.resolution})` })), S.settings.layer);
  fill($("method"), S.methods.map((m) => ({ value: m, label: m })), S.settings.method);
  fill($("solver"), S.solvers.filter((s) => s !== "official").map((s) => ({ value: s, label: s })), S.settings.solver);
  for (const k of ["rank", "steps", "units"]) $(k).value = S.settings[k];
}

async function sendSettings() {
  const body = {};
  for (const k of ["layer", "method", "solver"]) body[k] = $(k).value;
  for (const k of ["rank", "steps", "units"]) body[k] = Number($(k).value);
  try { await api("/api/settings", body); say("settings changed"); } catch (e) { /* said */ }
  await refresh();
}

// Redraws run one after another (a click during a redraw waits for it); the grid's data-first is
// removed at once and set again when the grid is drawn.
let drawing = Promise.resolve();
function refresh() {
  delete $("grid").dataset.first;
  drawing = drawing.catch(() => null).then(redraw);
  return drawing;
}

async function redraw() {
  S = await api("/api/state");
  [H, W] = S.image_size;
  localStorage.setItem("lr.start", view.start);
  drawSettings();
  await drawTrays();
  await drawGrid();
}

// -- actions ---------------------------------------------------------------------------------

function painted() {
  if (active === null) {
    say("paint a region on a sample first (the last sample painted is the one used)", true);
    return null;
  }
  return { sample: active, mask: maskURL(maskOf(active)) };  // the server refuses an empty one
}

async function placePaste(index, [x, y]) {
  mode = "paste-sent";
  $("paste").classList.remove("armed");
  mode = "paint";
  try {
    await api("/api/paste", { sample: index, x: Math.floor(x), y: Math.floor(y) });
  } catch (e) { await refresh(); return; }
  await refresh();
  say(`pasted on #${index}: the goal is shown over it; add context, then Execute`);
}

async function run(kind) {
  try { await api("/api/execute", { kind }); } catch (e) { return; }
  $("progress").hidden = false;
  say(kind === "erase" ? "erasing…" : "executing…");
  await new Promise((resolve) => {
    polling = setInterval(async () => {
      const p = await api("/api/progress");
      $("bar").max = p.steps; $("bar").value = p.step;
      $("loss").textContent = `step ${p.step} / ${p.steps}` + (p.loss !== null ? `, loss ${p.loss.toFixed(4)}` : "");
      if (!p.running) {
        clearInterval(polling);
        if (p.error) say(p.error, true); else say(`edit done in ${p.seconds} s (${p.step} steps): every sample follows the new rule`);
        resolve();
      }
    }, 200);
  });
  showOriginal = false;
  await refresh();
  $("grid").dataset.done = String(Number($("grid").dataset.done || 0) + 1);
}

const actions = {
  copy: async () => { const p = painted(); if (!p) return; await api("/api/copy", p); masks.delete(p.sample); say(`copied from #${p.sample}: press Paste, then click where it goes`); await refresh(); },
  paste: () => {
    if (!S.object) { say("Paste needs a copied object: paint a region on one sample and press Copy first", true); return; }
    mode = "paste"; $("paste").classList.add("armed"); say("click on a sample where the object goes");
  },
  "add-context": async () => { const p = painted(); if (!p) return; await api("/api/context", p); masks.delete(p.sample); say(`context region added from #${p.sample}`); await refresh(); },
  search: async () => {
    const start = view.kind === "page" ? view.start : 0;
    const r = await api("/api/search", { start, n: S.search });
    view = { kind: "search", indices: r.indices, scores: r.scores, searched: r.searched };
    say(`searched ${r.searched} samples from #${start} in ${r.seconds} s: the best matches of the context`);
    await refresh();
  },
  matches: async () => {
    if (!showMatches && !S.context.length) { say("Show Context Matches needs context: paint regions and add them to Context", true); return; }
    showMatches = !showMatches; $("matches").textContent = showMatches ? "Hide Context Matches" : "Show Context Matches"; await refresh();
  },
  "new-rule": async () => { await api("/api/clear", {}); await refresh(); say("selections cleared: paint the next rule"); },
  execute: () => run("copy"),
  erase: () => run("erase"),
  toggle: async () => { showOriginal = !showOriginal; await refresh(); },
  revert: async () => { await api("/api/revert", {}); await refresh(); say("reverted the last edit"); },
  save: async () => { const r = await api("/api/save", {}); say(`saved ${r.files.join(", ")}`); },
  clear: () => { if (active !== null) { masks.delete(active); repaint(active); } },
  prev: () => { view = { kind: "page", start: Math.max(0, (view.kind === "page" ? view.start : 0) - S.page) }; refresh(); },
  next: () => { view = { kind: "page", start: (view.kind === "page" ? view.start : 0) + S.page }; refresh(); },
  go: () => {
    const i = Number($("jump").value);
    if (!Number.isInteger(i) || i < 0 || i > S.max_index) { say(`jump to a sample index 0 … ${S.max_index}`, true); return; }
    view = { kind: "page", start: i }; refresh();
  },
};

for (const [id, action] of Object.entries(actions)) {
  $(id).addEventListener("click", async () => { try { await action(); } catch (e) { /* said */ } });
}
for (const id of ["layer", "method", "solver", "rank", "steps", "units"]) $(id).addEventListener("change", sendSettings);
$("brush").addEventListener("input", () => { $("brush-size").textContent = $("brush").value; });
$("load").addEventListener("change", async () => {
  const file = $("load").files[0];
  if (!file) return;
  try {
    const r = await fetch(`/api/load?name=${encodeURIComponent(file.name)}`, { method: "POST", body: file });
    const data = await r.json();
    if (!r.ok) say(data.error, true); else say(data.message);
  } catch (e) { say(`could not send ${file.name}: ${e}`, true); }
  $("load").value = "";
  await refresh().catch(() => null);
});

(async () => {
  try {
    S = await api("/api/state");
    [H, W] = S.image_size;
    if (!localStorage.getItem("lr.start")) view.start = S.start;
    $("recipe").textContent = S.recipe;
    await refresh();
    say("paint a region, Copy it, Paste it on another sample, add Context, Execute");
    document.body.dataset.ready = "1";
  } catch (e) { say(`the page could not load: ${e}`, true); }
})();
