// Parallel coordinates over the params and the objective, drawn on a canvas (uPlot has
// no such chart). Drag along an axis to brush a range; click an axis to clear its brush.
// At most MAX_LINES lines are drawn (an evenly spaced sample); brushing filters all rows.
import { el, fmt } from './util.js';

const MAX_LINES = 10000;
// The selected lines drawn over the grey ones: an evenly spaced sample of at most this many
// (a wide brush over 100,000 rows would otherwise cost a long rasterization each time).
const MAX_SELECTED = 3000;
const PAD_TOP = 34; const PAD_BOTTOM = 26; const PAD_X = 60;

export class ParallelCoords {
  constructor(container, axes, onBrush) {
    // axes: [{key, label, col: Float64Array, log, choices}]
    this.axes = axes;
    this.onBrush = onBrush;
    this.brush = new Map();
    this.canvas = el('canvas', { class: 'pcp', role: 'img', tabindex: '0', id: 'pcp-canvas',
      'aria-label': 'Parallel coordinates: drag along an axis to select a range, click the axis to clear it. The range fields above the table do the same from the keyboard.' });
    this.hint = el('p', { class: 'muted small' }, '');
    container.append(this.canvas, this.hint);
    this.canvas.addEventListener('pointerdown', (e) => this.down(e));
    this.canvas.addEventListener('pointermove', (e) => this.move(e));
    this.canvas.addEventListener('pointerup', (e) => this.up(e));
    this.canvas.addEventListener('keydown', (e) => { if (e.key === 'Escape') { this.brush.clear(); this.onBrush(null, null); } });
    this.drag = null;
    this.resize();
  }

  resize() {
    const w = Math.max(480, this.canvas.parentElement.clientWidth - 4);
    const h = 320;
    const dpr = window.devicePixelRatio || 1;
    this.canvas.width = w * dpr; this.canvas.height = h * dpr;
    this.canvas.style.width = `${w}px`; this.canvas.style.height = `${h}px`;
    this.w = w; this.h = h; this.dpr = dpr;
  }

  axisX(i) {
    const n = this.axes.length;
    return n === 1 ? this.w / 2 : PAD_X + (i * (this.w - 2 * PAD_X)) / (n - 1);
  }

  // Scale every axis over the given rows (complete trials).
  // `seen`: the trials a live update brought (small): the ranges only widen to take them
  // in, and the grey lines are drawn again only when a range changed or the number of
  // lines grew by a tenth. Without it: fitted over every row.
  fit(rows, seen) {
    const incremental = seen && this.bgCount && seen.length < rows.length / 10;
    let changed = !incremental;
    for (const a of this.axes) {
      let lo = incremental ? a.lo : Infinity; let hi = incremental ? a.hi : -Infinity;
      const src = incremental ? seen : rows;
      for (let k = 0; k < src.length; k++) {
        let v = a.col[src[k]];
        if (!Number.isFinite(v)) continue;
        if (a.log) { if (v <= 0) continue; v = Math.log10(v); }
        if (v < lo) lo = v; if (v > hi) hi = v;
      }
      if (a.choices) { lo = 0; hi = Math.max(1, a.choices.length - 1); }
      if (!(lo < hi)) { lo = Number.isFinite(lo) ? lo - 1 : 0; hi = Number.isFinite(hi) ? hi + 1 : 1; }
      if (lo !== a.lo || hi !== a.hi) changed = true;
      a.lo = lo; a.hi = hi;
    }
    if (changed || rows.length > this.bgCount * 1.1) this.bgStale = true;
  }

  y(a, v) {
    if (a.log) v = Math.log10(v);
    return this.h - PAD_BOTTOM - ((v - a.lo) / (a.hi - a.lo)) * (this.h - PAD_TOP - PAD_BOTTOM);
  }

  inv(a, y) {
    let v = a.lo + ((this.h - PAD_BOTTOM - y) / (this.h - PAD_TOP - PAD_BOTTOM)) * (a.hi - a.lo);
    if (a.log) v = 10 ** v;
    return v;
  }

  // Stroke the polylines of the sampled rows that `pick(row)` accepts, as one path.
  lines(ctx, rows, pick, max = MAX_LINES) {
    const stride = Math.max(1, rows.length / max);
    const n = this.axes.length;
    const xs = this.axes.map((a, i) => this.axisX(i));
    ctx.beginPath();
    for (let f = 0; f < rows.length; f += stride) {
      const r = rows[Math.floor(f)];
      if (!pick(r)) continue;
      let started = false;
      for (let i = 0; i < n; i++) {
        const a = this.axes[i];
        const v = a.col[r];
        if (!Number.isFinite(v) || (a.log && v <= 0)) { started = false; continue; }
        const y = this.y(a, v);
        if (started) ctx.lineTo(xs[i], y); else ctx.moveTo(xs[i], y);
        started = true;
      }
    }
    ctx.stroke();
  }

