// The live view: polls a running edgecache's admin stats (GET {admin}/stats with a bearer
// token, CORS-allowed for this page's origin) and charts hits, stale and misses per second.
// /stats holds the answering instance's own figures ("scope": "instance", with its id) and,
// when instances share Redis, the fleet's: "fleet" with every instance's counters added up as
// of its last report, how many report and how old their reports are; without them "fleet" is
// null and "fleet_unavailable" says why (src/engine/fleet.rs).
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

// Counters read the same from the instance's figures and the fleet's (both have `engine` and
// the L1 counters); gauges (what L1 holds now) are the instance's only.
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
  ['L1 entries', (s) => s.l1_entries, 'gauge'],
  ['L1 bytes', (s) => s.l1_bytes, 'gauge'],
];

function hits(s) { return s.engine.l1_hits + s.engine.l2_hits; }
function stale(s) { return s.engine.stale_while_revalidate + s.engine.stale_if_error; }

function hitRatio(s) {
  const total = hits(s) + stale(s) + s.engine.misses;
  return total ? ((100 * (hits(s) + stale(s))) / total).toFixed(1) + ' %' : '—';
}

/** A duration in ms, in words: "0.4 s", "12 s", "3 min 5 s", "2 h 10 min", "3 d 4 h". */
function duration(ms) {
  const s = Math.max(0, ms) / 1000;
  if (s < 10) return s.toFixed(1) + ' s';
  if (s < 60) return Math.round(s) + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} d ${h % 24} h`;
}

/** What to do about a reason the server gave for having no fleet figures. */
function fleetHint(reason) {
  if (/report_secs is 0/.test(reason)) return 'To add them up, set [cache.stats] report_secs above 0 (10 by default) on every instance.';
  if (/no shared tier/i.test(reason)) return 'To see the whole fleet here, give every instance the same redis in its config: each then adds its counts to shared totals.';
  return 'The page keeps polling: the fleet\u2019s figures come back when Redis answers again.';
}

/** Fills a <dl> with [name, value, key] rows; each <dd> gets data-KEY=name. */
function fill(dl, rows, key) {
  dl.replaceChildren();
  for (const [n, v] of rows) {
    const dt = document.createElement('dt');
    dt.textContent = n;
    const dd = document.createElement('dd');
    dd.textContent = v;
    dd.dataset[key] = n;
    dl.append(dt, dd);
  }
}

const emptySeries = () => ({ hits: [], stale: [], misses: [] });

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
  let series = { instance: emptySeries(), fleet: emptySeries() };
  // Fleet samples [{ at: the server's time of the newest report in the totals, hits, stale,
  // misses, since }]: fleet rates are taken over at least a report interval (fleetRates).
  let fleetSamples = [];
  let fleetReportSecs = 0;
  let scope = 'instance';
  let fleetSeen = false; // fleet figures came in since Start: the fleet chart can be chosen
  const scopeInputs = document.querySelectorAll('input[name=live-chart-scope]');
  const fleetInput = document.querySelector('input[name=live-chart-scope][value=fleet]');

  const draw = () => {
    const canvas = $('chart-live');
    const points = series[scope];
    canvas.dataset.scope = scope;
    $('live-chart-caption').textContent = scope === 'fleet'
      ? `Per second, the whole fleet: hits, stale served, misses (each point averages at least ${fleetReportSecs ? fleetReportSecs + ' s' : 'one report interval'} of reports, so it trails by up to that much)`
      : 'Per second, this instance: hits, stale served, misses';
    drawChart(canvas, {
      xLabel: 'seconds',
      series: [
        { label: 'hits/s', color: '#146c5a', points: points.hits },
        { label: 'stale/s', color: '#d49a00', points: points.stale },
        { label: 'misses/s', color: '#c2571a', points: points.misses, dash: [6, 4] },
      ],
    });
  };

  for (const input of scopeInputs) {
    input.addEventListener('change', () => {
      if (input.checked) scope = input.value;
      draw();
    });
  }

  const counters = (s) => {
    $('live-instance-id').textContent = s.instance || 'id not reported';
    fill($('live-counters'), [...COUNTERS.map(([n, f]) => [n, (f(s) ?? 0).toLocaleString('en')]),
      ['hit ratio', hitRatio(s)]], 'counter');
  };

  /** The fleet block: its figures, or in plain words why there are none. */
  const fleetBlock = (s) => {
    const box = $('live-fleet');
    const f = s.fleet;
    const figures = f && typeof f === 'object' && f.engine;
    box.dataset.state = figures ? 'figures' : f === undefined ? 'absent' : 'unavailable';
    $('live-fleet-unavailable').hidden = Boolean(figures);
    for (const id of ['live-fleet-freshness', 'live-fleet-counters', 'live-fleet-reporting']) $(id).hidden = !figures;
    if (!figures) {
      box.dataset.instances = '';
      if (f === undefined) {
        $('live-fleet-reason').textContent = 'This edgecache does not report fleet figures (a version from before they existed).';
        $('live-fleet-hint').textContent = 'The figures shown are this instance\u2019s alone.';
      } else {
        const reason = String(s.fleet_unavailable || 'the server gave no reason');
        $('live-fleet-reason').textContent = `No fleet figures. ${reason.charAt(0).toUpperCase()}${reason.slice(1)}.`;
        $('live-fleet-hint').textContent = fleetHint(reason);
      }
      return;
    }
    box.dataset.instances = String(f.instances);
    const ages = f.newest_report_age_ms == null
      ? 'none within the window'
      : f.newest_report_age_ms === f.oldest_report_age_ms
        ? `${duration(f.newest_report_age_ms)} old`
        : `newest ${duration(f.newest_report_age_ms)} old, oldest ${duration(f.oldest_report_age_ms)} old`;
    const since = f.since_ms == null
      ? 'unknown'
      : `${new Date(f.since_ms).toLocaleString('en', { dateStyle: 'medium', timeStyle: 'medium' })} (${duration(f.read_at_ms - f.since_ms)} ago)`;
    fill($('live-fleet-freshness'), [
      ['instances reporting', `${f.instances.toLocaleString('en')} (within the last ${f.window_secs} s)`],
      ['their reports', ages],
      ['this instance\u2019s last report', f.own_report_age_ms == null ? 'none yet' : `${duration(f.own_report_age_ms)} ago`],
      ['reports every', `${f.report_secs} s`],
      ['counting since', since],
    ], 'fact');
    fill($('live-fleet-counters'), [...COUNTERS.filter((c) => c[2] !== 'gauge').map(([n, g]) => [n, (g(f) ?? 0).toLocaleString('en')]),
      ['hit ratio', hitRatio(f)]], 'counter');
    const list = $('live-fleet-list');
    list.replaceChildren();
    for (const r of f.reporting || []) {
      const li = document.createElement('li');
      const code = document.createElement('code');
      code.textContent = r.instance;
      li.append(code, ` reported ${duration(r.age_ms)} ago`, r.instance === s.instance ? ' (this instance)' : '');
      list.append(li);
    }
    const more = f.instances - (f.reporting || []).length;
    if (more > 0) {
      const li = document.createElement('li');
      li.textContent = `and ${more.toLocaleString('en')} more`;
      list.append(li);
    }
  };

  /** Fleet rates: what the totals gained over at least a report interval (in which each live
   *  instance reports once), timed by the newest report they hold, so a report's jump is
   *  spread over the time it covers (with one instance, exactly from report to report). */
  const fleetRates = (f, x) => {
    if (!f || typeof f !== 'object' || !f.engine) return;
    fleetSeen = true;
    fleetReportSecs = f.report_secs;
    const at = f.read_at_ms - (f.newest_report_age_ms ?? 0);
    const sample = { at, hits: hits(f), stale: stale(f), misses: f.engine.misses, since: f.since_ms };
    const last = fleetSamples[fleetSamples.length - 1];
    if (last && last.since === sample.since && sample.at === last.at) return; // no report since
    if (last && (last.since !== sample.since || sample.at < last.at)) fleetSamples = []; // totals restarted
    fleetSamples.push(sample);
    const span = Math.max(1, f.report_secs) * 1000;
    let base = -1;
    fleetSamples.forEach((h, i) => { if (sample.at - h.at >= span) base = i; });
    if (base < 0) return;
    const from = fleetSamples[base];
    const dt = (sample.at - from.at) / 1000;
    const rate = (k) => Math.max(0, sample[k] - from[k]) / dt;
    for (const k of ['hits', 'stale', 'misses']) series.fleet[k].push([x, rate(k)]);
    fleetSamples = fleetSamples.slice(base);
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
      const own = series.instance;
      own.hits.push([x, (hits(s) - hits(prev.s)) / dt]);
      own.stale.push([x, (stale(s) - stale(prev.s)) / dt]);
      own.misses.push([x, (s.engine.misses - prev.s.engine.misses) / dt]);
      fleetRates(s.fleet, x);
    } else {
      t0 = at;
      fleetRates(s.fleet, 0);
    }
    fleetInput.disabled = !fleetSeen;
    if (!fleetSeen && scope === 'fleet') {
      scope = 'instance';
      document.querySelector('input[name=live-chart-scope][value=instance]').checked = true;
    }
    for (const set of Object.values(series)) for (const k of Object.keys(set)) set[k] = set[k].slice(-WINDOW);
    prev = { s, at };
    const fleet = s.fleet && s.fleet.engine
      ? `; the fleet's totals (${s.fleet.instances.toLocaleString('en')} instance${s.fleet.instances === 1 ? '' : 's'} reporting): ${s.fleet.engine.requests.toLocaleString('en')}`
      : '';
    message('ok', `Connected to ${new URL(url).origin}: this instance has handled ${s.engine.requests.toLocaleString('en')} requests${fleet}.`);
    $('live-scopes').hidden = false;
    counters(s);
    fleetBlock(s);
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
    series = { instance: emptySeries(), fleet: emptySeries() };
    fleetSamples = [];
    fleetSeen = false;
    // Another server's figures must not stay on screen as if they were this one's.
    $('live-scopes').hidden = true;
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
