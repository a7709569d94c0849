/* The hanging viewer: four mammogram views in the mirrored 2 x 2 hanging, with zoom, pan, window/level,
 * invert and overlays (heatmap, ground-truth boxes, CAD marks), all in the browser.
 *
 * A Streamlit custom component (components v1) written without a build step: this file speaks the iframe
 * message protocol itself (componentReady, render, setComponentValue, setFrameHeight). Python sends
 * `spec` (JSON, built by mammo_sae/bundle/hanging.py) and `px0`..`px3` (zlib uint16 samples, bytes that
 * arrive as Uint8Array); the viewer sends back {event, slot, token, x, y, nonce} for next / prev / select /
 * point. Display state lives here and in sessionStorage; nothing about zoom, pan or window goes to the
 * server. See docs/viewer.md.
 */
"use strict";

// --- constants ------------------------------------------------------------------------------------------

const API_VERSION = 1;
const SLOTS = 4;
const PARTNER = [2, 3, 0, 1]; // the other view of the same side (CC <-> MLO)
const CLICK_SLOP = 4; // css px a press may move and still be a click
const CLICK_DELAY_MS = 230; // wait this long for a second click before sending `point`
const MAX_ZOOM = 40;
const HEAT_UPSAMPLE = 8; // heatmap texture pixels per token (bilinear between token centres)
const MIN_HEIGHT = 320;
const PIXEL_CACHE = 16; // decoded views kept (by image_key)
const STORE_PREFIX = "mammo-sae-viewer:";

// --- the Streamlit protocol -----------------------------------------------------------------------------

const Protocol = {
  send(type, data) {
    window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type }, data), "*");
  },
  ready() {
    this.send("streamlit:componentReady", { apiVersion: API_VERSION });
  },
  lastHeight: null,
  setHeight(height) {
    const h = Math.round(height);
    if (h === this.lastHeight) return;
    this.lastHeight = h;
    this.send("streamlit:setFrameHeight", { height: h });
  },
  setValue(value) {
    this.send("streamlit:setComponentValue", { value, dataType: "json" });
  },
};

// --- state ----------------------------------------------------------------------------------------------

/** What the user set in the browser; `views` and `windows` are per slot and reset with a new study. */
function freshDisplay() {
  return {
    study: null,
    nonce: null,
    keys: ["", "", "", ""], // image_key per slot: a new image resets its slot
    views: [null, null, null, null], // {z, ax, ay}: zoom over the fit, pan in fit units
    windows: [null, null, null, null], // {preset} (index) or {center, width, function}
    invert: false,
    show: { boxes: true, heatmap: true, marks: true, all: true },
    link: false,
    selected: 0,
    focus: -1, // slot filling the stage, -1 = the 2 x 2 hanging
    specSelected: null, // the spec's `selected` last applied (the page moved the selection)
  };
}

const viewer = {
  spec: null,
  key: "",
  display: freshDisplay(),
  images: [null, null, null, null], // {key, width, height, samples: Uint16Array}
  grey: [null, null, null, null], // {canvas, lutKey}: the windowed image at sent resolution
  heat: [null, null, null, null], // {canvas, source}: the heatmap texture
  slots: [], // DOM per slot: {root, box, canvas, name, caption, empty}
  fixedHeight: null,
  drawPending: false,
  lastNonce: 0,
};
const pixelCache = new Map(); // image_key -> Promise<{width, height, samples}>

function storageKey() {
  return STORE_PREFIX + (viewer.key || "default");
}

function saveDisplay() {
  try {
    window.sessionStorage.setItem(storageKey(), JSON.stringify(viewer.display));
  } catch (e) {
    /* storage full or blocked: the state still holds for this iframe's life */
  }
}

function loadDisplay() {
  try {
    const text = window.sessionStorage.getItem(storageKey());
    if (text) return Object.assign(freshDisplay(), JSON.parse(text));
  } catch (e) {
    /* unreadable: start afresh */
  }
  return freshDisplay();
}

// --- pixels: zlib uint16 -> samples (cached per image_key) ----------------------------------------------

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Response(stream).arrayBuffer();
}

function decodePixels(slot, bytes) {
  const key = slot.image_key;
  if (pixelCache.has(key)) {
    const hit = pixelCache.get(key);
    pixelCache.delete(key); // keep the map in recency order
    pixelCache.set(key, hit);
    return hit;
  }
  if (!bytes) return null;
  const promise = inflate(bytes).then((buffer) => {
    const samples = new Uint16Array(buffer); // little-endian, like every browser's host
    if (samples.length !== slot.width * slot.height) {
      throw new Error(`view ${slot.name}: ${samples.length} samples for ${slot.width} x ${slot.height}`);
    }
    return { key, width: slot.width, height: slot.height, samples };
  });
  pixelCache.set(key, promise);
  while (pixelCache.size > PIXEL_CACHE) pixelCache.delete(pixelCache.keys().next().value);
  return promise;
}

