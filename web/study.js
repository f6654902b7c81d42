// `/studies/{name}`: optimization history, parallel coordinates with brushing, slice
// plots, intermediate-value curves and the trials table, all over the same filters
// (states, param/value ranges), and updated live while workers run.
import { getJSON } from './api.js';
import { TrialData, loadTrials, loadColumns, loadCurves, follow, CURVE_TRIALS, CURVE_POINTS } from './data.js';
import { ParallelCoords } from './pcp.js';
import { ParetoView, ContourView, GradientView, paretoFront } from './views.js';
import { scatterSeries, stampHook } from './scatter.js';
import { TrialTable } from './table.js';
import { el, fmt, ago, COLORS, STATES, STATE_CODE, setCrumbs, setLive, trialHref, objectivesOf } from './util.js';

const MAX_SLICES = 12;
// This hpod serves /v1/studies/{s}/columns and /curves (docs/API.md "Dashboard endpoints").
const HAS_COLUMNS = true;
const MAX_CURVES = 100;

export async function showStudy(main, name) {
  setCrumbs({ text: 'Studies', href: '/' }, { text: name });
  document.title = `${name} · hpod`;
  let study;
  try {
    study = await getJSON(`/v1/studies/${encodeURIComponent(name)}`);
  } catch (e) {
    main.replaceChildren(el('h1', {}, name), el('p', { class: 'error', role: 'alert' }, e.status === 404 ? 'No such study.' : `Cannot load the study: ${e.message}`));
    return;
  }
  const data = new TrialData(study);
  let withInter = study.pruner && study.pruner.type !== 'none';
  const view = new StudyView(main, data, withInter);
  const t0 = performance.now();
  // hpod's binary columns when it has them, else the CSV export.
  data.columnar = HAS_COLUMNS && (await loadColumns(data, 0)) !== null;
  if (!data.columnar) await loadTrials(data, 0, withInter);
  else {
    // Curves with a pruner, and without one when trials reported anyway (multi-objective
    // studies take no pruner but keep their reports).
    data.curvesAt = Date.now();
    if ((await loadCurves(data, withInter ? CURVE_TRIALS : 1, CURVE_POINTS)) && !withInter && data.withReports > 0) {
      withInter = view.withInter = true;
      await loadCurves(data, CURVE_TRIALS, CURVE_POINTS);
    }
  }
  view.build();
  view.timing = performance.now() - t0;
  view.refresh(true);
  const alive = () => document.body.contains(view.root);
  follow(data, withInter, (seen) => { view.header(); view.refresh(true, seen); if (HAS_COLUMNS && Date.now() - view.impAt > 30000) view.loadImportances(); setLive(`live · updated ${new Date().toLocaleTimeString()}`); }, alive);
  setLive('live');
}

class StudyView {
  constructor(main, data, withInter) {
    this.data = data;
    this.withInter = withInter;
    this.obj = 0; // the objective shown
    this.states = new Set(STATES.map((s, i) => i));
    this.ranges = new Map();
    this.log = false;
    this.root = el('div', { class: 'study' });
    this.root.__view = this; // for the browser test
    // Views draw in the next animation frame, and only those on screen (or near it);
    // the others when scrolled to. Brushing thus costs the visible charts only.
    this.views = [];
    this.drawMs = {};
    this.io = new IntersectionObserver((entries) => {
      for (const e of entries) {
        const v = e.target.__dashView;
        if (!v) continue;
        v.visible = e.isIntersecting;
        if (v.visible && v.dirty) this.schedule();
      }
    }, { rootMargin: '200px' });
    this.head = el('section', { class: 'summary', 'aria-label': 'Summary' });
    this.root.append(el('h1', {}, data.study.name), this.head);
    main.replaceChildren(this.root);
    this.header();
  }

