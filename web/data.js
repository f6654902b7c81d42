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

// Live updates: poll the study's counts every second; when they change, fetch the
// trials from the first unfinished one on. Calls onChange(numbers) after each update.
export function follow(data, withIntermediate, onChange, isAlive) {
  let last = JSON.stringify(data.study.trials);
  let busy = false;
  const timer = setInterval(async () => {
    if (!isAlive()) { clearInterval(timer); return; }
    if (busy) return;
    busy = true;
    try {
      const s = await (await request(`/v1/studies/${encodeURIComponent(data.study.name)}`)).json();
      const now = JSON.stringify(s.trials);
      if (now !== last) {
        last = now;
        data.study = Object.assign(data.study, { trials: s.trials, best_trial: s.best_trial });
        let seen;
        if (data.columnar) {
          seen = await loadColumns(data, data.cursor);
          // Curves: at most every 15 s (a tell should cost a few hundred bytes).
          if (withIntermediate && Date.now() - (data.curvesAt || 0) > 15000) {
            data.curvesAt = Date.now();
            await loadCurves(data, CURVE_TRIALS, CURVE_POINTS);
          }
        } else {
          seen = await loadTrials(data, data.firstOpen(), withIntermediate);
        }
        onChange(seen);
      }
    } catch (e) {
      /* try again at the next tick */
    } finally {
      busy = false;
    }
  }, 1000);
  return () => clearInterval(timer);
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
  const state = new Uint8Array(buf, off, k);
  off += (k + 7) & ~7;
  const cols = {};
  for (const [name, type] of head.columns) {
    if (name === 'state') continue;
    if (type !== 'f64') throw new Error(`columns: unknown type ${type}`);
    cols[name] = new Float64Array(buf, off, k);
    off += 8 * k;
  }
  data.reserve(head.from + k);
  if (head.from + k > data.n) data.n = head.from + k;
  data.state.set(state, head.from);
  data.values[0].set(cols.value, head.from);
  for (const p of data.params) if (cols[p.name]) data.cols[p.name].set(cols[p.name], head.from);
  data.duration.set(cols.duration, head.from);
  data.cursor = head.cursor;
  if (k > 0) data.version++;
  const seen = [];
  for (let i = 0; i < k; i++) seen.push(head.from + i);
  return seen;
}

// Intermediate values, downsampled by hpod: up to `trials` curves of `points` points.
export async function loadCurves(data, trials, points) {
  const s = encodeURIComponent(data.study.name);
  let r;
  try {
    r = await request(`/v1/studies/${s}/curves?trials=${trials}&points=${points}`);
  } catch (e) {
    if (e.status === 404 && /route/.test(e.message)) return false;
    throw e;
  }
  const text = await r.text();
  data.bytes = (data.bytes || 0) + text.length;
  const body = JSON.parse(text);
  data.intermediate = new Map(body.trials.map((t) => [t.number, { steps: t.steps, values: t.values }]));
  data.withReports = body.with_reports;
  data.version++;
  return true;
}
