// A study's trials in the browser, as columns indexed by trial number (numbers are dense
// from 0): state codes, objective values, params (categoricals as choice indexes), times.
// Filled from the API and kept current by live updates.
import { request } from './api.js';
import { STATE_CODE, objectivesOf } from './util.js';

function grow(a, cap, fill) {
  const b = new a.constructor(cap);
  b.set(a);
  if (fill !== undefined) b.fill(fill, a.length);
  return b;
}

export const CURVE_TRIALS = 300;
export const CURVE_POINTS = 50;

export class TrialData {
  constructor(study) {
    this.study = study;
    this.objectives = objectivesOf(study);
    this.params = (study.params || []).filter((p) => !p.size);
    this.choiceIndex = {};
    for (const p of this.params) {
      if (p.type === 'categorical') this.choiceIndex[p.name] = new Map(p.choices.map((c, i) => [String(c), i]));
    }
    this.n = 0;
    this.cap = 0;
    this.state = new Uint8Array(0);
    this.values = this.objectives.map(() => new Float64Array(0));
    this.cols = Object.fromEntries(this.params.map((p) => [p.name, new Float64Array(0)]));
    this.created = new Float64Array(0);
    this.completed = new Float64Array(0);
    this.duration = new Float64Array(0);
    this.constraints = study.constraints || []; // [{name, min?, max?}]
    this.cons = this.constraints.map(() => new Float64Array(0)); // constraint values as told
    this.feasible = this.constraints.length ? new Uint8Array(0) : null; // from hpod's columns
    // With vector params: the trial whose point each one shares (an optimizer version).
    this.point = (study.params || []).some((p) => p.size) ? new Float64Array(0) : null;
    this.intermediate = new Map(); // number -> {steps: [], values: []}
    this.version = 0; // bumped on every change
  }

  reserve(n) {
    if (n <= this.cap) return;
    let cap = Math.max(1024, this.cap);
    while (cap < n) cap *= 2;
    this.state = grow(this.state, cap, 255);
    this.values = this.values.map((a) => grow(a, cap, NaN));
    for (const k of Object.keys(this.cols)) this.cols[k] = grow(this.cols[k], cap, NaN);
    this.created = grow(this.created, cap, NaN);
    this.completed = grow(this.completed, cap, NaN);
    this.duration = grow(this.duration, cap, NaN);
    this.cons = this.cons.map((c) => grow(c, cap, NaN));
    if (this.feasible) this.feasible = grow(this.feasible, cap, 0);
    if (this.point) this.point = grow(this.point, cap, NaN);
    this.cap = cap;
  }

  // The lowest number still waiting or running (n when none): where an update starts.
  firstOpen() {
    for (let i = 0; i < this.n; i++) if (this.state[i] <= 1) return i;
    return this.n;
  }

  col(key) {
    if (key === 'number') return null;
    if (key.startsWith('value:')) return this.values[Number(key.slice(6))];
    if (key === 'duration') return this.duration;
    if (key.startsWith('constraint:')) return this.cons[Number(key.slice(11))];
    return this.cols[key];
  }

  // Parse CSV text (docs/API.md "Trials") into the columns; answers the numbers seen.
  ingestCSV(text) {
    const lines = splitLines(text);
    if (lines.length === 0) return [];
    const head = parseLine(lines[0]);
    const idx = (name) => head.indexOf(name);
    const iNum = idx('number'); const iState = idx('state');
    const iVals = this.objectives.map((o) => idx(this.objectives.length === 1 ? 'value' : o.name));
    const iParams = this.params.map((p) => idx(p.name));
    const iCreated = idx('created_at'); const iCompleted = idx('completed_at'); const iDur = idx('duration');
    const iInter = idx('intermediate');
    const seen = [];
    for (let li = 1; li < lines.length; li++) {
      const line = lines[li];
      if (line === '') continue;
      const f = line.indexOf('"') < 0 ? line.split(',') : parseLine(line);
      const num = Number(f[iNum]);
      if (!(num >= 0)) continue;
      this.reserve(num + 1);
      if (num >= this.n) this.n = num + 1;
      this.state[num] = STATE_CODE[f[iState]];
      for (let k = 0; k < iVals.length; k++) this.values[k][num] = cell(f[iVals[k]]);
      for (let k = 0; k < this.params.length; k++) {
        const p = this.params[k];
        const raw = f[iParams[k]];
        let v = NaN;
        if (raw !== undefined && raw !== '') {
          if (p.type === 'categorical') { const ci = this.choiceIndex[p.name].get(raw); v = ci === undefined ? NaN : ci; } else v = Number(raw);
        }
        this.cols[p.name][num] = v;
      }
      this.created[num] = f[iCreated] ? Date.parse(f[iCreated]) : NaN;
      this.completed[num] = f[iCompleted] ? Date.parse(f[iCompleted]) : NaN;
      this.duration[num] = iDur >= 0 ? cell(f[iDur]) : NaN;
      if (iInter >= 0 && f[iInter] && f[iInter] !== '{}') {
        const o = JSON.parse(f[iInter]);
        const steps = Object.keys(o).map(Number).sort((a, b) => a - b);
        this.intermediate.set(num, { steps, values: steps.map((s) => o[String(s)]) });
      }
      seen.push(num);
    }
    if (seen.length > 0) this.version++;
    return seen;
  }
}