  header() {
    const s = this.data.study;
    const t = s.trials || {};
    const d = this.data;
    let b = s.best_trial;
    // Live: the events name the best trial; its value comes from the columns.
    if (d.bestNumber !== undefined) b = d.bestNumber >= 0 && d.bestNumber < d.n ? { number: d.bestNumber, value: d.values[0][d.bestNumber] } : null;
    const bestVal = b ? (typeof b.value === 'number' ? b.value : b.values ? Object.values(b.values)[0] : null) : null;
    const multi = d.objectives.length > 1;
    const front = this.pareto ? this.pareto.front.length : (s.best_trials || []).length;
    this.head.replaceChildren(
      el('dl', { class: 'facts' },
        el('dt', {}, 'Objectives'), el('dd', {}, objectivesOf(s).map((o) => `${o.name} (${o.direction})`).join(', ')),
        el('dt', {}, 'Sampler'), el('dd', {}, s.sampler ? s.sampler.type : ''),
        el('dt', {}, 'Pruner'), el('dd', {}, s.pruner ? s.pruner.type : 'none'),
        el('dt', {}, 'Trials'), el('dd', { id: 'study-counts' }, STATES.map((st) => el('span', { class: `count st-${st}`, 'data-state': st }, `${st} `, el('b', {}, String(t[st] || 0)))),
          el('span', { class: 'count', 'data-state': 'total' }, 'total ', el('b', {}, String(t.total || 0)))),
        multi ? [el('dt', {}, 'Pareto front'), el('dd', { id: 'front-size', 'data-front': String(front) }, `${front.toLocaleString()} trials`),
          el('dt', {}, 'Shown objective'), el('dd', {}, el('select', { id: 'objective', 'aria-label': 'Objective shown in the history, slices and contour', onchange: (e) => this.setObjective(Number(e.target.value)) },
            d.objectives.map((o, k) => el('option', { value: String(k), selected: k === this.obj }, o.name))))]
          : [el('dt', {}, 'Best'), el('dd', { id: 'best-value', 'data-value': bestVal === null ? '' : String(bestVal), 'data-number': b ? String(b.number) : '' },
            b ? [fmt(bestVal), ' (', el('a', { href: trialHref(s.name, b.number) }, `trial ${b.number}`), ')'] : 'no complete trial yet')],
        el('dt', {}, 'Created'), el('dd', {}, s.created_at ? `${s.created_at} (${ago(Date.parse(s.created_at))})` : '')));
  }

