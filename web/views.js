// The study page's views beyond history, parallel coordinates and slices: the Pareto
// front of a multi-objective study, a contour (binned mean) for a param pair, and the
// views of a gradient study. All draw with uPlot: points through the page's scatter
// path builder, the contour's cells as rects in a draw hook.
import { request } from './api.js';
import { el, fmt, COLORS } from './util.js';
import { scatterSeries, stampHook } from './scatter.js';

// ---- Pareto front -----------------------------------------------------------------

// The feasible non-dominated complete trials over every objective (as hpod's /pareto:
// maximized objectives negated, a missing value as +inf, duplicates all kept), ascending.
export function paretoFront(d) {
  const m = d.objectives.length;
  const sign = d.objectives.map((o) => (o.direction === 'maximize' ? -1 : 1));
  const cand = [];
  for (let i = 0; i < d.n; i++) {
    if (d.state[i] !== 2) continue;
    if (d.feasible && !d.feasible[i]) continue;
    cand.push(i);
  }
  // Losses copied once into one array (the sort reads them n log n times).
  const L = new Float64Array(cand.length * m);
  cand.forEach((i, j) => { for (let k = 0; k < m; k++) { const v = d.values[k][i]; L[j * m + k] = Number.isNaN(v) ? Infinity : sign[k] * v; } });
  const pos = new Int32Array(cand.length);
  for (let j = 0; j < pos.length; j++) pos[j] = j;
  // Lexicographic order: a point's dominators all come before it.
  pos.sort((a, b) => {
    for (let k = 0; k < m; k++) { const x = L[a * m + k]; const y = L[b * m + k]; if (x !== y) return x < y ? -1 : 1; }
    return a - b;
  });
  const loss = (j, k) => L[j * m + k];
  const front = [];
  for (const p of pos) {
    let dominated = false;
    for (const q of front) {
      let le = true; let lt = false;
      for (let k = 0; k < m; k++) {
        const x = loss(q, k); const y = loss(p, k);
        if (x > y) { le = false; break; }
        if (x < y) lt = true;
      }
      if (le && lt) { dominated = true; break; }
    }
    if (!dominated) front.push(p);
  }
  return Int32Array.from(front, (j) => cand[j]).sort();
}

export class ParetoView {
  constructor(section, d, width) {
    this.d = d;
    this.widthOf = width;
    this.ox = 0; this.oy = Math.min(1, d.objectives.length - 1);
    const sel = (id, label, v, set) => el('label', {}, `${label} `, el('select', { id, onchange: (e) => { set(Number(e.target.value)); this.make(); this.draw(true); } },
      d.objectives.map((o, k) => el('option', { value: String(k), selected: k === v }, o.name))));
    this.info = el('p', { class: 'muted small', id: 'pareto-info' });
    this.box = el('div', { class: 'chart', id: 'pareto', role: 'img', 'aria-label': 'Scatter of the two chosen objectives: the Pareto front in green, infeasible trials in grey; the counts are in the text above.' });
    section.append(el('div', { class: 'bar' },
      sel('pareto-x', 'x', this.ox, (k) => { this.ox = k; }), sel('pareto-y', 'y', this.oy, (k) => { this.oy = k; }),
      el('span', { class: 'legend' }, el('span', { class: 'key k-front' }, 'Pareto front'), el('span', { class: 'key k-complete' }, 'feasible'),
        d.feasible ? el('span', { class: 'key k-infeasible' }, 'infeasible') : null)),
    this.info, this.box);
    this.front = new Int32Array(0);
    this.make();
  }

  range(k) {
    const v = this.d.values[k]; let lo = Infinity; let hi = -Infinity;
    for (let i = 0; i < this.d.n; i++) { const y = v[i]; if (Number.isFinite(y) && this.d.state[i] === 2) { if (y < lo) lo = y; if (y > hi) hi = y; } }
    if (!Number.isFinite(lo)) { lo = 0; hi = 1; }
    if (lo === hi) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.03;
    return [lo - pad, hi + pad];
  }

  make() {
    if (this.u) this.u.destroy();
    const d = this.d;
    this.xr = this.range(this.ox); this.yr = this.range(this.oy);
    this.u = new globalThis.uPlot({
      width: Math.min(760, this.widthOf(this.box)), height: 420,
      scales: { x: { time: false, range: () => this.xr }, y: { range: () => this.yr } },
      axes: [{ label: `${d.objectives[this.ox].name} (${d.objectives[this.ox].direction})` }, { label: `${d.objectives[this.oy].name} (${d.objectives[this.oy].direction})`, size: 60 }],
      legend: { show: false }, cursor: { show: false },
      series: [{},
        scatterSeries(() => this.lists.infeasible, 'rgba(120,120,120,0.6)', 3),
        scatterSeries(() => this.lists.feasible, COLORS.complete, 3),
        scatterSeries(() => this.lists.front, COLORS.best, 7)],
      hooks: { drawSeries: [stampHook] },
    }, [[], [], [], []], this.box);
    this.data = null;
  }

