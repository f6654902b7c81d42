// `/`: every study with its objectives, sampler, counts by state, best value and last
// activity; filter by name, sort by any column (click or Enter on its header).
import { getJSON } from './api.js';
import { el, fmt, ago, studyHref, objectivesOf, setCrumbs, setLive, STATES } from './util.js';

const COLS = [
  { key: 'name', label: 'Study', get: (s) => s.name },
  { key: 'objectives', label: 'Objectives', get: (s) => objectivesOf(s).map((o) => `${o.name} (${o.direction === 'maximize' ? 'max' : 'min'})`).join(', ') },
  { key: 'sampler', label: 'Sampler', get: (s) => (s.sampler ? s.sampler.type : '') },
  ...STATES.map((st) => ({ key: st, label: st, num: true, get: (s) => (s.trials ? s.trials[st] : 0) })),
  { key: 'total', label: 'total', num: true, get: (s) => (s.trials ? s.trials.total : 0) },
  { key: 'best', label: 'Best / front', num: true, get: (s) => bestOf(s) },
  { key: 'activity', label: 'Last activity', num: true, get: (s) => s._activity || 0 },
];

function bestOf(s) {
  if (Array.isArray(s.best_trials)) return s.best_trials.length; // sorts by front size
  const b = s.best_trial;
  if (!b) return null;
  if (typeof b.value === 'number') return b.value;
  if (b.values) return Object.values(b.values)[0];
  return null;
}

export async function showList(main) {
  setCrumbs({ text: 'Studies' });
  document.title = 'Studies · hpod';
  const state = { filter: '', sort: 'name', desc: false, studies: [], activity: new Map() };
  const filter = el('input', { id: 'study-filter', type: 'search', placeholder: 'Filter by name', 'aria-label': 'Filter studies by name' });
  const count = el('span', { class: 'muted', id: 'study-count' });
  const table = el('table', { class: 'grid', id: 'study-table' });
  main.replaceChildren(el('h1', {}, 'Studies'), el('div', { class: 'bar' }, filter, count), table);
  filter.addEventListener('input', () => { state.filter = filter.value; render(); });

  function render() {
    const col = COLS.find((c) => c.key === state.sort);
    let rows = state.studies.filter((s) => s.name.toLowerCase().includes(state.filter.toLowerCase()));
    rows.forEach((s) => { s._activity = state.activity.get(s.name) || 0; });
    rows.sort((a, b) => {
      const x = col.get(a); const y = col.get(b);
      if (x === y) return 0;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      const c = x < y ? -1 : 1;
      return state.desc ? -c : c;
    });
    count.textContent = `${rows.length} of ${state.studies.length} studies`;
    const head = el('tr', {}, COLS.map((c) => el('th', { scope: 'col', 'aria-sort': c.key === state.sort ? (state.desc ? 'descending' : 'ascending') : null, class: c.num ? 'num' : null },
      el('button', { class: 'sort', onclick: () => { if (state.sort === c.key) state.desc = !state.desc; else { state.sort = c.key; state.desc = false; } render(); } },
        c.label, c.key === state.sort ? (state.desc ? ' ▼' : ' ▲') : ''))));
    const body = rows.map((s) => el('tr', { 'data-study': s.name }, COLS.map((c) => {
      if (c.key === 'name') return el('td', {}, el('a', { href: studyHref(s.name) }, s.name));
      if (c.key === 'activity') return el('td', { class: 'num' }, s._activity ? ago(s._activity) : '');
      if (c.key === 'best' && Array.isArray(s.best_trials)) {
        // Several objectives: the Pareto front's size.
        return el('td', { class: 'num', 'data-best': '', 'data-front': String(s.best_trials.length) }, `front of ${s.best_trials.length}`);
      }
      if (c.key === 'best') {
        const b = s.best_trial;
        return el('td', { class: 'num', 'data-best': b ? String(bestOf(s)) : '' }, b ? fmt(bestOf(s)) : '—');
      }
      const v = c.get(s);
      return el('td', { class: c.num ? 'num' : null, 'data-col': c.key }, c.num ? String(v) : v);
    })));
    table.replaceChildren(el('thead', {}, head), el('tbody', {}, body));
  }

  async function activityOf(s) {
    // The newest trial's last timestamp (the list carries no such field).
    const total = s.trials ? s.trials.total : 0;
    let t = Date.parse(s.created_at) || 0;
    if (total > 0) {
      try {
        const r = await getJSON(`/v1/studies/${encodeURIComponent(s.name)}/trials?offset=${total - 1}&limit=1`);
        for (const tr of r.trials) {
          for (const k of ['created_at', 'started_at', 'completed_at', 'heartbeat_at']) {
            const v = Date.parse(tr[k]);
            if (v > t) t = v;
          }
        }
      } catch (e) { /* deleted meanwhile */ }
    }
    state.activity.set(s.name, t);
  }

  async function load() {
    const r = await getJSON('/v1/studies');
    const changed = new Set();
    const old = new Map(state.studies.map((s) => [s.name, s.trials ? s.trials.total : -1]));
    for (const s of r.studies) if (old.get(s.name) !== (s.trials ? s.trials.total : 0)) changed.add(s);
    state.studies = r.studies;
    render();
    await Promise.all([...changed].map(activityOf));
    render();
    setLive(`updated ${new Date().toLocaleTimeString()}`);
  }
  try {
    await load();
  } catch (e) {
    main.append(el('p', { class: 'error', role: 'alert' }, `Cannot load the studies: ${e.message}`));
    return;
  }
  const timer = setInterval(() => { if (!document.body.contains(table)) { clearInterval(timer); return; } load().catch(() => {}); }, 2000);
}
