// The trials table: rows that pass the filters, sorted by any column, 50 to a page
// (only the page is in the DOM, so 100,000 rows cost nothing), and their CSV.
import { el, fmt, trialHref, STATES } from './util.js';

const PAGE = 50;

export class TrialTable {
  constructor(container, data) {
    this.data = data;
    this.sortKey = 'number'; this.desc = false;
    this.page = 0;
    this.order = null; this.orderFor = '';
    this.columns = [
      { key: 'number', label: '#' }, { key: 'state', label: 'State' },
      ...data.objectives.map((o, k) => ({ key: `value:${k}`, label: data.objectives.length === 1 ? 'Value' : o.name })),
      ...(data.feasible ? [{ key: 'feasible', label: 'Feasible' }] : []),
      ...data.constraints.map((c, k) => ({ key: `constraint:${k}`, label: c.name })),
      ...data.params.map((p) => ({ key: p.name, label: p.name, param: p })),
      { key: 'duration', label: 'Duration (s)' },
    ];
    this.info = el('span', { class: 'muted', id: 'table-info', role: 'status' });
    this.prev = el('button', { onclick: () => this.go(this.page - 1), id: 'page-prev' }, '‹ Previous');
    this.next = el('button', { onclick: () => this.go(this.page + 1), id: 'page-next' }, 'Next ›');
    this.first = el('button', { onclick: () => this.go(0) }, '« First');
    this.last = el('button', { onclick: () => this.go(Infinity) }, 'Last »');
    this.table = el('table', { class: 'grid trials', id: 'trials-table' });
    container.append(el('div', { class: 'bar' }, this.first, this.prev, this.info, this.next, this.last), el('div', { class: 'scroll' }, this.table));
  }

  go(p) {
    const pages = Math.max(1, Math.ceil(this.rows.length / PAGE));
    this.page = Math.max(0, Math.min(pages - 1, p === Infinity ? pages - 1 : p));
    this.render();
  }

  // The whole study in the current sort order, cached until the data or the sort change.
  sorted() {
    const d = this.data;
    const tag = `${this.sortKey}/${this.desc}/${d.version}/${d.n}`;
    if (this.orderFor === tag) return this.order;
    const idx = new Int32Array(d.n);
    for (let i = 0; i < d.n; i++) idx[i] = i;
    if (this.sortKey !== 'number') {
      const col = this.sortKey === 'state' ? d.state : this.sortKey === 'feasible' ? d.feasible : d.col(this.sortKey);
      // NaN (no value) last whichever the direction.
      const sign = this.desc ? -1 : 1;
      idx.sort((a, b) => {
        const x = col[a]; const y = col[b];
        const nx = Number.isNaN(x); const ny = Number.isNaN(y);
        if (nx || ny) return nx === ny ? a - b : nx ? 1 : -1;
        return x === y ? a - b : (x < y ? -sign : sign);
      });
    } else if (this.desc) idx.reverse();
    this.order = idx; this.orderFor = tag;
    return idx;
  }

  // mask[number] = 1 for rows that pass the filters.
  update(mask) {
    const order = this.sorted();
    const rows = new Int32Array(order.length);
    let k = 0;
    for (let i = 0; i < order.length; i++) if (mask[order[i]]) rows[k++] = order[i];
    this.rows = rows.subarray(0, k);
    this.go(this.page);
  }

  cellText(c, r) {
    const d = this.data;
    if (c.key === 'number') return String(r);
    if (c.key === 'state') return STATES[d.state[r]] || '';
    if (c.key === 'feasible') return d.state[r] === 2 ? (d.feasible[r] ? 'yes' : 'no') : '';
    const v = d.col(c.key)[r];
    if (c.param && c.param.type === 'categorical') return Number.isNaN(v) ? '' : String(c.param.choices[v]);
    return fmt(v);
  }

  render() {
    const d = this.data;
    const start = this.page * PAGE;
    const end = Math.min(this.rows.length, start + PAGE);
    const pages = Math.max(1, Math.ceil(this.rows.length / PAGE));
    this.info.textContent = `${this.rows.length.toLocaleString()} trials · page ${this.page + 1} of ${pages}`;
    this.prev.disabled = this.first.disabled = this.page === 0;
    this.next.disabled = this.last.disabled = this.page >= pages - 1;
    // The header only when the sort changed; the body's rows reused (text set in place), so
    // a filter change costs 50 rows of text, not a new table.
    const headKey = `${this.sortKey}/${this.desc}`;
    if (this.headKey !== headKey || !this.tbody) {
      this.headKey = headKey;
      const head = el('tr', {}, this.columns.map((c) => el('th', { scope: 'col', 'aria-sort': c.key === this.sortKey ? (this.desc ? 'descending' : 'ascending') : null },
        el('button', { class: 'sort', 'data-key': c.key, onclick: () => this.sortBy(c.key) }, c.label, c.key === this.sortKey ? (this.desc ? ' ▼' : ' ▲') : ''))));
      this.tbody = el('tbody', {});
      this.table.replaceChildren(el('thead', {}, head), this.tbody);
    }
    const tb = this.tbody;
    while (tb.rows.length > end - start) tb.lastChild.remove();
    while (tb.rows.length < end - start) {
      tb.append(el('tr', {}, this.columns.map((c) => el('td', { class: c.key === 'state' || c.key === 'feasible' ? null : 'num' }, c.key === 'number' ? el('a', {}) : null))));
    }
    for (let i = start; i < end; i++) {
      const r = this.rows[i];
      const tr = tb.rows[i - start];
      const num = String(r);
      if (tr.dataset.number === num && tr.dataset.version === String(d.version)) continue;
      tr.dataset.number = num;
      tr.dataset.version = String(d.version);
      tr.className = `st-${STATES[d.state[r]]}`;
      this.columns.forEach((c, k) => {
        const td = tr.cells[k];
        if (c.key === 'number') { const a = td.firstChild; a.href = trialHref(d.study.name, r); a.textContent = num; } else td.textContent = this.cellText(c, r);
      });
    }
  }

  sortBy(key) {
    if (this.sortKey === key) this.desc = !this.desc; else { this.sortKey = key; this.desc = false; }
    this.page = 0;
    this.onSort();
    const b = this.table.querySelector(`button[data-key="${CSS.escape(key)}"]`);
    if (b) b.focus();
  }

  csv() {
    const q = (s) => (/[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
    const out = [this.columns.map((c) => q(c.key === 'number' ? 'number' : c.key === 'state' ? 'state' : c.key.startsWith('value:') ? (this.data.objectives.length === 1 ? 'value' : c.label) : c.key)).join(',')];
    for (const r of this.rows) out.push(this.columns.map((c) => q(c.key === 'number' || c.key === 'state' || c.key === 'feasible' || (c.param && c.param.type === 'categorical') ? this.cellText(c, r) : numText(this.data.col(c.key)[r]))).join(','));
    return `${out.join('\n')}\n`;
  }
}

function numText(v) { return Number.isNaN(v) ? '' : String(v); }