  // `mask`: the page's filter. The front is the whole study's (as /pareto); the filter
  // picks which points are drawn.
  draw(dataChanged, mask) {
    const d = this.d;
    if (mask) this.mask = mask;
    if (dataChanged || !this.data) {
      this.xr = this.range(this.ox); this.yr = this.range(this.oy);
      const x = d.values[this.ox].subarray(0, d.n); const y = d.values[this.oy].subarray(0, d.n);
      this.data = [x, y, y, y];
    }
    const m = this.mask; const onFront = new Uint8Array(d.n);
    for (const i of this.front) onFront[i] = 1;
    const inf = []; const fea = []; const fr = [];
    for (let i = 0; i < d.n; i++) {
      if (d.state[i] !== 2 || (m && !m[i])) continue;
      if (onFront[i]) fr.push(i); else if (d.feasible && !d.feasible[i]) inf.push(i); else fea.push(i);
    }
    this.lists = { infeasible: inf, feasible: fea, front: fr };
    let infeasible = 0;
    if (d.feasible) for (let i = 0; i < d.n; i++) if (d.state[i] === 2 && !d.feasible[i]) infeasible++;
    this.box.dataset.front = String(this.front.length);
    this.box.dataset.frontNumbers = Array.from(this.front.slice(0, 200)).join(',');
    this.info.textContent = `Pareto front over all ${d.objectives.length} objectives: ${this.front.length.toLocaleString()} trials` +
      (d.feasible ? `; ${infeasible.toLocaleString()} complete trials infeasible` : '') +
      (d.objectives.length > 2 ? '. The front is over every objective; choose the pair shown.' : '.');
    if (dataChanged) this.u.setData(this.data);
    else this.u.redraw(false, false);
  }
}

// ---- contour: the mean objective over a grid of two params ----------------------------

