// Requests to hpod's API. With tokens configured, a 401 asks for a token once per tab
// (kept in sessionStorage) and the request is retried with it as a Bearer header.
const KEY = 'hpod-token';
let asking = null;

function headers(extra) {
  const h = Object.assign({}, extra || {});
  const t = sessionStorage.getItem(KEY);
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

function askToken(message) {
  if (asking) return asking;
  const dlg = document.getElementById('token-dialog');
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  document.getElementById('token-error').textContent = message || '';
  asking = new Promise((resolve) => {
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(KEY, input.value.trim());
      input.value = '';
      dlg.close();
      asking = null;
      resolve();
    }, { once: true });
  });
  dlg.showModal();
  input.focus();
  return asking;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error.message : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error ? body.error.code : '';
  }
}

// fetch with the token; answers the Response (ok) or throws ApiError.
export async function request(path, opts = {}) {
  for (let attempt = 0; attempt < 5; attempt++) {
    const r = await fetch(path, { headers: headers(opts.headers), signal: opts.signal });
    if (r.status === 401) {
      const had = sessionStorage.getItem(KEY);
      sessionStorage.removeItem(KEY);
      await askToken(had ? 'That token was not accepted.' : '');
      continue;
    }
    if (!r.ok) {
      let body = null;
      try { body = await r.json(); } catch (e) { body = null; }
      throw new ApiError(r.status, body);
    }
    return r;
  }
  throw new ApiError(401, null);
}

export async function getJSON(path, opts) {
  const r = await request(path, opts);
  return r.json();
}

export function tokenHeader() {
  const t = sessionStorage.getItem(KEY);
  return t ? `Bearer ${t}` : null;
}