// --- window / level (DICOM PS3.3 C.11.2.1.2-3), through a 65536-entry lookup table -----------------------

/** Modality value -> [0, 1] under a window {center, width, function} or a VOI LUT {lut: {first, data}}. */
function voiFunction(voi) {
  if (voi.lut) {
    const { first, data } = voi.lut;
    const last = data.length - 1;
    return (x) => data[Math.min(last, Math.max(0, Math.round(x) - first))];
  }
  const c = voi.center;
  const w = voi.width;
  const fn = (voi.function || "LINEAR").toUpperCase();
  if (fn === "SIGMOID") return (x) => 1 / (1 + Math.exp(Math.max(-700, Math.min(700, (-4 * (x - c)) / w))));
  if (fn === "LINEAR_EXACT") return (x) => Math.min(1, Math.max(0, (x - c) / w + 0.5));
  if (w <= 1) return (x) => (x > c - 0.5 ? 1 : 0);
  return (x) => Math.min(1, Math.max(0, (x - (c - 0.5)) / (w - 1) + 0.5));
}

/** The slot's current VOI: a preset of the file, or a window the user dragged to. */
function currentVoi(i) {
  const slot = viewer.spec.slots[i];
  const win = viewer.display.windows[i];
  if (win && win.center !== undefined) return win;
  const index = win && win.preset !== undefined ? win.preset : slot.default_preset;
  return slot.presets[Math.min(index, slot.presets.length - 1)] || { center: 32768, width: 65536 };
}

/** A window {center, width} near a VOI LUT (where it rises from 2% to 98%), so a drag can start from it. */
function lutAsWindow(voi) {
  const { first, data } = voi.lut;
  let lo = 0;
  let hi = data.length - 1;
  while (lo < hi && data[lo] < 0.02) lo++;
  while (hi > lo && data[hi] > 0.98) hi--;
  return { center: first + (lo + hi) / 2, width: Math.max(1, hi - lo), function: "LINEAR" };
}

/** RGBA (as uint32, little-endian) for each of the 65536 samples: sample 0 is padding (black). */
function greyTable(slot, voi, invert) {
  const f = voiFunction(voi);
  const { offset, step } = slot.values;
  const table = new Uint32Array(65536);
  for (let s = 0; s < 65536; s++) {
    let u = s === 0 ? 0 : f(offset + step * s);
    if (s !== 0 && slot.monochrome1) u = 1 - u; // MONOCHROME1: low values are bright
    if (invert) u = 1 - u; // padding too: an inverted film has a white background
    const g = Math.round(Math.min(1, Math.max(0, u)) * 255);
    table[s] = 0xff000000 | (g << 16) | (g << 8) | g;
  }
  return table;
}

/** The slot's image windowed into an offscreen canvas at the resolution sent (redone when WL changes). */
function greyCanvas(i) {
  const slot = viewer.spec.slots[i];
  const image = viewer.images[i];
  if (!image) return null;
  const voi = currentVoi(i);
  const lutKey = JSON.stringify([image.key, voi.name || null, voi.center, voi.width, voi.function, !!voi.lut,
    viewer.display.invert]);
  const held = viewer.grey[i];
  if (held && held.lutKey === lutKey) return held.canvas;
  const canvas = held ? held.canvas : document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  const ctx = canvas.getContext("2d");
  const data = ctx.createImageData(image.width, image.height);
  const out = new Uint32Array(data.data.buffer);
  const table = greyTable(slot, voi, viewer.display.invert);
  const samples = image.samples;
  for (let p = 0; p < samples.length; p++) out[p] = table[samples[p]];
  ctx.putImageData(data, 0, 0);
  viewer.grey[i] = { canvas, lutKey };
  return canvas;
}

// --- heatmap texture: gh x gw values, bilinear, coloured, transparent below threshold ----------------------

