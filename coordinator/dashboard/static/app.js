// fedq dashboard: polls the JSON API and draws SVG charts. No libraries, nothing from
// another origin.
"use strict";

const POLL_MS = 2000;
const SVGNS = "http://www.w3.org/2000/svg";
const PHASE_COLORS = ["#60a5fa", "#34d399", "#fbbf24", "#a78bfa", "#f472b6", "#22d3ee", "#fb923c"];
const phaseColor = {};

let selected = decodeURIComponent((location.hash.match(/task=([^&]*)/) || [])[1] || "");

function el(name, attrs, parent) {
  const e = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function text(parent, x, y, s, anchor) {
  const t = el("text", { x, y, "text-anchor": anchor || "start" }, parent);
  t.textContent = s;
  return t;
}

function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }

function fmt(v) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a < 0.01 || a >= 1e5)) return v.toExponential(2);
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(a < 1 ? 3 : 2);
}

function niceTicks(lo, hi, n) {
  if (!(hi > lo)) { hi = lo + 1; }
  const span = hi - lo, raw = span / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw);
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

function box(svg) {
  const vb = svg.viewBox.baseVal;
  return { w: vb.width, h: vb.height, l: 52, r: 12, t: 10, b: 30 };
}

function empty(svg, msg) {
  const b = box(svg);
  text(svg, b.w / 2, b.h / 2, msg, "middle").setAttribute("class", "empty");
}

// axes draws the frame and ticks and returns the scales.
function axes(svg, xlo, xhi, ylo, yhi, xlabel, xfmt, xInt, yInt) {
  const b = box(svg);
  const sx = x => b.l + (xhi === xlo ? 0.5 : (x - xlo) / (xhi - xlo)) * (b.w - b.l - b.r);
  const sy = y => b.h - b.b - (yhi === ylo ? 0.5 : (y - ylo) / (yhi - ylo)) * (b.h - b.t - b.b);
  el("line", { x1: b.l, y1: b.h - b.b, x2: b.w - b.r, y2: b.h - b.b, class: "axis" }, svg);
  el("line", { x1: b.l, y1: b.t, x2: b.l, y2: b.h - b.b, class: "axis" }, svg);
  for (const y of niceTicks(ylo, yhi, 4).filter(y => !yInt || Number.isInteger(y))) {
    el("line", { x1: b.l, y1: sy(y), x2: b.w - b.r, y2: sy(y), class: "axis", "stroke-dasharray": "2 3" }, svg);
    text(svg, b.l - 4, sy(y) + 4, fmt(y), "end");
  }
  for (const x of niceTicks(xlo, xhi, 6).filter(x => !xInt || Number.isInteger(x))) {
    text(svg, sx(x), b.h - b.b + 14, xfmt ? xfmt(x) : fmt(x), "middle");
  }
  text(svg, (b.l + b.w - b.r) / 2, b.h - 2, xlabel, "middle");
  return { sx, sy, b };
}

// lineChart draws series of [x, y] points; opts.hline draws a dashed line at a y.
function lineChart(svg, series, opts) {
  clear(svg);
  const pts = series.flatMap(s => s.points);
  if (pts.length === 0) { empty(svg, opts.empty || "no data yet"); return; }
  let xlo = Math.min(...pts.map(p => p[0])), xhi = Math.max(...pts.map(p => p[0]));
  let ylo = Math.min(...pts.map(p => p[1])), yhi = Math.max(...pts.map(p => p[1]));
  if (opts.hline !== undefined) { ylo = Math.min(ylo, opts.hline); yhi = Math.max(yhi, opts.hline); }
  if (opts.yMin !== undefined) ylo = Math.min(ylo, opts.yMin);
  if (opts.yMax !== undefined) yhi = Math.max(yhi, opts.yMax);
  if (yhi === ylo) { yhi += 1; ylo = Math.max(0, ylo - 1); }
  const pad = (yhi - ylo) * 0.05;
  const { sx, sy } = axes(svg, xlo, xhi, Math.max(opts.floor ?? -Infinity, ylo - pad), yhi + pad, opts.xlabel, opts.xfmt, opts.xInt);
  if (opts.hline !== undefined) {
    el("line", { x1: sx(xlo), x2: sx(xhi), y1: sy(opts.hline), y2: sy(opts.hline), class: "s-budget" }, svg);
  }
  for (const s of series) {
    if (s.points.length === 0) continue;
    const d = s.points.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1)).join(" ");
    el("path", { d, class: "series s-" + s.cls }, svg);
    if (s.points.length <= 200 && !s.noDots) {
      for (const p of s.points) {
        const c = el("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, class: "pt s-" + s.cls, "data-x": p[0], "data-y": p[1] }, svg);
        el("title", {}, c).textContent = s.cls + " at " + opts.xlabel + " " + p[0] + ": " + fmt(p[1]);
      }
    }
  }
  svg.setAttribute("data-points", String(series[0].points.length));
}

