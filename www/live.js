// The live view: polls a running edgecache's admin stats (GET {admin}/stats with a bearer
// token, CORS-allowed for this page's origin) and charts hits, stale and misses per second.
import { drawChart } from './chart.js';

const $ = (id) => document.getElementById(id);
const WINDOW = 120; // points kept

function message(kind, text) {
  const box = $('live-message');
  box.className = 'message ' + kind;
  box.textContent = text;
  box.hidden = false;
  box.dataset.kind = kind;
}

/** Why a fetch failed: a no-cors probe tells "server down" from "CORS refused". */
async function diagnose(url) {
  try {
    await fetch(url, { mode: 'no-cors', cache: 'no-store' });
    return `${new URL(url).origin} answers, but not to this page: CORS forbids it. Add "${location.origin}" to [cache.admin] cors_allow_origins in the edgecache config and restart it.`;
  } catch {
    return `Cannot reach ${new URL(url).origin}: is edgecache serve running there, with the admin API enabled (EDGECACHE_ADMIN_TOKEN set)?`;
  }
}

const COUNTERS = [
  ['requests', (s) => s.engine.requests],
  ['L1 hits', (s) => s.engine.l1_hits],
  ['L2 hits', (s) => s.engine.l2_hits],
  ['misses', (s) => s.engine.misses],
  ['stale (SWR)', (s) => s.engine.stale_while_revalidate],
  ['stale (error)', (s) => s.engine.stale_if_error],
  ['coalesced', (s) => s.engine.coalesced],
  ['origin fetches', (s) => s.engine.origin_fetches],
  ['origin errors', (s) => s.engine.origin_errors],
  ['bytes from cache', (s) => s.engine.bytes_from_cache],
  ['bytes from origin', (s) => s.engine.bytes_from_origin],
  ['stored', (s) => s.engine.stored],
  ['streamed fills', (s) => s.engine.streamed_fills],
  ['failed fills', (s) => s.engine.failed_fills],
  ['sliced objects', (s) => s.engine.sliced_objects],
  ['slice fetches', (s) => s.engine.slice_fetches],
  ['L1 entries', (s) => s.l1_entries],
  ['L1 bytes', (s) => s.l1_bytes],
];

function hits(s) { return s.engine.l1_hits + s.engine.l2_hits; }
function stale(s) { return s.engine.stale_while_revalidate + s.engine.stale_if_error; }

export function setupLive() {
  const form = $('live-form');
  const stop = $('live-stop');
  $('page-origin').textContent = location.origin;
  const saved = sessionStorage.getItem('edgecache-live');
  if (saved) {
    try {
      const { url, token } = JSON.parse(saved);
      if (url) form.elements.url.value = url;
      if (token) form.elements.token.value = token;
    } catch { /* ignore */ }
  }
  let timer = null;
  let prev = null;
  let t0 = 0;
  let series = { hits: [], stale: [], misses: [] };

  const draw = () => drawChart($('chart-live'), {
    xLabel: 'seconds',
    series: [
      { label: 'hits/s', color: '#146c5a', points: series.hits },
      { label: 'stale/s', color: '#d49a00', points: series.stale },
      { label: 'misses/s', color: '#c2571a', points: series.misses, dash: [6, 4] },
    ],
  });

  const counters = (s) => {
    const dl = $('live-counters');
    dl.replaceChildren();
    const total = hits(s) + stale(s) + s.engine.misses;
    const rows = [...COUNTERS.map(([n, f]) => [n, f(s).toLocaleString('en')]),
      ['hit ratio', total ? ((100 * (hits(s) + stale(s))) / total).toFixed(1) + ' %' : '—']];
    for (const [n, v] of rows) {
      const dt = document.createElement('dt');
      dt.textContent = n;
      const dd = document.createElement('dd');
      dd.textContent = v;
      dd.dataset.counter = n;
      dl.append(dt, dd);
    }
  };

  const poll = async (url, token) => {
    let response;
    try {
      response = await fetch(url, { headers: token ? { Authorization: `Bearer ${token}` } : {}, cache: 'no-store' });
    } catch {
      message('bad', await diagnose(url));
      return;
    }
    if (response.status === 401) return message('bad', 'The server refused the token (401): use the value of EDGECACHE_ADMIN_TOKEN it was started with.');
    if (response.status === 404) return message('bad', `404 from ${url}: the admin API is disabled (no token configured) or the admin path is not ${new URL(url).pathname.replace(/\/stats$/, '')}.`);
    if (!response.ok) return message('bad', `The stats endpoint answered ${response.status}.`);
    let s;
    try {
      s = await response.json();
      if (!s || !s.engine) throw new Error('no engine counters');
    } catch {
      return message('bad', 'The response is not edgecache stats JSON: check the URL ends with {admin path}/stats.');
    }
    const at = performance.now();
    if (prev) {
      const dt = (at - prev.at) / 1000 || 1;
      const x = (at - t0) / 1000;
      series.hits.push([x, (hits(s) - hits(prev.s)) / dt]);
      series.stale.push([x, (stale(s) - stale(prev.s)) / dt]);
      series.misses.push([x, (s.engine.misses - prev.s.engine.misses) / dt]);
      for (const k of Object.keys(series)) series[k] = series[k].slice(-WINDOW);
    } else {
      t0 = at;
    }
    prev = { s, at };
    message('ok', `Connected to ${new URL(url).origin}: ${s.engine.requests.toLocaleString('en')} requests so far.`);
    counters(s);
    draw();
    form.dataset.polls = String(Number(form.dataset.polls || 0) + 1);
  };

  const halt = () => {
    clearInterval(timer);
    timer = null;
    stop.disabled = true;
    $('live-start').disabled = false;
  };

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    halt();
    const url = form.elements.url.value.trim();
    const token = form.elements.token.value;
    try { new URL(url); } catch { return message('bad', 'Enter a full URL, e.g. http://127.0.0.1:8787/_edgecache/stats'); }
    sessionStorage.setItem('edgecache-live', JSON.stringify({ url, token }));
    prev = null;
    series = { hits: [], stale: [], misses: [] };
    draw();
    message('warn', `Connecting to ${url}…`);
    const every = Math.max(0.2, Number(form.elements.interval.value) || 1) * 1000;
    poll(url, token);
    timer = setInterval(() => poll(url, token), every);
    stop.disabled = false;
    $('live-start').disabled = true;
  });
  stop.addEventListener('click', halt);
  draw();
  return { redraw: draw };
}