function heatCanvas(i) {
  const slot = viewer.spec.slots[i];
  const heat = slot.heatmap;
  if (!heat || !slot.grid || !(heat.vmax > 0)) return null;
  const held = viewer.heat[i];
  if (held && held.source === heat) return held.canvas;
  const gh = slot.grid.rows;
  const gw = slot.grid.cols;
  const k = HEAT_UPSAMPLE;
  const canvas = document.createElement("canvas");
  canvas.width = gw * k;
  canvas.height = gh * k;
  const ctx = canvas.getContext("2d");
  const data = ctx.createImageData(canvas.width, canvas.height);
  const v = heat.values;
  const at = (r, c) => v[Math.min(gh - 1, Math.max(0, r)) * gw + Math.min(gw - 1, Math.max(0, c))];
  for (let y = 0; y < canvas.height; y++) {
    const ty = (y + 0.5) / k - 0.5; // half-pixel centres, as the frame map is resized
    const r0 = Math.floor(ty);
    const fy = ty - r0;
    for (let x = 0; x < canvas.width; x++) {
      const tx = (x + 0.5) / k - 0.5;
      const c0 = Math.floor(tx);
      const fx = tx - c0;
      const value = (at(r0, c0) * (1 - fx) + at(r0, c0 + 1) * fx) * (1 - fy)
        + (at(r0 + 1, c0) * (1 - fx) + at(r0 + 1, c0 + 1) * fx) * fy;
      const rgba = heatColour(heat, value);
      if (!rgba) continue;
      const o = (y * canvas.width + x) * 4;
      data.data[o] = rgba[0];
      data.data[o + 1] = rgba[1];
      data.data[o + 2] = rgba[2];
      data.data[o + 3] = rgba[3];
    }
  }
  ctx.putImageData(data, 0, 0);
  viewer.heat[i] = { canvas, source: heat };
  return canvas;
}

/** [r, g, b, a] of one map value, or null where nothing is drawn (as overlays.py blends). */
function heatColour(heat, value) {
  if (heat.diverging) {
    const level = Math.max(-1, Math.min(1, value / heat.vmax));
    const magnitude = Math.abs(level);
    if (level === 0 || magnitude < heat.threshold) return null;
    const c = heat.colours[Math.round(((level + 1) / 2) * 255)];
    return [c[0], c[1], c[2], Math.round(255 * heat.opacity * magnitude)];
  }
  const level = Math.max(0, Math.min(1, value / heat.vmax));
  if (value <= 0 || level < heat.threshold) return null;
  const c = heat.colours[Math.round(level * 255)];
  return [c[0], c[1], c[2], Math.round(255 * heat.opacity)];
}

// --- geometry: fit, zoom and pan of one slot ---------------------------------------------------------------

/** The slot's canvas transform: screen = (e + a * u, f + s * v) for sent pixel (u, v); a = -s when mirrored. */
function placement(i) {
  const slot = viewer.spec.slots[i];
  const canvas = viewer.slots[i].canvas;
  const cw = canvas.width;
  const ch = canvas.height;
  const fit = Math.min(cw / slot.width, ch / slot.height);
  const view = viewer.display.views[i] || { z: 1, ax: 0, ay: 0 };
  const s = fit * view.z;
  const baseX = slot.anchor === "right" ? cw - slot.width * fit : 0; // hug the centre line
  const bx = baseX + view.ax * fit; // left edge of the (mirrored) image on screen
  const by = view.ay * fit;
  return { s, fit, bx, by, flip: slot.flip, width: slot.width, height: slot.height, baseX };
}

function setCanvasTransform(ctx, p) {
  if (p.flip) ctx.setTransform(-p.s, 0, 0, p.s, p.bx + p.width * p.s, p.by);
  else ctx.setTransform(p.s, 0, 0, p.s, p.bx, p.by);
}

/** Sent-pixel coordinates (unmirrored) -> device pixels on the canvas. */
function toScreen(p, u, v) {
  const x = p.flip ? p.bx + (p.width - u) * p.s : p.bx + u * p.s;
  return [x, p.by + v * p.s];
}

/** Device pixels -> sent-pixel coordinates (unmirrored). */
function fromScreen(p, x, y) {
  const m = (x - p.bx) / p.s;
  return [p.flip ? p.width - m : m, (y - p.by) / p.s];
}

function setView(i, view) {
  viewer.display.views[i] = view;
  if (viewer.display.link && viewer.spec.slots[PARTNER[i]].present) viewer.display.views[PARTNER[i]] = { ...view };
}

function zoomAt(i, factor, x, y) {
  const p = placement(i);
  const view = viewer.display.views[i] || { z: 1, ax: 0, ay: 0 };
  const z = Math.max(1, Math.min(MAX_ZOOM, view.z * factor));
  const [mx, my] = [(x - p.bx) / p.s, (y - p.by) / p.s]; // the mirrored image point under the cursor
  const s = p.fit * z;
  setView(i, { z, ax: (x - mx * s - p.baseX) / p.fit, ay: (y - my * s) / p.fit });
}

function panBy(i, dx, dy) {
  const p = placement(i);
  const view = viewer.display.views[i] || { z: 1, ax: 0, ay: 0 };
  setView(i, { z: view.z, ax: view.ax + dx / p.fit, ay: view.ay + dy / p.fit });
}

