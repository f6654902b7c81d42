// Small helpers shared by the pages.
export const STATES = ['waiting', 'running', 'complete', 'pruned', 'failed'];
export const STATE_CODE = Object.fromEntries(STATES.map((s, i) => [s, i]));
export const COLORS = {
  complete: '#1f5fbf', pruned: '#b35900', failed: '#b00020', best: '#0a7d32',
  running: '#6a3d9a', waiting: '#555', selected: '#1f5fbf', other: 'rgba(120,120,120,0.10)',
};

// Create an element: el('a', {href: '/', class: 'x'}, 'text', child...).
export function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

export function fmt(v) {
  if (v === null || v === undefined || (typeof v === 'number' && Number.isNaN(v))) return '';
  if (typeof v !== 'number') return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-4 || a >= 1e6)) return v.toExponential(4);
  return String(Number(v.toPrecision(6)));
}

export function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function ago(ms) {
  if (!ms) return '';
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function studyHref(name) { return `/studies/${encodeURIComponent(name)}`; }
export function trialHref(name, n) { return `/studies/${encodeURIComponent(name)}/trials/${n}`; }

// The objectives of a study as [{name, direction}] (one-objective studies: "value").
export function objectivesOf(study) {
  if (Array.isArray(study.objectives) && study.objectives.length > 0) return study.objectives;
  return [{ name: 'value', direction: study.direction || 'minimize' }];
}

export function setCrumbs(...items) {
  const nav = document.getElementById('crumbs');
  nav.replaceChildren(...items.map((it, i) => el('span', { class: 'crumb' },
    i < items.length - 1 && it.href ? el('a', { href: it.href }, it.text) : el('span', { 'aria-current': i === items.length - 1 ? 'page' : null }, it.text))));
}

export function setLive(text) {
  document.getElementById('live').textContent = text;
}
