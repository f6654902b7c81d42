// The dashboard's entry: route on location.pathname (every page path serves this page).
import { el, setCrumbs } from './util.js';
import { showList } from './list.js';
import { showStudy } from './study.js';
import { showTrial } from './trial.js';

function route() {
  const main = document.getElementById('main');
  const parts = location.pathname.split('/').filter((p) => p !== '').map(decodeURIComponent);
  try {
    if (parts.length === 0 || (parts.length === 1 && parts[0] === 'studies')) {
      showList(main);
    } else if (parts[0] === 'studies' && parts.length === 2) {
      showStudy(main, parts[1]);
    } else if (parts[0] === 'studies' && parts.length === 4 && parts[2] === 'trials') {
      showTrial(main, parts[1], Number(parts[3]));
    } else {
      setCrumbs({ text: 'Studies', href: '/' }, { text: 'Not found' });
      main.replaceChildren(el('p', {}, 'No such page. ', el('a', { href: '/' }, 'Back to the studies.')));
    }
  } catch (e) {
    main.replaceChildren(el('p', { class: 'error', role: 'alert' }, String(e)));
  }
}

function start() {
  if (typeof globalThis.uPlot !== 'function') {
    // The deferred classic script runs before modules; wait once if not.
    window.addEventListener('load', route, { once: true });
  } else {
    route();
  }
}
start();