// --- drawing ----------------------------------------------------------------------------------------------

function requestDraw() {
  if (viewer.drawPending) return;
  viewer.drawPending = true;
  window.requestAnimationFrame(() => {
    viewer.drawPending = false;
    drawAll();
  });
}

function drawAll() {
  if (!viewer.spec) return;
  for (let i = 0; i < SLOTS; i++) drawSlot(i);
  updateAttributes();
}

function drawSlot(i) {
  const slot = viewer.spec.slots[i];
  const dom = viewer.slots[i];
  const canvas = dom.canvas;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (!slot.present || !viewer.images[i] || canvas.width === 0) return;
  const p = placement(i);
  const grey = greyCanvas(i);
  setCanvasTransform(ctx, p);
  ctx.imageSmoothingEnabled = p.s < 3; // from 3 device px per pixel on, show the pixels themselves
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(grey, 0, 0);
  const show = viewer.display.show;
  if (show.all && show.heatmap) drawHeatmap(ctx, i, p);
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  if (show.all && show.boxes) drawBoxes(ctx, i, p);
  if (show.all && show.marks) drawMarks(ctx, i, p);
}

function drawHeatmap(ctx, i, p) {
  const slot = viewer.spec.slots[i];
  const texture = heatCanvas(i);
  if (!texture) return;
  const [x0, y0, x1, y1] = slot.grid.box.map((v) => v * slot.scale);
  ctx.save();
  ctx.beginPath();
  ctx.rect(0, 0, slot.width, slot.height); // the frame may extend past the image (padding): clip
  ctx.clip();
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(texture, x0, y0, x1 - x0, y1 - y0);
  ctx.restore();
}

/** A box in original pixels -> its screen rectangle [left, top, right, bottom] in device pixels. */
function screenRect(slot, p, box) {
  const [a, b] = toScreen(p, box[0] * slot.scale, box[1] * slot.scale);
  const [c, d] = toScreen(p, box[2] * slot.scale, box[3] * slot.scale);
  return [Math.min(a, c), Math.min(b, d), Math.max(a, c), Math.max(b, d)];
}

function drawBoxes(ctx, i, p) {
  const slot = viewer.spec.slots[i];
  const dpr = window.devicePixelRatio || 1;
  ctx.lineWidth = 1.5 * dpr; // constant on screen, whatever the zoom
  for (const box of slot.boxes) {
    const [l, t, r, b] = screenRect(slot, p, box.box);
    ctx.strokeStyle = box.colour;
    ctx.strokeRect(Math.round(l) + 0.5, Math.round(t) + 0.5, Math.max(1, r - l), Math.max(1, b - t));
  }
}

/** CAD marks: a dashed ellipse around the box (boxes are rectangles), with the score, text never mirrored. */
function drawMarks(ctx, i, p) {
  const slot = viewer.spec.slots[i];
  const dpr = window.devicePixelRatio || 1;
  ctx.font = `${Math.round(11 * dpr)}px sans-serif`;
  ctx.textBaseline = "bottom";
  for (const mark of slot.marks) {
    const [l, t, r, b] = screenRect(slot, p, mark.box);
    const cx = (l + r) / 2;
    const cy = (t + b) / 2;
    const rx = Math.max((r - l) / 2 * 1.25, 7 * dpr);
    const ry = Math.max((b - t) / 2 * 1.25, 7 * dpr);
    ctx.strokeStyle = mark.colour;
    ctx.lineWidth = 2 * dpr;
    ctx.setLineDash([5 * dpr, 3 * dpr]);
    ctx.beginPath();
    ctx.ellipse(cx, cy, rx, ry, 0, 0, 2 * Math.PI);
    ctx.stroke();
    ctx.setLineDash([]);
    const text = mark.label;
    const w = ctx.measureText(text).width;
    const tx = Math.min(Math.max(2, cx - w / 2), ctx.canvas.width - w - 2);
    const ty = Math.max(14 * dpr, cy - ry - 3 * dpr);
    ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
    ctx.fillRect(tx - 2, ty - 13 * dpr, w + 4, 14 * dpr);
    ctx.fillStyle = mark.colour;
    ctx.fillText(text, tx, ty);
  }
}