  build() {
    const d = this.data;
    // History.
    this.logBox = el('input', { type: 'checkbox', id: 'log-scale', onchange: () => { this.log = this.logBox.checked; this.makeHistory(); this.setHistory(true); } });
    this.histBox = el('div', { id: 'history', class: 'chart' });
    this.root.append(el('section', { 'aria-labelledby': 'h-history' }, el('h2', { id: 'h-history' }, 'Optimization history'),
      el('div', { class: 'bar' }, el('label', {}, this.logBox, ' log scale'),
        el('span', { class: 'legend' }, el('span', { class: 'key k-complete' }, 'complete'), el('span', { class: 'key k-best' }, 'best so far'),
          el('span', { class: 'key k-pruned' }, 'pruned (last reported value)'), el('span', { class: 'key k-failed' }, 'failed (at the bottom)'))),
      this.histBox));
    // Pareto front (several objectives).
    if (d.objectives.length > 1) {
      const sec = el('section', { 'aria-labelledby': 'h-pareto' }, el('h2', { id: 'h-pareto' }, 'Pareto front'));
      this.root.append(sec);
      this.pareto = new ParetoView(sec, d, (box) => this.width(box));
    }
    // Gradient studies: loss across optimizer versions, a vector's values.
    if (d.study.sampler && d.study.sampler.type === 'gradient') {
      const sec = el('section', { 'aria-labelledby': 'h-gradient' }, el('h2', { id: 'h-gradient' }, 'Gradient optimizer'));
      this.root.append(sec);
      this.gradient = new GradientView(sec, d, (box) => this.width(box), () => d.values[this.obj]);
    }
    // Parallel coordinates.
    const pcpBox = el('div', { class: 'chart' });
    this.root.append(el('section', { 'aria-labelledby': 'h-pcp' }, el('h2', { id: 'h-pcp' }, 'Parallel coordinates'), pcpBox));
    this.axes = [...d.params.map((p) => ({ key: p.name, label: p.name, col: d.cols[p.name], log: !!p.log, choices: p.type === 'categorical' ? p.choices.map(String) : null })),
      ...d.objectives.map((o, k) => ({ key: `value:${k}`, label: d.objectives.length === 1 ? 'value' : o.name, col: d.values[k], log: false, choices: null }))];
    this.pcp = new ParallelCoords(pcpBox, this.axes, (key, range) => {
      if (key === null) this.ranges.clear(); else if (range) this.ranges.set(key, range); else this.ranges.delete(key);
      this.refresh(false);
    });
    // Slices.
    this.sliceBox = el('div', { class: 'slices' });
    this.root.append(el('section', { 'aria-labelledby': 'h-slices' }, el('h2', { id: 'h-slices' }, 'Slice plots'),
      el('p', { class: 'muted small' }, 'The objective against each param (complete trials that pass the filters).'), this.sliceBox));
    // Contour of a param pair.
    if (d.params.length >= 2) {
      const sec = el('section', { 'aria-labelledby': 'h-contour' }, el('h2', { id: 'h-contour' }, 'Contour'));
      this.root.append(sec);
      this.contour = new ContourView(sec, d, (box) => this.width(box), () => d.values[this.obj]);
    }
    // Importances (hpod computes them: PED-ANOVA, docs/API.md "Dashboard endpoints").
    if (HAS_COLUMNS) {
      this.impBox = el('div', { id: 'importances' }, el('p', { class: 'muted small' }, 'Computing…'));
      this.root.append(el('section', { 'aria-labelledby': 'h-imp' }, el('h2', { id: 'h-imp' }, 'Parameter importances'),
        el('p', { class: 'muted small' }, 'PED-ANOVA (as Optuna 4): how much each param\'s distribution among the best 10% of complete trials differs from all complete trials. Computed by hpod over every trial; filters do not apply.'),
        this.impBox));
      this.loadImportances();
    }
    // Intermediate values.
    if (this.withInter) {
      this.interBox = el('div', { class: 'chart', id: 'intermediate' });
      this.interNote = el('p', { class: 'muted small' });
      this.root.append(el('section', { 'aria-labelledby': 'h-inter' }, el('h2', { id: 'h-inter' }, 'Intermediate values'),
        el('span', { class: 'legend' }, el('span', { class: 'key k-complete' }, 'complete'), el('span', { class: 'key k-pruned' }, 'pruned'), el('span', { class: 'key k-running' }, 'running')),
        this.interNote, this.interBox));
    }
    // Filters and table.
    this.root.append(this.filterForm());
    const tableBox = el('section', { 'aria-labelledby': 'h-trials' }, el('h2', { id: 'h-trials' }, 'Trials'));
    this.root.append(tableBox);
    this.table = new TrialTable(tableBox, d);
    this.table.onSort = () => this.table.update(this.mask);
    this.makeHistory();
    this.makeSlices();
    this.view(this.histBox, (c) => this.setHistory(c));
    this.view(pcpBox, () => this.pcp.draw(this.complete, this.mask));
    if (this.withInter) this.view(this.interBox, () => this.setCurves());
    if (this.pareto) this.view(this.pareto.box, (c) => this.pareto.draw(c, this.mask));
    if (this.contour) this.view(this.contour.box, (c) => this.contour.draw(c, this.mask));
    if (this.gradient) this.view(this.gradient.box, () => this.gradient.draw());
  }

  // A view: `draw(dataChanged)` runs in an animation frame once `elm` is near the screen.
  view(elm, draw) {
    const v = { elm, draw, dirty: false, changed: false, visible: false };
    elm.__dashView = v;
    this.views.push(v);
    this.io.observe(elm);
    return v;
  }