function cell(s) {
  return s === undefined || s === '' ? NaN : Number(s);
}

function splitLines(text) {
  if (text.indexOf('"') < 0) return text.split('\n');
  // A quoted cell may hold a newline: split only outside quotes.
  const out = [];
  let start = 0; let q = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34) q = !q;
    else if (c === 10 && !q) { out.push(text.slice(start, i)); start = i + 1; }
  }
  if (start < text.length) out.push(text.slice(start));
  return out;
}

function parseLine(line) {
  const out = [];
  let i = 0;
  while (i <= line.length) {
    if (line[i] === '"') {
      let s = ''; i++;
      for (;;) {
        const j = line.indexOf('"', i);
        if (j < 0) { s += line.slice(i); i = line.length; break; }
        s += line.slice(i, j);
        if (line[j + 1] === '"') { s += '"'; i = j + 2; } else { i = j + 1; break; }
      }
      out.push(s);
      i++; // the comma
    } else {
      let j = line.indexOf(',', i);
      if (j < 0) j = line.length;
      out.push(line.slice(i, j));
      i = j + 1;
    }
  }
  return out;
}

// Fetch the trials from `offset` on (every one when 0) into `data`; answers the numbers.
export async function loadTrials(data, offset, withIntermediate) {
  const s = encodeURIComponent(data.study.name);
  const q = `format=csv&offset=${offset}${withIntermediate ? '&intermediate=true' : ''}`;
  const r = await request(`/v1/studies/${s}/trials?${q}`);
  const text = await r.text();
  data.bytes = (data.bytes || 0) + text.length;
  return data.ingestCSV(text);
}

// Live updates. hpod pushes the study's changes as server-sent events
// (/v1/studies/{s}/events, docs/API.md "Dashboard endpoints"), read with fetch() so the
// token goes in the Authorization header (EventSource cannot send one, and a token in
// the URL would end up in logs); each event says where the stale trials start, and the
// page asks /columns from its own cursor. On a dropped stream it reconnects after 2 s
// with Last-Event-ID; where hpod has no events route it polls the counts every second.
// Calls onChange(numbers) after each update.
export function follow(data, withIntermediate, onChange, isAlive) {
  let stopped = false;
  const ctl = new AbortController();
  let busy = false; let again = false;
  const update = async (counts) => {
    if (counts) data.study = Object.assign(data.study, { trials: counts });
    if (busy) { again = true; return; }
    busy = true;
    try {
      do {
        again = false;
        let seen;
        if (data.columnar) {
          const from = data.cursor;
          seen = await loadColumns(data, from);
          // Curves of the trials that can have changed only (a tell costs one curve or so).
          if (withIntermediate) await loadCurves(data, CURVE_TRIALS, CURVE_POINTS, from);
        } else {
          seen = await loadTrials(data, data.firstOpen(), withIntermediate);
        }
        onChange(seen);
      } while (again && !stopped);
    } finally {
      busy = false;
    }
  };
  const alive = () => !stopped && isAlive();
  (async () => {
    let lastId = null;
    while (alive()) {
      let r = null;
      try {
        const h = lastId ? { 'Last-Event-ID': lastId } : {};
        r = await request(`/v1/studies/${encodeURIComponent(data.study.name)}/events?from=${data.cursor || 0}`, { headers: h, signal: ctl.signal });
      } catch (e) {
        if (e.status === 404 && /route/.test(e.message)) { pollCounts(data, update, alive); return; }
        // Several daemons: only the study's owner streams it; this one forwards study GETs.
        if (e.status === 503 && /another daemon/.test(e.message)) { pollCounts(data, update, alive); return; }
      }
      if (r) {
        data.streaming = true;
        try {
          await readEvents(r.body, (ev) => {
            if (ev.id) lastId = ev.id;
            if (ev.event === 'study' && alive()) {
              const d = JSON.parse(ev.data);
              const t = d.trials; t.total = d.total;
              data.bestNumber = d.best;
              data.eventBytes = (data.eventBytes || 0) + ev.size;
              const prev = JSON.stringify(data.study.trials);
              if (prev !== JSON.stringify(t) || d.total !== data.n || d.cursor !== data.cursor) update(t).catch(() => {});
            }
          });
        } catch (e) { /* dropped: reconnect */ }
        data.streaming = false;
      }
      if (alive()) await new Promise((res) => setTimeout(res, 2000));
    }
  })();
  return () => { stopped = true; ctl.abort(); };
}