/** State a test (or a curious user) can read off the DOM. */
function updateAttributes() {
  const d = viewer.display;
  const root = document.getElementById("viewer");
  root.dataset.study = viewer.spec.study;
  root.dataset.invert = String(d.invert);
  root.dataset.overlays = ["boxes", "heatmap", "marks", "all"].filter((k) => d.show[k]).join(",");
  root.dataset.link = String(d.link);
  root.dataset.selected = String(d.selected);
  root.dataset.focus = String(d.focus);
  for (let i = 0; i < SLOTS; i++) {
    const c = viewer.slots[i].canvas;
    const view = d.views[i] || { z: 1, ax: 0, ay: 0 };
    c.dataset.zoom = view.z.toFixed(3);
    c.dataset.pan = `${view.ax.toFixed(3)},${view.ay.toFixed(3)}`;
    if (viewer.spec.slots[i].present) {
      const voi = currentVoi(i);
      c.dataset.window = voi.lut ? `lut:${voi.name}` : `${voi.center.toFixed(1)},${voi.width.toFixed(1)}`;
      const p = placement(i); // where the image lies on the canvas, device px, clipped
      const clip = (v, hi) => Math.round(Math.min(hi, Math.max(0, v)));
      c.dataset.imageRect = [clip(p.bx, c.width), clip(p.by, c.height), clip(p.bx + p.width * p.s, c.width),
        clip(p.by + p.height * p.s, c.height)].join(",");
    }
    c.dataset.ready = String(!!viewer.images[i]);
    c.dataset.marks = String(d.show.all && d.show.marks ? viewer.spec.slots[i].marks.length : 0); // drawn
  }
  const ready = viewer.spec.slots.every((s, i) => !s.present || viewer.images[i]);
  root.dataset.state = ready ? "ready" : "loading";
  syncToolbar();
}

// --- DOM: the stage, the toolbar, the legend --------------------------------------------------------------

function buildStage() {
  const stage = document.getElementById("stage");
  for (let i = 0; i < SLOTS; i++) {
    const root = document.createElement("div");
    root.className = "slot";
    root.dataset.slot = String(i);
    const box = document.createElement("div");
    box.className = "canvas-box";
    const canvas = document.createElement("canvas");
    canvas.dataset.slot = String(i);
    const name = document.createElement("div");
    name.className = "name";
    const empty = document.createElement("div");
    empty.className = "empty";
    const caption = document.createElement("div");
    caption.className = "caption";
    box.append(canvas, name, empty);
    root.append(box, caption);
    stage.append(root);
    viewer.slots.push({ root, box, canvas, name, caption, empty });
    attachPointer(i, canvas);
  }
  new ResizeObserver(resizeCanvases).observe(stage);
}

function resizeCanvases() {
  const dpr = window.devicePixelRatio || 1;
  for (const dom of viewer.slots) {
    const rect = dom.box.getBoundingClientRect();
    const w = Math.max(0, Math.round(rect.width * dpr));
    const h = Math.max(0, Math.round(rect.height * dpr));
    if (dom.canvas.width !== w || dom.canvas.height !== h) {
      dom.canvas.width = w;
      dom.canvas.height = h;
    }
  }
  requestDraw();
}

function fillSlots() {
  const d = viewer.display;
  const stage = document.getElementById("stage");
  stage.classList.toggle("focused", d.focus >= 0);
  viewer.spec.slots.forEach((slot, i) => {
    const dom = viewer.slots[i];
    dom.root.className = `slot anchor-${slot.anchor}${slot.present ? "" : " absent"}`
      + `${d.selected === i ? " selected" : ""}${d.focus === i ? " focus" : ""}`;
    dom.name.textContent = slot.name;
    dom.empty.textContent = slot.present ? "" : `${slot.name}: not in this study`;
    dom.empty.hidden = slot.present;
    dom.caption.textContent = slot.caption || "";
    for (const note of slot.notes || []) {
      const span = document.createElement("span");
      span.className = "note";
      span.textContent = note;
      dom.caption.append(span);
    }
  });
  window.requestAnimationFrame(resizeCanvases); // the focus class changes the slots' sizes
}

function presetNames() {
  const names = [];
  for (const slot of viewer.spec.slots) for (const p of slot.presets) if (!names.includes(p.name)) names.push(p.name);
  return names;
}

function fillToolbar() {
  const select = document.getElementById("preset");
  const names = presetNames();
  select.replaceChildren(...[...names, "(dragged)"].map((name) => {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    return option;
  }));
  select.lastChild.disabled = true;
}

function syncToolbar() {
  const d = viewer.display;
  const pressed = { invert: d.invert, "show-boxes": d.show.boxes, "show-heatmap": d.show.heatmap,
    "show-marks": d.show.marks, "show-all": d.show.all, link: d.link };
  for (const [id, on] of Object.entries(pressed)) document.getElementById(id).setAttribute("aria-pressed", String(on));
  const i = firstPresent(d.selected);
  const select = document.getElementById("preset");
  if (i >= 0) {
    const voi = currentVoi(i);
    select.value = voi.name && !(d.windows[i] && d.windows[i].center !== undefined) ? voi.name : "(dragged)";
  }
}

