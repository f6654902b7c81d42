// Scatter series for uPlot at 100,000 points. uPlot draws the axes, grid and lines; a
// scatter series has no path of its own (uPlot's points are circles, and a Path2D of
// tens of thousands of squares costs the browser a long rasterization at the next
// frame). Instead its points are stamped as small squares into a pixel buffer the size of
// the plot area, drawn over the plot in uPlot's drawSeries hook, in series order (so a
// line drawn by a later series stays on top): no path, no readback of the chart.

const NO_PATHS = { stroke: null, fill: null, clip: null, band: null, gaps: null, flags: 0 };

// A series option object: `list()` answers the rows (indexes into the data) to draw,
// `color` a CSS hex or rgba() colour, `size` the square's side in CSS pixels, `yConst()`
// (optional) a y value that replaces every row's.
export function scatterSeries(list, color, size, yConst) {
  return { stroke: color, fill: color, width: 0, points: { show: false }, paths: () => NO_PATHS, stamp: { list, color: parse(color), size, yConst } };
}

// The hook to put in the chart's options: hooks: { drawSeries: [stampHook] }.
export function stampHook(u, si) {
  const s = u.series[si];
  if (s.stamp && s.show !== false) stamp(u, si, s.stamp);
}

function parse(c) {
  let m = /^#([0-9a-f]{6})$/i.exec(c);
  if (m) { const v = parseInt(m[1], 16); return [v >> 16, (v >> 8) & 255, v & 255, 1]; }
  m = /^rgba?\(([^)]*)\)$/.exec(c);
  if (m) { const p = m[1].split(',').map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1]; }
  return [0, 0, 0, 1];
}

// From a value to a canvas pixel on scale `key` (linear or log), inline for speed.
function toPx(u, key, span, off, flip) {
  const sc = u.scales[key]; const log = sc.distr === 3;
  const lo = log ? Math.log10(sc.min) : sc.min; const k = span / ((log ? Math.log10(sc.max) : sc.max) - lo);
  if (log) return (v) => off + (flip ? span - (Math.log10(v) - lo) * k : (Math.log10(v) - lo) * k);
  return (v) => off + (flip ? span - (v - lo) * k : (v - lo) * k);
}

function stamp(u, si, spec) {
  const rows = spec.list() || [];
  if (rows.length === 0) return;
  const xs = u.data[0]; const ys = u.data[si];
  const { left, top, width, height } = u.bbox;
  const L = Math.round(left); const T = Math.round(top); const W = Math.round(width); const H = Math.round(height);
  if (W <= 0 || H <= 0) return;
  const px = toPx(u, 'x', width, left, false); const py = toPx(u, 'y', height, top, true);
  const sz = Math.max(1, Math.round(spec.size * (window.devicePixelRatio || 1)));
  const half = sz >> 1;
  let st = u.__stamp;
  if (!st || st.W !== W || st.H !== H) {
    const c = document.createElement('canvas');
    c.width = W; c.height = H;
    st = u.__stamp = { W, H, c, ctx: c.getContext('2d'), img: new ImageData(W, H) };
  }
  const img = st.img;
  const d = img.data;
  d.fill(0);
  const [r, g, b, a] = spec.color;
  const ia = 1 - a;
  const n = Math.min(xs.length, ys.length);
  const yc = spec.yConst ? py(spec.yConst()) : null;
  for (let k = 0; k < rows.length; k++) {
    const i = rows[k];
    if (i >= n) continue;
    const x = xs[i]; const y = yc === null ? ys[i] : 0;
    if (!Number.isFinite(x) || (yc === null && !Number.isFinite(y))) continue;
    const cx = Math.round(px(x)) - L - half; const cy = Math.round(yc === null ? py(y) : yc) - T - half;
    if (cx + sz <= 0 || cy + sz <= 0 || cx >= W || cy >= H) continue;
    const x0 = Math.max(0, cx); const x1 = Math.min(W, cx + sz); const y0 = Math.max(0, cy); const y1 = Math.min(H, cy + sz);
    for (let yy = y0; yy < y1; yy++) {
      let o = (yy * W + x0) * 4;
      for (let xx = x0; xx < x1; xx++, o += 4) {
        if (a >= 1) { d[o] = r; d[o + 1] = g; d[o + 2] = b; d[o + 3] = 255; } else {
          const da = d[o + 3] / 255; const oa = a + da * ia;
          d[o] = (r * a + d[o] * da * ia) / oa; d[o + 1] = (g * a + d[o + 1] * da * ia) / oa; d[o + 2] = (b * a + d[o + 2] * da * ia) / oa;
          d[o + 3] = oa * 255;
        }
      }
    }
  }
  st.ctx.putImageData(img, 0, 0);
  u.ctx.drawImage(st.c, L, T);
}