function metricSeries(versions, key) {
  return versions.filter(v => v.round > 0 && v.metrics && v.metrics[key] !== undefined).map(v => [v.round, v.metrics[key]]);
}

function drawAccuracy(t) {
  const svg = document.getElementById("chart-accuracy");
  const pts = metricSeries(t.versions, "accuracy");
  lineChart(svg, [{ cls: "accuracy", points: pts }], { xlabel: "round", empty: "no evaluated versions yet", floor: 0, xInt: true });
  svg.setAttribute("data-rounds", pts.map(p => p[0]).join(","));
}

function drawLoss(t) {
  const test = metricSeries(t.versions, "test_loss"), train = metricSeries(t.versions, "train_loss");
  lineChart(document.getElementById("chart-loss"), [{ cls: "test", points: test }, { cls: "train", points: train }],
    { xlabel: "round", empty: "no committed rounds yet", floor: 0, xInt: true });
}

function drawTimeline(t) {
  const svg = document.getElementById("chart-timeline");
  clear(svg);
  const rounds = t.rounds.slice(-30);
  if (rounds.length === 0) { empty(svg, "no rounds yet"); return; }
  const now = Date.now();
  const dur = r => ((r.ended ? Date.parse(r.ended) : now) - Date.parse(r.started)) / 1000;
  const longest = Math.max(0.001, ...rounds.map(dur));
  const b = box(svg);
  b.l = 80;
  const rowH = Math.min(18, (b.h - b.t - b.b) / rounds.length);
  const sx = s => b.l + (s / longest) * (b.w - b.l - b.r);
  for (const x of niceTicks(0, longest, 8)) {
    el("line", { x1: sx(x), x2: sx(x), y1: b.t, y2: b.h - b.b, class: "axis", "stroke-dasharray": "2 3" }, svg);
    text(svg, sx(x), b.h - b.b + 14, fmt(x), "middle");
  }
  text(svg, (b.l + b.w) / 2, b.h - 2, "seconds since the attempt started", "middle");
  rounds.forEach((r, i) => {
    const y = b.t + i * rowH;
    const g = el("g", { class: "attempt", "data-round": r.round, "data-outcome": r.outcome }, svg);
    text(g, b.l - 6, y + rowH * 0.75, "r" + r.round + (r.attempt > 1 ? "." + r.attempt : ""), "end");
    const start = Date.parse(r.started);
    const phases = r.phases && r.phases.length ? r.phases : [{ phase: "(phases unknown)", start: r.started, end: r.ended }];
    for (const p of phases) {
      if (!(p.phase in phaseColor)) phaseColor[p.phase] = p.phase.startsWith("(") ? "#cbd5e1" : PHASE_COLORS[Object.keys(phaseColor).length % PHASE_COLORS.length];
      const s0 = (Date.parse(p.start) - start) / 1000, s1 = ((p.end && !p.end.startsWith("0001") ? Date.parse(p.end) : now) - start) / 1000;
      const rect = el("rect", { x: sx(s0), y: y + 1, width: Math.max(1, sx(s1) - sx(s0)), height: rowH - 2, fill: phaseColor[p.phase] }, g);
      el("title", {}, rect).textContent = "round " + r.round + " attempt " + r.attempt + ": " + p.phase + " " + fmt(s1 - s0) + " s";
    }
    if (r.outcome === "failed") {
      const f = el("rect", { x: b.l, y: y + 1, width: Math.max(1, sx(dur(r)) - b.l), height: rowH - 2, fill: "none", class: "failed" }, g);
      el("title", {}, f).textContent = "failed: " + (r.reason || "");
    }
  });
  const key = document.getElementById("phase-key");
  key.textContent = "";
  for (const [p, c] of Object.entries(phaseColor)) {
    const s = document.createElement("span");
    s.className = "key"; s.style.borderColor = c; s.textContent = p;
    key.appendChild(s);
  }
}

function drawOnline(t) {
  const pts = t.online.map(s => [Date.parse(s.t) / 1000, s.v]);
  const t0 = pts.length ? pts[pts.length - 1][0] : 0;
  lineChart(document.getElementById("chart-online"), [{ cls: "online", points: pts.map(p => [p[0] - t0, p[1]]), noDots: true }],
    { xlabel: "seconds from now", empty: "no samples yet", yMin: 0, floor: 0 });
}