function firstPresent(preferred) {
  if (viewer.spec.slots[preferred] && viewer.spec.slots[preferred].present) return preferred;
  return viewer.spec.slots.findIndex((s) => s.present);
}

function fillLegend() {
  const items = document.getElementById("legend-items");
  items.replaceChildren();
  const legend = viewer.spec.legend || [];
  if (legend.some((entry) => entry.kind === "box")) {
    const heading = document.createElement("span");
    heading.textContent = "Ground truth:";
    items.append(heading);
  }
  for (const entry of legend) {
    const item = document.createElement("span");
    item.className = "item";
    item.dataset.kind = entry.kind;
    if (entry.kind === "scale") {
      const low = document.createElement("span");
      low.textContent = entry.min;
      const bar = document.createElement("canvas");
      bar.className = "scale";
      bar.width = 256;
      bar.height = 1;
      const ctx = bar.getContext("2d");
      (entry.colours || []).forEach((c, x) => {
        ctx.fillStyle = `rgb(${c[0]},${c[1]},${c[2]})`;
        ctx.fillRect(x, 0, 1, 1);
      });
      const high = document.createElement("span");
      high.textContent = entry.max;
      const label = document.createElement("span");
      label.textContent = entry.label;
      item.append(label, low, bar, high);
    } else {
      const swatch = document.createElement("span");
      swatch.className = entry.kind === "mark" ? "swatch-mark" : "swatch-box";
      swatch.style.borderColor = entry.colour;
      const label = document.createElement("span");
      label.textContent = entry.label;
      item.append(swatch, label);
    }
    items.append(item);
  }
  document.getElementById("hint").textContent =
    "j/k study · 1-4 view · wheel zoom · drag pan · right-drag window · b h m o overlays · i invert · r reset · ? keys";
  const table = document.getElementById("help-keys");
  table.replaceChildren(...Object.entries(viewer.spec.keys || {}).map(([key, what]) => {
    const row = document.createElement("tr");
    const k = document.createElement("td");
    k.textContent = key;
    const w = document.createElement("td");
    w.textContent = what;
    row.append(k, w);
    return row;
  }));
}

function bindToolbar() {
  const on = (id, fn) => document.getElementById(id).addEventListener("click", () => {
    fn();
    document.getElementById(id).blur(); // keys keep working
  });
  on("invert", () => act("i"));
  on("show-boxes", () => act("b"));
  on("show-heatmap", () => act("h"));
  on("show-marks", () => act("m"));
  on("show-all", () => act("o"));
  on("link", () => act("l"));
  on("reset", () => act("r"));
  on("help-button", () => act("?"));
  document.getElementById("preset").addEventListener("change", (event) => {
    choosePreset(event.target.value);
    event.target.blur();
  });
}

/** A preset by name, on every view that has it (views of one study share their device's presets). */
function choosePreset(name) {
  viewer.spec.slots.forEach((slot, i) => {
    const index = slot.presets.findIndex((p) => p.name === name);
    if (index >= 0) viewer.display.windows[i] = { preset: index };
  });
  changed();
}

// --- pointer: wheel zoom, drag pan, right/shift-drag window, click = point -----------------------------------

function attachPointer(i, canvas) {
  let press = null;
  let clickTimer = null;
  canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  canvas.addEventListener("wheel", (e) => {
    if (!viewer.spec || !viewer.spec.slots[i].present) return;
    e.preventDefault();
    const dpr = window.devicePixelRatio || 1;
    const rect = canvas.getBoundingClientRect();
    const unit = e.deltaMode === 1 ? 30 : e.deltaMode === 2 ? 300 : 1;
    zoomAt(i, Math.exp(-e.deltaY * unit * 0.0015), (e.clientX - rect.left) * dpr, (e.clientY - rect.top) * dpr);
    changed();
  }, { passive: false });
  canvas.addEventListener("pointerdown", (e) => {
    if (!viewer.spec || !viewer.spec.slots[i].present) return;
    canvas.setPointerCapture(e.pointerId);
    const windowing = e.button === 2 || e.shiftKey;
    press = { x: e.clientX, y: e.clientY, lastX: e.clientX, lastY: e.clientY, moved: false, windowing,
      button: e.button, start: windowing ? startWindows() : null };
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!press) return;
    if (Math.hypot(e.clientX - press.x, e.clientY - press.y) > CLICK_SLOP) press.moved = true;
    if (!press.moved) return;
    const dpr = window.devicePixelRatio || 1;
    if (press.windowing) dragWindows(press.start, e.clientX - press.x, e.clientY - press.y);
    else panBy(i, (e.clientX - press.lastX) * dpr, (e.clientY - press.lastY) * dpr);
    press.lastX = e.clientX;
    press.lastY = e.clientY;
    changed(false);
  });
  const finish = (e) => {
    if (!press) return;
    const was = press;
    press = null;
    if (was.moved) {
      changed();
      return;
    }
    if (was.button !== 0 || was.windowing) return;
    const rect = canvas.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const at = [(e.clientX - rect.left) * dpr, (e.clientY - rect.top) * dpr];
    clearTimeout(clickTimer);
    clickTimer = setTimeout(() => clickAt(i, at[0], at[1]), CLICK_DELAY_MS);
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", () => { press = null; });
  canvas.addEventListener("dblclick", (e) => {
    e.preventDefault();
    clearTimeout(clickTimer);
    act("r");
  });
}