const BINS = 24;
// Viridis at five stops (light to dark reads as low to high).
const STOPS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function color(t) {
  const x = Math.min(1, Math.max(0, t)) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x)); const f = x - i;
  const c = STOPS[i].map((v, k) => Math.round(v + (STOPS[i + 1][k] - v) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

export class ContourView {
  constructor(section, d, width, objective) {
    this.d = d;
    this.widthOf = width;
    this.objective = objective;
    const ps = d.params;
    this.px = 0; this.py = Math.min(1, ps.length - 1);
    const sel = (id, label, v, set) => el('label', {}, `${label} `, el('select', { id, onchange: (e) => { set(Number(e.target.value)); this.make(); this.draw(true); } },
      ps.map((p, k) => el('option', { value: String(k), selected: k === v }, p.name))));
    this.info = el('p', { class: 'muted small', id: 'contour-info' });
    this.box = el('div', { class: 'chart', id: 'contour', role: 'img', 'aria-label': 'Contour: the mean objective over a grid of the two chosen params, dark for low and light for high.' });
    section.append(el('div', { class: 'bar' }, sel('contour-x', 'x', this.px, (k) => { this.px = k; }), sel('contour-y', 'y', this.py, (k) => { this.py = k; })),
      this.info, this.box);
    this.make();
  }

  // A param's axis: [lo, hi] in its own units, log or linear, or a categorical's indexes.
  axis(p) {
    if (p.type === 'categorical') return { lo: -0.5, hi: p.choices.length - 0.5, log: false, bins: p.choices.length, cat: p.choices };
    if (p.type === 'int' && !p.log && p.high - p.low + 1 <= BINS) return { lo: p.low - 0.5, hi: p.high + 0.5, log: false, bins: p.high - p.low + 1 };
    return { lo: p.low, hi: p.high, log: !!p.log, bins: BINS };
  }

  make() {
    if (this.u) this.u.destroy();
    const ps = this.d.params;
    const px = ps[this.px]; const py = ps[this.py];
    this.ax = this.axis(px); this.ay = this.axis(py);
    const ticks = (a) => (a.cat ? { values: (u, vals) => vals.map((v) => (Number.isInteger(v) && a.cat[v] !== undefined ? String(a.cat[v]) : '')) } : {});
    this.u = new globalThis.uPlot({
      width: Math.min(640, this.widthOf(this.box)), height: 460,
      scales: { x: { time: false, ...(this.ax.log ? { distr: 3 } : {}), range: () => [this.ax.lo, this.ax.hi] },
        y: { ...(this.ay.log ? { distr: 3 } : {}), range: () => [this.ay.lo, this.ay.hi] } },
      axes: [{ label: px.name, ...ticks(this.ax) }, { label: py.name, size: 60, ...ticks(this.ay) }],
      legend: { show: false }, cursor: { show: false },
      series: [{}, { show: false }],
      hooks: { draw: [(u) => this.paint(u)] },
    }, [[this.ax.lo, this.ax.hi], [null, null]], this.box);
    this.grid = null;
  }

  bin(a, v) {
    if (!Number.isFinite(v)) return -1;
    const t = a.log ? (Math.log(v) - Math.log(a.lo)) / (Math.log(a.hi) - Math.log(a.lo)) : (v - a.lo) / (a.hi - a.lo);
    return Math.min(a.bins - 1, Math.max(0, Math.floor(t * a.bins)));
  }

  edge(a, k) {
    const t = k / a.bins;
    return a.log ? Math.exp(Math.log(a.lo) + t * (Math.log(a.hi) - Math.log(a.lo))) : a.lo + t * (a.hi - a.lo);
  }

  draw(dataChanged, mask) {
    if (mask) this.mask = mask;
    const d = this.d; const ps = d.params;
    const xs = d.cols[ps[this.px].name]; const ys = d.cols[ps[this.py].name]; const v = this.objective();
    const nb = this.ax.bins * this.ay.bins;
    const sum = new Float64Array(nb); const cnt = new Uint32Array(nb);
    const m = this.mask;
    for (let i = 0; i < d.n; i++) {
      if (d.state[i] !== 2 || (m && !m[i]) || !Number.isFinite(v[i])) continue;
      const bx = this.bin(this.ax, xs[i]); const by = this.bin(this.ay, ys[i]);
      if (bx < 0 || by < 0) continue;
      const k = by * this.ax.bins + bx;
      sum[k] += v[i]; cnt[k]++;
    }
    let lo = Infinity; let hi = -Infinity; let cells = 0;
    for (let k = 0; k < nb; k++) if (cnt[k]) { const mean = sum[k] / cnt[k]; sum[k] = mean; if (mean < lo) lo = mean; if (mean > hi) hi = mean; cells++; }
    this.grid = { sum, cnt, lo, hi };
    this.box.dataset.cells = String(cells);
    this.info.textContent = cells ? `Mean objective of the complete trials that pass the filters, ${this.ax.bins}×${this.ay.bins} cells (${cells} with trials): ${fmt(lo)} (dark) … ${fmt(hi)} (light); empty cells are white.` : 'No complete trial passes the filters.';
    this.u.redraw(false, false);
  }

  paint(u) {
    const g = this.grid;
    if (!g) return;
    const ctx = u.ctx;
    const span = g.hi > g.lo ? g.hi - g.lo : 1;
    ctx.save();
    ctx.beginPath();
    ctx.rect(u.bbox.left, u.bbox.top, u.bbox.width, u.bbox.height);
    ctx.clip();
    for (let by = 0; by < this.ay.bins; by++) {
      const y0 = u.valToPos(this.edge(this.ay, by), 'y', true); const y1 = u.valToPos(this.edge(this.ay, by + 1), 'y', true);
      for (let bx = 0; bx < this.ax.bins; bx++) {
        const k = by * this.ax.bins + bx;
        if (!g.cnt[k]) continue;
        const x0 = u.valToPos(this.edge(this.ax, bx), 'x', true); const x1 = u.valToPos(this.edge(this.ax, bx + 1), 'x', true);
        ctx.fillStyle = color((g.sum[k] - g.lo) / span);
        ctx.fillRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0) + 0.5, Math.abs(y1 - y0) + 0.5);
      }
    }
    ctx.restore();
  }
}

// ---- gradient studies ------------------------------------------------------------------