  // rows: complete trial numbers; mask[number] = 1 when the trial passes every filter.
  // Every sampled line is drawn grey once per data change (kept in an offscreen canvas);
  // a filter change draws that image and the selected lines over it.
  draw(rows, mask) {
    if (this.bgStale || !this.bg) {
      this.bg = document.createElement('canvas');
      this.bg.width = this.canvas.width; this.bg.height = this.canvas.height;
      const b = this.bg.getContext('2d');
      b.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
      b.lineWidth = 1;
      b.strokeStyle = 'rgba(128,128,128,0.10)';
      this.lines(b, rows, () => true);
      this.bgStale = false;
      this.bgCount = rows.length;
    }
    this.rows = rows; this.mask = mask;
    const ctx = this.canvas.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.drawImage(this.bg, 0, 0);
    ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
    let nsel = 0;
    for (let k = 0; k < rows.length; k++) nsel += mask[rows[k]];
    const sel = new Int32Array(nsel);
    for (let k = 0, j = 0; k < rows.length; k++) if (mask[rows[k]]) sel[j++] = rows[k];
    const alpha = Math.min(0.8, Math.max(0.04, 6 / Math.sqrt(Math.min(nsel, MAX_SELECTED) + 1)));
    ctx.lineWidth = 1;
    ctx.strokeStyle = `rgba(31,95,191,${alpha.toFixed(3)})`;
    this.lines(ctx, sel, () => true, MAX_SELECTED);
    // Axes, labels, brushes.
    ctx.fillStyle = '#111'; ctx.strokeStyle = '#333'; ctx.font = '12px system-ui, sans-serif'; ctx.textAlign = 'center';
    this.axes.forEach((a, i) => {
      const x = this.axisX(i);
      ctx.beginPath(); ctx.moveTo(x, PAD_TOP); ctx.lineTo(x, this.h - PAD_BOTTOM); ctx.stroke();
      ctx.fillText(a.label, x, 14);
      const top = a.choices ? a.choices[a.choices.length - 1] : fmt(a.log ? 10 ** a.hi : a.hi);
      const bot = a.choices ? a.choices[0] : fmt(a.log ? 10 ** a.lo : a.lo);
      ctx.fillText(String(top), x, PAD_TOP - 4); ctx.fillText(String(bot), x, this.h - PAD_BOTTOM + 14);
      const b = this.brush.get(a.key);
      if (b) {
        const clampY = (y) => Math.min(this.h - PAD_BOTTOM, Math.max(PAD_TOP, y));
        const y0 = clampY(this.y(a, Math.min(b[1], a.log ? 10 ** a.hi : a.hi)));
        const y1 = clampY(this.y(a, Math.max(b[0], a.log ? 10 ** a.lo : a.lo)));
        ctx.fillStyle = 'rgba(10,125,50,0.25)'; ctx.fillRect(x - 8, y0, 16, y1 - y0);
        ctx.strokeStyle = '#0a7d32'; ctx.strokeRect(x - 8, y0, 16, y1 - y0);
        ctx.fillStyle = '#111'; ctx.strokeStyle = '#333';
      }
    });
    this.hint.textContent = `${nsel.toLocaleString()} of ${rows.length.toLocaleString()} complete trials selected` +
      (rows.length > MAX_LINES || nsel > MAX_SELECTED ? ` (lines drawn: evenly spaced samples of at most ${MAX_LINES.toLocaleString()} in grey and ${MAX_SELECTED.toLocaleString()} selected)` : '');
  }

  axisAt(x) {
    for (let i = 0; i < this.axes.length; i++) if (Math.abs(this.axisX(i) - x) < 16) return i;
    return -1;
  }

  pos(e) {
    const r = this.canvas.getBoundingClientRect();
    return [e.clientX - r.left, e.clientY - r.top];
  }

  down(e) {
    const [x, y] = this.pos(e);
    const i = this.axisAt(x);
    if (i < 0) return;
    this.canvas.setPointerCapture(e.pointerId);
    this.drag = { i, y0: y, y1: y };
  }

  move(e) {
    if (!this.drag) return;
    this.drag.y1 = this.pos(e)[1];
  }

  up(e) {
    if (!this.drag) return;
    const { i, y0 } = this.drag;
    const y1 = this.pos(e)[1];
    this.drag = null;
    const a = this.axes[i];
    if (Math.abs(y1 - y0) < 3) { this.setBrush(a.key, null); return; }
    const clamp = (y) => Math.min(this.h - PAD_BOTTOM, Math.max(PAD_TOP, y));
    const v0 = this.inv(a, clamp(Math.max(y0, y1))); const v1 = this.inv(a, clamp(Math.min(y0, y1)));
    this.setBrush(a.key, [v0, v1]);
  }

  setBrush(key, range) {
    if (range) this.brush.set(key, range); else this.brush.delete(key);
    this.onBrush(key, range);
  }
}