/** A plain click: select the view and send the point in original pixels with its model token. */
function clickAt(i, x, y) {
  const slot = viewer.spec.slots[i];
  const [u, v] = fromScreen(placement(i), x, y);
  if (u < 0 || v < 0 || u >= slot.width || v >= slot.height) return; // beside the image
  const ox = u / slot.scale;
  const oy = v / slot.scale;
  viewer.display.selected = i;
  fillSlots();
  sendEvent("point", i, tokenAt(slot, ox, oy), ox, oy);
  saveDisplay();
}

function tokenAt(slot, x, y) {
  if (!slot.grid) return null;
  const [x0, y0, x1, y1] = slot.grid.box;
  const col = Math.floor(((x - x0) / (x1 - x0)) * slot.grid.cols);
  const row = Math.floor(((y - y0) / (y1 - y0)) * slot.grid.rows);
  if (col < 0 || row < 0 || col >= slot.grid.cols || row >= slot.grid.rows) return null;
  return row * slot.grid.cols + col;
}

/** Window/level drags change every view by the same amount (same level shift, same width ratio). */
function startWindows() {
  return viewer.spec.slots.map((slot, i) => {
    if (!slot.present) return null;
    const voi = currentVoi(i);
    return voi.lut ? lutAsWindow(voi) : { center: voi.center, width: voi.width, function: voi.function };
  });
}

function dragWindows(start, dx, dy) {
  start.forEach((win, i) => {
    if (!win) return;
    const width = Math.max(1e-6, win.width * Math.exp(dx / 250)); // right = wider (less contrast)
    const center = win.center + (dy / 300) * win.width; // down = higher level (darker)
    viewer.display.windows[i] = { center, width, function: win.function === "SIGMOID" ? "SIGMOID" : win.function };
  });
}

// --- keyboard: on this document and on the page around it --------------------------------------------------

/** One action per key; returns false for keys the viewer does not use. */
function act(key) {
  const d = viewer.display;
  if (!viewer.spec) return false;
  switch (key) {
    case "j": case "n": case "ArrowDown": sendEvent("next", d.selected); return true;
    case "k": case "p": case "ArrowUp": sendEvent("prev", d.selected); return true;
    case "1": case "2": case "3": case "4": selectSlot(Number(key) - 1); return true;
    case "0": case "Escape": d.focus = -1; fillSlots(); break;
    case "b": d.show.boxes = !d.show.boxes; break;
    case "h": d.show.heatmap = !d.show.heatmap; break;
    case "m": d.show.marks = !d.show.marks; break;
    case "o": d.show.all = !d.show.all; break;
    case "i": d.invert = !d.invert; break;
    case "l": d.link = !d.link; if (d.link) linkNow(); break;
    case "r": d.views = [null, null, null, null]; d.windows = [null, null, null, null]; break;
    case "?": toggleHelp(); return true;
    default: return false;
  }
  changed();
  return true;
}

function linkNow() {
  const d = viewer.display;
  const i = d.selected;
  if (d.views[i]) setView(i, d.views[i]);
}

function selectSlot(i) {
  const d = viewer.display;
  if (!viewer.spec.slots[i].present) return;
  if (d.selected === i) d.focus = d.focus === i ? -1 : i; // the same digit again: fill the stage / back
  else {
    d.selected = i;
    if (d.focus >= 0) d.focus = i;
    sendEvent("select", i);
  }
  fillSlots();
  changed();
}

function toggleHelp() {
  const help = document.getElementById("help");
  help.hidden = !help.hidden;
  document.getElementById("help-button").setAttribute("aria-expanded", String(!help.hidden));
}

function typing(target) {
  if (!target || !target.tagName) return false;
  const tag = target.tagName.toUpperCase();
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
}

function onKey(event) {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (typing(event.target)) return;
  if (window.frameElement && !window.frameElement.isConnected) return detachKeys();
  if (act(event.key)) {
    event.preventDefault();
    event.stopPropagation(); // e.g. Streamlit's own "r" (rerun) must not fire too
  }
}

let parentWindow = null;