// The loss across optimizer versions: trials of one version share one point (hpod's
// `point` column for studies with vector params, else the scalar params), so a version
// is a run of consecutive trials at one point; its mean value and trial count, and a
// histogram of a vector param's current values (fetched from the binary endpoint on
// demand: a large vector is megabytes, not part of the first view).
export class GradientView {
  constructor(section, d, width, objective) {
    this.d = d;
    this.widthOf = width;
    this.objective = objective;
    this.box = el('div', { class: 'chart', id: 'versions', role: 'img', 'aria-label': 'The mean value of each optimizer version.' });
    this.info = el('p', { class: 'muted small', id: 'versions-info' });
    section.append(el('h3', {}, 'Loss across optimizer versions'), this.info, this.box);
    const vecs = (d.study.params || []).filter((p) => p.size);
    const g = d.study.gradient || d.study.sampler_status || null;
    if (g && g.version !== undefined) section.append(el('p', { class: 'small', id: 'gradient-status' }, `Optimizer version ${g.version}` + (g.recent_value !== undefined && g.recent_value !== null ? `, mean of the last 20 complete trials ${fmt(g.recent_value)}` : '') + (g.lr !== undefined ? `, lr ${fmt(g.lr)}` : '') + '.'));
    if (vecs.length) {
      this.vsel = el('select', { id: 'vector-param' }, vecs.map((p) => el('option', { value: p.name }, `${p.name} (${p.size.toLocaleString()} values, ${(p.size * 8 / 1e6).toFixed(2)} MB)`)));
      this.histBox = el('div', { class: 'chart', id: 'vector-histogram', role: 'img', 'aria-label': 'Histogram of the vector param\'s values.' });
      this.histInfo = el('p', { class: 'muted small', id: 'vector-info' });
      section.append(el('h3', {}, 'A vector param\'s current values'),
        el('div', { class: 'bar' }, el('label', {}, 'Vector ', this.vsel), el('button', { type: 'button', id: 'vector-load', onclick: () => this.loadVector() }, 'Load histogram')),
        this.histInfo, this.histBox);
    }
    this.u = new globalThis.uPlot({
      width: this.widthOf(this.box), height: 280,
      scales: { x: { time: false } }, axes: [{ label: 'optimizer version (inferred)' }, { label: 'mean value', size: 60 }],
      legend: { show: false }, cursor: { points: { show: false } },
      series: [{}, { stroke: COLORS.complete, width: 2, spanGaps: true, points: { show: true, size: 4 } }],
    }, [[], []], this.box);
  }

  draw() {
    const d = this.d; const v = this.objective();
    const point = d.point;
    const keys = d.params.map((p) => d.cols[p.name]);
    const same = (i, j) => {
      if (point) return point[i] === point[j];
      for (const c of keys) if (!(c[i] === c[j] || (Number.isNaN(c[i]) && Number.isNaN(c[j])))) return false;
      return true;
    };
    const xs = []; const ys = [];
    let ver = -1; let sum = 0; let cnt = 0;
    for (let i = 0; i < d.n; i++) {
      if (i === 0 || !same(i, i - 1)) {
        if (cnt) { xs.push(ver); ys.push(sum / cnt); }
        ver++; sum = 0; cnt = 0;
      }
      if (d.state[i] === 2 && Number.isFinite(v[i])) { sum += v[i]; cnt++; }
    }
    if (cnt) { xs.push(ver); ys.push(sum / cnt); }
    this.box.dataset.versions = String(ver + 1);
    this.info.textContent = `${(ver + 1).toLocaleString()} versions (runs of consecutive trials at one point); each dot is the mean value of its complete trials.`;
    this.u.setData([xs, ys]);
  }

  async loadVector() {
    const d = this.d; const name = this.vsel.value;
    const last = d.n - 1;
    if (last < 0) { this.histInfo.textContent = 'No trial yet.'; return; }
    this.histInfo.textContent = 'Loading…';
    let buf;
    try {
      const r = await request(`/v1/studies/${encodeURIComponent(d.study.name)}/trials/${last}/params/${encodeURIComponent(name)}`);
      buf = await r.arrayBuffer();
    } catch (e) {
      this.histInfo.textContent = `Cannot load ${name}: ${e.message}`;
      return;
    }
    const a = new Float64Array(buf);
    let lo = Infinity; let hi = -Infinity;
    for (const x of a) if (Number.isFinite(x)) { if (x < lo) lo = x; if (x > hi) hi = x; }
    if (!Number.isFinite(lo)) { this.histInfo.textContent = 'No finite value.'; return; }
    if (lo === hi) { lo -= 0.5; hi += 0.5; }
    const nb = 50; const counts = new Array(nb).fill(0); const mids = [];
    for (let k = 0; k < nb; k++) mids.push(lo + (k + 0.5) * (hi - lo) / nb);
    for (const x of a) if (Number.isFinite(x)) counts[Math.min(nb - 1, Math.floor((x - lo) / (hi - lo) * nb))]++;
    this.histBox.dataset.count = String(a.length);
    this.histInfo.textContent = `${name} of trial ${last} (the newest, at the current version): ${a.length.toLocaleString()} values from ${fmt(lo)} to ${fmt(hi)}, 50 bins.`;
    if (this.hu) this.hu.destroy();
    this.hu = new globalThis.uPlot({
      width: Math.min(760, this.widthOf(this.histBox)), height: 260,
      scales: { x: { time: false, range: () => [lo, hi] } }, axes: [{ label: name }, { label: 'count', size: 60 }],
      legend: { show: false }, cursor: { show: false },
      series: [{}, { stroke: COLORS.complete, fill: 'rgba(31,95,191,0.5)', paths: globalThis.uPlot.paths.bars({ size: [1, Infinity] }), points: { show: false } }],
    }, [mids, counts], this.histBox);
  }
}