  invalidate(dataChanged) {
    for (const v of this.views) { v.dirty = true; v.changed = v.changed || dataChanged; }
    this.schedule();
  }

  schedule() {
    if (this.raf) return;
    this.raf = requestAnimationFrame(() => { this.raf = 0; this.flush(false); });
  }

  // Draw the dirty views that are visible (all of them with `all`, e.g. before a screenshot).
  flush(all) {
    let pending = 0;
    for (const v of this.views) {
      if (!v.dirty) continue;
      if (!all && !v.visible) { pending++; continue; }
      const c = v.changed;
      v.dirty = false; v.changed = false;
      const t0 = performance.now();
      v.draw(c);
      this.drawMs[v.elm.id || v.elm.className] = performance.now() - t0; // for the benchmark
    }
    this.root.dataset.pending = String(pending);
  }

  setObjective(k) {
    this.obj = k;
    this.makeHistory();
    for (const { u } of this.slices) u.destroy();
    this.sliceBox.replaceChildren();
    for (const v of this.views) if (v.slice) { this.io.unobserve(v.elm); }
    this.views = this.views.filter((v) => !v.slice);
    this.makeSlices();
    this.refresh(true);
  }

  async loadImportances() {
    this.impAt = Date.now();
    let r;
    try {
      r = await getJSON(`/v1/studies/${encodeURIComponent(this.data.study.name)}/importances`);
    } catch (e) {
      this.impBox.replaceChildren(el('p', { class: 'error' }, `Cannot compute importances: ${e.message}`));
      return;
    }
    const max = Math.max(...r.importances.map((x) => x.importance), 0);
    const rows = [...r.importances].sort((a, b) => b.importance - a.importance);
    this.impBox.replaceChildren(
      el('p', { class: 'muted small' }, `${r.trials.toLocaleString()} complete trials, the best ${r.top_trials.toLocaleString()} of them as the target.`),
      el('table', { class: 'grid importances' }, el('tbody', {}, rows.map((x) => el('tr', { 'data-param': x.param },
        el('th', { scope: 'row' }, x.param),
        el('td', { class: 'bar-cell' }, el('span', { class: 'bar', 'data-w': String(max > 0 ? x.importance / max : 0) })),
        el('td', { class: 'num' }, fmt(x.importance)))))));
    for (const b of this.impBox.querySelectorAll('.bar')) b.style.width = `${(Number(b.dataset.w) * 100).toFixed(1)}%`;
  }

  filterForm() {
    const d = this.data;
    const boxes = STATES.map((st, i) => el('label', { class: 'state-filter' },
      el('input', { type: 'checkbox', checked: true, 'data-state': st, onchange: (e) => { if (e.target.checked) this.states.add(i); else this.states.delete(i); this.refresh(false); } }), ` ${st}`));
    const keySel = el('select', { id: 'range-key', 'aria-label': 'Column to filter' },
      this.axes.map((a) => el('option', { value: a.key }, a.label)));
    const lo = el('input', { id: 'range-lo', type: 'number', step: 'any', 'aria-label': 'From (inclusive)', placeholder: 'from' });
    const hi = el('input', { id: 'range-hi', type: 'number', step: 'any', 'aria-label': 'To (inclusive)', placeholder: 'to' });
    this.active = el('ul', { class: 'active-filters', id: 'active-filters', 'aria-label': 'Active range filters' });
    const apply = (e) => {
      e.preventDefault();
      const a = lo.value === '' ? -Infinity : Number(lo.value); const b = hi.value === '' ? Infinity : Number(hi.value);
      this.pcp.setBrush(keySel.value, [Math.min(a, b), Math.max(a, b)]);
    };
    const csv = el('button', { type: 'button', id: 'csv-download', onclick: () => this.download() }, 'Download CSV of the filtered trials');
    return el('section', { 'aria-labelledby': 'h-filters', class: 'filters' }, el('h2', { id: 'h-filters' }, 'Filters'),
      el('fieldset', {}, el('legend', {}, 'States'), boxes),
      el('form', { class: 'range', onsubmit: apply }, el('fieldset', {}, el('legend', {}, 'Range (also set by brushing an axis)'), keySel, lo, hi,
        el('button', { type: 'submit' }, 'Apply'),
        el('button', { type: 'button', onclick: () => { this.pcp.brush.clear(); this.ranges.clear(); this.refresh(false); } }, 'Clear ranges'))),
      this.active, csv);
  }

