// `/studies/{name}/trials/{number}`: one trial's params, values, constraints,
// intermediate values, user attrs, worker, times and retry chain.
import { getJSON } from './api.js';
import { el, fmt, fmtTime, setCrumbs, studyHref, trialHref, COLORS } from './util.js';

function kv(obj) {
  const keys = Object.keys(obj || {});
  if (keys.length === 0) return el('p', { class: 'muted' }, 'none');
  return el('table', { class: 'grid kv' }, el('tbody', {}, keys.map((k) => {
    const v = obj[k];
    const text = v !== null && typeof v === 'object' ? (v.href ? `vector of ${v.size} (${v.href})` : JSON.stringify(v)) : typeof v === 'number' ? fmt(v) : String(v);
    return el('tr', {}, el('th', { scope: 'row' }, k), el('td', { 'data-key': k }, text));
  })));
}

export async function showTrial(main, name, number) {
  setCrumbs({ text: 'Studies', href: '/' }, { text: name, href: studyHref(name) }, { text: `Trial ${number}` });
  document.title = `Trial ${number} · ${name} · hpod`;
  const base = `/v1/studies/${encodeURIComponent(name)}/trials`;
  let t;
  try {
    t = await getJSON(`${base}/${number}`);
  } catch (e) {
    main.replaceChildren(el('h1', {}, `Trial ${number}`), el('p', { class: 'error', role: 'alert' }, e.status === 404 ? 'No such trial.' : e.message));
    return;
  }
  // The retry chain: follow retry_of back to the original (bounded).
  const chain = [];
  let prev = t.retry_of;
  for (let k = 0; k < 20 && prev !== null && prev !== undefined; k++) {
    chain.push(prev);
    try { prev = (await getJSON(`${base}/${prev}`)).retry_of; } catch (e) { break; }
  }
  const values = t.values || (t.value !== undefined ? { value: t.value } : {});
  const root = el('div', { class: 'trial', id: 'trial' },
    el('h1', {}, `Trial ${t.number} `, el('span', { class: `badge st-${t.state}` }, t.state)),
    el('p', {}, el('a', { href: studyHref(name) }, `← ${name}`),
      number > 0 ? [' · ', el('a', { href: trialHref(name, number - 1) }, `trial ${number - 1}`)] : '',
      ' · ', el('a', { href: trialHref(name, number + 1) }, `trial ${number + 1}`)),
    el('h2', {}, 'Values'), kv(values),
    t.constraints ? [el('h2', {}, 'Constraints'), kv(t.constraints), el('p', {}, `feasible: ${t.feasible}`)] : '',
    el('h2', {}, 'Params'), kv(t.params),
    el('h2', {}, 'Run'), kv({ worker: t.worker, created_at: fmtTime(t.created_at), started_at: fmtTime(t.started_at), completed_at: fmtTime(t.completed_at), heartbeat_at: fmtTime(t.heartbeat_at),
      duration_s: t.started_at && t.completed_at ? (Date.parse(t.completed_at) - Date.parse(t.started_at)) / 1000 : null }),
    el('h2', {}, 'Retry chain'),
    chain.length === 0 ? el('p', { class: 'muted' }, 'not a retry') :
      el('p', {}, 'retry of ', chain.map((n, i) => [i ? ' ← retry of ' : '', el('a', { href: trialHref(name, n) }, `trial ${n}`)])),
    el('h2', {}, 'User attrs'), kv(t.user_attrs));
  const inter = t.intermediate || [];
  root.append(el('h2', {}, 'Intermediate values'));
  if (inter.length === 0) {
    root.append(el('p', { class: 'muted' }, 'none reported'));
  } else {
    const box = el('div', { class: 'chart' });
    root.append(box, el('details', {}, el('summary', {}, `${inter.length} reports`),
      el('table', { class: 'grid' }, el('thead', {}, el('tr', {}, el('th', { scope: 'col' }, 'step'), el('th', { scope: 'col' }, 'value'))),
        el('tbody', {}, inter.map((r) => el('tr', {}, el('td', { class: 'num' }, String(r.step)), el('td', { class: 'num' }, fmt(r.value))))))));
    main.replaceChildren(root);
    new globalThis.uPlot({ width: Math.max(400, box.clientWidth - 8), height: 260, scales: { x: { time: false } }, legend: { show: false },
      axes: [{ label: 'step' }, { label: 'value' }],
      series: [{}, { stroke: COLORS.complete, width: 2, points: { show: true, size: 4 } }] },
    [inter.map((r) => r.step), inter.map((r) => r.value)], box);
    return;
  }
  main.replaceChildren(root);
}