function attachKeys() {
  document.addEventListener("keydown", onKey);
  try {
    if (window.parent !== window && window.parent.document) {
      parentWindow = window.parent;
      parentWindow.addEventListener("keydown", onKey, true); // capture: before the page's own shortcuts
    }
  } catch (e) {
    parentWindow = null; // a cross-origin parent: keys work when the viewer has focus
  }
  window.addEventListener("pagehide", detachKeys);
}

function detachKeys() {
  if (parentWindow) {
    try {
      parentWindow.removeEventListener("keydown", onKey, true);
    } catch (e) {
      /* the page is gone already */
    }
    parentWindow = null;
  }
}

// --- events back to Python --------------------------------------------------------------------------------

function sendEvent(event, slot, token = null, x = null, y = null) {
  viewer.lastNonce = Math.max(viewer.lastNonce + 1, Date.now()); // increasing across iframes of a session
  Protocol.setValue({ event, slot, token, x, y, nonce: viewer.lastNonce });
}

// --- render: a new spec from Python -----------------------------------------------------------------------

function changed(store = true) {
  requestDraw();
  if (store) saveDisplay();
}

/** Keep the user's view of the same study; a new study or nonce resets zoom, pan and window. */
function adoptSpec(spec) {
  const d = viewer.display;
  const same = d.study === spec.study && d.nonce === spec.nonce;
  spec.slots.forEach((slot, i) => {
    if (!same || d.keys[i] !== slot.image_key) {
      d.views[i] = null;
      d.windows[i] = null;
    }
    d.keys[i] = slot.image_key;
  });
  if (!same) d.focus = -1;
  if (!same || d.specSelected !== spec.selected) d.selected = spec.selected;
  if (!spec.slots[d.selected] || !spec.slots[d.selected].present) d.selected = Math.max(0, firstPresent(d.selected));
  if (d.focus >= 0 && !spec.slots[d.focus].present) d.focus = -1;
  d.specSelected = spec.selected;
  d.study = spec.study;
  d.nonce = spec.nonce;
  viewer.spec = spec;
  viewer.heat = [null, null, null, null];
}

function onRender(args) {
  if (viewer.key !== String(args.key || "")) {
    viewer.key = String(args.key || "");
    viewer.display = loadDisplay();
  }
  viewer.fixedHeight = args.height == null ? null : Number(args.height);
  adoptSpec(args.spec);
  fillSlots();
  fillToolbar();
  fillLegend();
  updateHeight();
  saveDisplay();
  const spec = viewer.spec;
  spec.slots.forEach((slot, i) => {
    const have = viewer.images[i];
    if (!slot.present) {
      viewer.images[i] = null;
      return;
    }
    if (have && have.key === slot.image_key) return;
    viewer.images[i] = null;
    viewer.grey[i] = null;
    const pending = decodePixels(slot, args[`px${i}`]);
    if (!pending) return;
    pending.then((image) => {
      if (viewer.spec === spec || (viewer.spec.slots[i] && viewer.spec.slots[i].image_key === image.key)) {
        viewer.images[i] = image;
        requestDraw();
      }
    }).catch((error) => {
      pixelCache.delete(slot.image_key);
      viewer.slots[i].empty.hidden = false;
      viewer.slots[i].empty.textContent = `${slot.name}: ${error.message}`;
    });
  });
  requestDraw();
}

/** The frame fills the viewport below its top (or is the height Python asked for). */
function updateHeight() {
  if (viewer.fixedHeight) {
    Protocol.setHeight(viewer.fixedHeight);
    return;
  }
  let height = 600;
  try {
    const frame = window.frameElement;
    const top = frame.getBoundingClientRect().top + scrollOffset(frame);
    height = window.parent.innerHeight - top - 12;
  } catch (e) {
    /* not same-origin: keep the default */
  }
  Protocol.setHeight(Math.max(MIN_HEIGHT, height));
}

/** How far the page around the frame is scrolled (its top is measured from the unscrolled page). */
function scrollOffset(frame) {
  let node = frame.parentElement;
  while (node) {
    if (node.scrollTop) return node.scrollTop;
    node = node.parentElement;
  }
  return 0;
}

function onMessage(event) {
  const data = event.data;
  if (!data || data.type !== "streamlit:render") return;
  onRender(data.args || {});
}

// --- start ------------------------------------------------------------------------------------------------

buildStage();
bindToolbar();
attachKeys();
window.addEventListener("message", onMessage);
try {
  window.parent.addEventListener("resize", updateHeight);
  window.addEventListener("pagehide", () => window.parent.removeEventListener("resize", updateHeight));
} catch (e) {
  /* a cross-origin parent: the height is set once per render */
}
Protocol.ready();