function bars(svg, groups, xlabel, emptyMsg) {
  clear(svg);
  if (groups.length === 0) { empty(svg, emptyMsg); return; }
  const hi = Math.max(1, ...groups.flatMap(g => g.values.map(v => v[0])));
  const { sy, b } = axes(svg, 0, 1, 0, hi, xlabel, () => "", false, true);
  const slot = (b.w - b.l - b.r) / groups.length;
  groups.forEach((g, i) => {
    const x0 = b.l + i * slot;
    const w = Math.max(1, slot * 0.8 / g.values.length);
    g.values.forEach(([v, cls], j) => {
      const r = el("rect", { x: x0 + slot * 0.1 + j * w, y: sy(v), width: w, height: Math.max(0, sy(0) - sy(v)), class: cls }, svg);
      el("title", {}, r).textContent = g.label + ": " + v;
    });
    if (groups.length <= 30 || i % Math.ceil(groups.length / 30) === 0) text(svg, x0 + slot / 2, b.h - b.b + 14, g.label, "middle");
  });
}

function drawParticipation(t) {
  const rounds = t.rounds.slice(-40);
  bars(document.getElementById("chart-participation"),
    rounds.map(r => ({ label: String(r.round), values: [[r.selected, "bar-selected"], [r.updates, "bar-delivered"]] })),
    "round", "no rounds yet");
  const hist = [];
  (t.participation || []).forEach((n, k) => { if (k > 0) hist.push({ label: String(k), values: [[n, "bar-hist"]] }); });
  bars(document.getElementById("chart-histogram"), hist, "rounds delivered to", "no committed rounds since start");
}

function drawPrivacy(t) {
  const fig = document.getElementById("privacy");
  fig.hidden = !t.privacy;
  if (!t.privacy) return;
  const pts = t.versions.filter(v => v.epsilon !== undefined).map(v => [v.round, v.epsilon]);
  lineChart(document.getElementById("chart-privacy"), [{ cls: "epsilon", points: pts }],
    { xlabel: "round", hline: t.privacy.budget_epsilon, yMin: 0, empty: "nothing spent yet", floor: 0, xInt: true });
}

function renderTask(t) {
  document.getElementById("task").hidden = false;
  document.getElementById("task-title").textContent = "Task " + t.name;
  let info = `${t.status} · ${t.model} on ${t.dataset} · ${t.strategy} · version ${t.version} · ${t.round} rounds committed`;
  if (t.running) info += ` · round ${t.running.round} in ${t.running.phase}: ${t.running.delivered}/${t.running.selected} delivered`;
  if (t.privacy) info += ` · ε ${fmt(t.epsilon)} of ${fmt(t.privacy.budget_epsilon)} (δ ${t.privacy.delta})`;
  document.getElementById("task-info").textContent = info;
  drawAccuracy(t); drawLoss(t); drawTimeline(t); drawOnline(t); drawParticipation(t); drawPrivacy(t);
}

function renderOverview(ov) {
  document.getElementById("agents").textContent = `agents: ${ov.online} online of ${ov.enrolled} enrolled`;
  const tb = document.querySelector("#tasks tbody");
  tb.textContent = "";
  if (!selected && ov.tasks.length) selected = ov.tasks[0].name;
  for (const t of ov.tasks) {
    const tr = document.createElement("tr");
    tr.dataset.task = t.name;
    if (t.name === selected) tr.className = "selected";
    const m = t.metrics || {};
    const eps = t.epsilon !== undefined ? fmt(t.epsilon) + " / " + fmt(t.budget_epsilon) : "–";
    for (const c of [t.name, t.status, t.version, t.round, t.phase || "–", fmt(m.accuracy),
      fmt(m.test_loss !== undefined ? m.test_loss : m.train_loss), eps]) {
      const td = document.createElement("td");
      td.textContent = c;
      tr.appendChild(td);
    }
    tr.addEventListener("click", () => { selected = t.name; location.hash = "task=" + encodeURIComponent(t.name); refresh(); });
    tb.appendChild(tr);
  }
}

async function getJSON(path) {
  const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(`${path}: ${r.status} ${body.error || r.statusText}`);
  return body;
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  const errEl = document.getElementById("error");
  try {
    renderOverview(await getJSON("/api/tasks"));
    if (selected) renderTask(await getJSON("/api/tasks/" + encodeURIComponent(selected)));
    errEl.hidden = true;
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "true";
  } catch (e) {
    errEl.textContent = String(e.message || e);
    errEl.hidden = false;
  } finally {
    busy = false;
  }
}

window.addEventListener("hashchange", () => {
  selected = decodeURIComponent((location.hash.match(/task=([^&]*)/) || [])[1] || "") || selected;
  refresh();
});
refresh();
setInterval(refresh, POLL_MS);