  download() {
    const blob = new Blob([this.table.csv()], { type: 'text/csv' });
    const a = el('a', { href: URL.createObjectURL(blob), download: `${this.data.study.name}-trials.csv` });
    document.body.append(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
  }

  computeMask() {
    const d = this.data;
    const mask = new Uint8Array(d.n);
    // The rows each scatter draws: complete, pruned and failed trials that pass.
    const lists = [new Int32Array(d.n), new Int32Array(d.n), new Int32Array(d.n)]; const len = [0, 0, 0];
    const ranges = [...this.ranges].map(([k, r]) => [d.col(k), r[0], r[1]]);
    const st = d.state;
    for (let i = 0; i < d.n; i++) {
      if (!this.states.has(st[i])) continue;
      let ok = 1;
      for (let k = 0; k < ranges.length; k++) {
        const v = ranges[k][0][i];
        if (!(v >= ranges[k][1] && v <= ranges[k][2])) { ok = 0; break; }
      }
      mask[i] = ok;
      const s = st[i] - 2;
      if (ok && s >= 0 && s < 3) lists[s][len[s]++] = i;
    }
    this.lists = { complete: lists[0].subarray(0, len[0]), pruned: lists[1].subarray(0, len[1]), failed: lists[2].subarray(0, len[2]) };
    return mask;
  }

  // Recompute the filter and redraw every view; `dataChanged` refits scales and orders.
  refresh(dataChanged, seen) {
    const t0 = performance.now();
    const d = this.data;
    this.mask = this.computeMask();
    if (dataChanged) {
      const v = d.values[this.obj]; const st = d.state;
      let m = 0;
      for (let i = 0; i < d.n; i++) if (st[i] === STATE_CODE.complete && Number.isFinite(v[i])) m++;
      const complete = new Int32Array(m);
      for (let i = 0, k = 0; i < d.n; i++) if (st[i] === STATE_CODE.complete && Number.isFinite(v[i])) complete[k++] = i;
      this.complete = complete;
      this.pcp.fit(this.complete, seen);
      if (this.pareto) {
        // The front over every objective, as /pareto (the whole study; filters only pick what is drawn).
        this.pareto.front = paretoFront(d);
        const f = document.getElementById('front-size');
        if (f) { f.dataset.front = String(this.pareto.front.length); f.textContent = `${this.pareto.front.length.toLocaleString()} trials`; }
      }
      this.fitValues();
      this.updateLogBox();
    }
    this.invalidate(dataChanged);
    this.table.update(this.mask);
    this.active.replaceChildren(...[...this.ranges].map(([k, r]) => el('li', { 'data-key': k, 'data-lo': String(r[0]), 'data-hi': String(r[1]) }, `${this.axes.find((a) => a.key === k).label}: ${fmt(r[0])} … ${fmt(r[1])} `,
      el('button', { type: 'button', 'aria-label': `Remove the filter on ${k}`, onclick: () => this.pcp.setBrush(k, null) }, '×'))));
    this.root.dataset.trials = String(d.n);
    this.root.dataset.filtered = String(this.table.rows.length);
    this.root.dataset.version = String(d.version);
    this.lastRefreshMs = performance.now() - t0;
    this.root.dataset.refreshMs = this.lastRefreshMs.toFixed(1);
  }

  updateLogBox() {
    const d = this.data; const v = d.values[this.obj];
    let ok = true;
    for (let i = 0; i < d.n; i++) if (v[i] <= 0) { ok = false; break; }
    this.logBox.disabled = !ok;
    this.logBox.title = ok ? '' : 'Some values are ≤ 0';
    if (!ok && this.log) { this.log = false; this.logBox.checked = false; this.makeHistory(); }
  }

  width(box) { return Math.max(400, (box.clientWidth || this.root.clientWidth || 900) - 8); }

  // The objective's range over complete and pruned trials (log: positive values only).
  fitValues() {
    const d = this.data; const v = d.values[this.obj];
    let lo = Infinity; let hi = -Infinity; let pos = Infinity;
    for (let i = 0; i < d.n; i++) {
      const y = v[i];
      if (!Number.isFinite(y)) continue;
      if (y < lo) lo = y; if (y > hi) hi = y; if (y > 0 && y < pos) pos = y;
    }
    if (!Number.isFinite(lo)) { lo = 0; hi = 1; pos = 1; }
    if (lo === hi) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.03;
    this.yLin = [lo - pad, hi + pad];
    this.yLog = [pos / 1.2, Math.max(hi, pos) * 1.2];
    this.yBottom = lo;
  }

  yRange() { return this.log ? this.yLog : this.yLin; }

  makeHistory() {
    if (this.hist) this.hist.destroy();
    const root = this.root;
    const d = this.data;
    const st = (code) => () => (this.lists ? this.lists[['complete', 'pruned', 'failed'][code - 2]] : null);
    this.hist = new globalThis.uPlot({
      width: this.width(this.histBox), height: 320,
      scales: { x: { time: false }, y: this.log ? { distr: 3, range: () => this.yRange() } : { range: () => this.yRange() } },
      axes: [{ label: 'trial' }, { label: d.objectives[this.obj].name }],
      legend: { show: false },
      cursor: { drag: { x: true, y: false }, points: { show: false } },
      series: [{},
        { label: 'complete', ...scatterSeries(st(2), COLORS.complete, 3) },
        { label: 'best so far', stroke: COLORS.best, width: 2, spanGaps: true, points: { show: false } },
        { label: 'pruned', ...scatterSeries(st(3), COLORS.pruned, 4) },
        { label: 'failed', ...scatterSeries(st(4), COLORS.failed, 5, () => (this.log ? this.yLog[0] * 1.1 : this.yBottom)) }],
      hooks: { drawSeries: [stampHook], draw: [(u) => { if (!root.dataset.historyDrawn && u.data[0].length > 0) { root.dataset.historyDrawn = String(performance.now()); performance.mark('history-drawn'); } }] },
    }, [[], [], [], [], []], this.histBox);
    this.histData = null;
  }

  // The history's columns change with the data only; a filter change just redraws.
  setHistory(dataChanged) {
    const d = this.data; const v = d.values[this.obj];
    if (dataChanged || !this.histData) {
      const n = d.n;
      const max = d.objectives[this.obj].direction === 'maximize';
      const x = new Float64Array(n); const best = new Array(n);
      let b = null;
      for (let i = 0; i < n; i++) {
        x[i] = i;
        const y = v[i];
        if (d.state[i] === 2 && Number.isFinite(y)) b = b === null ? y : (max ? Math.max(b, y) : Math.min(b, y));
        best[i] = b;
      }
      const vs = v.subarray(0, n);
      this.histData = [x, vs, best, vs, vs];
      this.hist.setData(this.histData);
    } else {
      // Scatter series are stamped by the drawSeries hook on every draw, so only the
      // canvas is redrawn: the best-so-far line's path (100,000 points) is reused.
      this.hist.redraw(false, false);
    }
  }

  makeSlices() {
    const d = this.data;
    this.slices = [];
    const params = d.params.slice(0, MAX_SLICES);
    const accept = () => (this.lists ? this.lists.complete : null);
    for (const p of params) {
      const box = el('figure', { class: 'slice' });
      this.sliceBox.append(box);
      const cat = p.type === 'categorical';
      const xr = cat ? [-0.5, p.choices.length - 0.5] : p.type === 'int' && !p.log ? [p.low - 0.5, p.high + 0.5] : p.log ? [p.low, p.high] : [p.low - (p.high - p.low) * 0.02, p.high + (p.high - p.low) * 0.02];
      const u = new globalThis.uPlot({
        width: 300, height: 220,
        scales: { x: { time: false, ...(p.log ? { distr: 3 } : {}), range: () => xr }, y: { range: () => this.yLin } },
        axes: [{ label: p.name, ...(cat ? { values: (u2, vals) => vals.map((v) => (Number.isInteger(v) && p.choices[v] !== undefined ? String(p.choices[v]) : '')) } : {}) }, { label: d.objectives[this.obj].name, size: 60 }],
        legend: { show: false }, cursor: { show: false },
        series: [{}, scatterSeries(accept, 'rgba(31,95,191,0.45)', 2)],
        hooks: { drawSeries: [stampHook] },
      }, [[], []], box);
      const s = { p, u };
      this.slices.push(s);
      const v = this.view(box, (c) => this.setSlice(s, c));
      v.slice = true;
    }
    if (d.params.length > MAX_SLICES) this.sliceBox.append(el('p', { class: 'muted small' }, `The first ${MAX_SLICES} params are shown.`));
  }

  setSlice({ p, u }, dataChanged) {
    const d = this.data; const v = d.values[this.obj];
    if (dataChanged || u.data[0].length !== d.n) u.setData([d.cols[p.name].subarray(0, d.n), v.subarray(0, d.n)]);
    else u.redraw(false, false);
  }

  setCurves() {
    const d = this.data; const m = this.mask;
    const ids = [];
    for (const [num] of d.intermediate) if (m[num]) ids.push(num);
    ids.sort((a, b) => a - b);
    const pick = [];
    const stride = Math.max(1, ids.length / MAX_CURVES);
    for (let f = 0; f < ids.length; f += stride) pick.push(ids[Math.floor(f)]);
    const stepSet = new Set();
    for (const num of pick) for (const s of d.intermediate.get(num).steps) stepSet.add(s);
    const steps = [...stepSet].sort((a, b) => a - b);
    const pos = new Map(steps.map((s, i) => [s, i]));
    const series = [{}]; const cols = [steps];
    for (const num of pick) {
      const iv = d.intermediate.get(num);
      const ys = new Array(steps.length).fill(null);
      iv.steps.forEach((s, j) => { ys[pos.get(s)] = iv.values[j]; });
      const st = d.state[num];
      const color = st === 3 ? COLORS.pruned : st === 2 ? 'rgba(31,95,191,0.6)' : COLORS.running;
      series.push({ label: `trial ${num}`, stroke: color, width: 1, spanGaps: true, points: { show: false } });
      cols.push(ys);
    }
    const sig = pick.join(',') + '/' + steps.length + '/' + d.version;
    if (sig === this.curveSig) return;
    this.curveSig = sig;
    if (this.inter) this.inter.destroy();
    this.interNote.textContent = `${ids.length.toLocaleString()} trials with intermediate values${d.withReports ? ` (of ${d.withReports.toLocaleString()}; hpod sent ${d.intermediate.size.toLocaleString()}, evenly spaced, each cut to ${CURVE_POINTS} points)` : ''} pass the filters` + (ids.length > pick.length ? `; ${pick.length} of them (evenly spaced) are drawn.` : '.');
    this.inter = new globalThis.uPlot({
      width: this.width(this.interBox), height: 280,
      scales: { x: { time: false } }, axes: [{ label: 'step' }, { label: 'intermediate value' }],
      legend: { show: false }, series,
    }, cols, this.interBox);
  }
}