// Parse a text/event-stream body; calls onEvent({id, event, data, size}) per event.
async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i); buf = buf.slice(i + 2);
      const ev = { id: null, event: 'message', data: '', size: block.length + 2 };
      const lines = [];
      for (const line of block.split('\n')) {
        if (line === '' || line[0] === ':') continue;
        const c = line.indexOf(':');
        const f = c < 0 ? line : line.slice(0, c);
        const v = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
        if (f === 'id') ev.id = v; else if (f === 'event') ev.event = v; else if (f === 'data') lines.push(v);
      }
      if (lines.length) { ev.data = lines.join('\n'); onEvent(ev); }
    }
  }
}

// The fallback without events: the study's counts every second.
function pollCounts(data, update, alive) {
  let last = JSON.stringify(data.study.trials);
  let busy = false;
  const timer = setInterval(async () => {
    if (!alive()) { clearInterval(timer); return; }
    if (busy) return;
    busy = true;
    try {
      const s = await (await request(`/v1/studies/${encodeURIComponent(data.study.name)}`)).json();
      const now = JSON.stringify(s.trials);
      if (now !== last) { last = now; await update(s.trials); }
    } catch (e) {
      /* try again at the next tick */
    } finally {
      busy = false;
    }
  }, 1000);
}

// The binary columns endpoint (docs/API.md "Dashboard endpoints"): trials `from` on.
// Answers {numbers seen, cursor} or null when this hpod has no such endpoint (404).
export async function loadColumns(data, from) {
  const s = encodeURIComponent(data.study.name);
  let r;
  try {
    r = await request(`/v1/studies/${s}/columns?from=${from}`);
  } catch (e) {
    if (e.status === 404 && e.code === 'not_found' && /route/.test(e.message)) return null;
    throw e;
  }
  const buf = await r.arrayBuffer();
  data.bytes = (data.bytes || 0) + buf.byteLength;
  const dv = new DataView(buf);
  const magic = String.fromCharCode(dv.getUint8(0), dv.getUint8(1), dv.getUint8(2), dv.getUint8(3));
  if (magic !== 'HPOC') throw new Error('columns: not an hpod columns reply');
  const hlen = dv.getUint32(4, true);
  const head = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, hlen)));
  const k = head.count;
  let off = 8 + hlen;
  // Every column the header lists, in order (u8 padded to 8 bytes, f64); unknown ones skipped.
  const cols = {};
  for (const [name, type] of head.columns) {
    if (type === 'u8') { cols[name] = new Uint8Array(buf, off, k); off += (k + 7) & ~7; } else if (type === 'f64') { cols[name] = new Float64Array(buf, off, k); off += 8 * k; } else throw new Error(`columns: unknown type ${type}`);
  }
  data.reserve(head.from + k);
  if (head.from + k > data.n) data.n = head.from + k;
  data.state.set(cols.state, head.from);
  data.values.forEach((v, j) => { const c = cols[j === 0 ? 'value' : `value:${j}`]; if (c) v.set(c, head.from); });
  for (const p of data.params) if (cols[p.name]) data.cols[p.name].set(cols[p.name], head.from);
  data.cons.forEach((v, j) => { const c = cols[`constraint:${j}`]; if (c) v.set(c, head.from); });
  if (data.feasible && cols.feasible) data.feasible.set(cols.feasible, head.from);
  if (cols.duration) data.duration.set(cols.duration, head.from);
  if (data.point && cols.point) data.point.set(cols.point, head.from);
  data.cursor = head.cursor;
  if (k > 0) data.version++;
  const seen = [];
  for (let i = 0; i < k; i++) seen.push(head.from + i);
  return seen;
}

// Intermediate values, downsampled by hpod: up to `trials` curves of `points` points.
// With `from`: only trials numbered from on, merged into what the page holds.
export async function loadCurves(data, trials, points, from) {
  const s = encodeURIComponent(data.study.name);
  let r;
  try {
    r = await request(`/v1/studies/${s}/curves?trials=${trials}&points=${points}${from ? `&from=${from}` : ''}`);
  } catch (e) {
    if (e.status === 404 && /route/.test(e.message)) return false;
    throw e;
  }
  const text = await r.text();
  data.bytes = (data.bytes || 0) + text.length;
  const body = JSON.parse(text);
  if (from) {
    for (const t of body.trials) data.intermediate.set(t.number, { steps: t.steps, values: t.values });
  } else {
    data.intermediate = new Map(body.trials.map((t) => [t.number, { steps: t.steps, values: t.values }]));
    data.withReports = body.with_reports;
  }
  data.version++;
  return true;
}
