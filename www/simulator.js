// The simulator panel: runs the wasm discrete-event simulation for configurations A and B on
// the same request trace and plots them side by side.
import { drawChart } from './chart.js';

const $ = (id) => document.getElementById(id);
const COLORS = { a: '#146c5a', b: '#c2571a' };

function readForm(form) {
  const f = new FormData(form);
  const n = (k) => Number(f.get(k));
  const base = {
    keys: n('keys'), zipf: n('zipf'), rate: n('rate'), durationSecs: n('durationSecs'),
    capacity: n('capacity'), ttlSecs: n('ttlSecs'), sieSecs: n('sieSecs'),
    originLatencyMs: n('originLatencyMs'), originErrorRate: n('originErrorRate'), seed: 7,
  };
  const swr = n('swrSecs');
  const side = (p) => ({ ...base, swrSecs: f.get(p + 'Swr') ? swr : 0, coalescing: Boolean(f.get(p + 'Coalescing')) });
  const label = (p) => [f.get(p + 'Swr') ? 'SWR' : 'no SWR', f.get(p + 'Coalescing') ? 'coalescing' : 'no coalescing'].join(', ');
  return { a: side('a'), b: side('b'), labels: { a: 'A: ' + label('a'), b: 'B: ' + label('b') } };
}

function perSecond(series, field) {
  const width = series.t.length > 1 ? series.t[1] - series.t[0] : 1;
  return series.t.map((t, i) => [t, series[field][i] / width]);
}

function hitRatio(series) {
  return series.t.map((t, i) => {
    const r = series.requests[i];
    return [t, r ? (100 * (series.hits[i] + series.staleServed[i])) / r : 0];
  }).filter((_, i) => series.requests[i] > 0);
}

function latency(series) {
  return series.t.map((t, i) => [t, series.completed[i] ? series.latencyMsSum[i] / series.completed[i] : 0])
    .filter((_, i) => series.completed[i] > 0);
}

function staleRate(series) {
  const width = series.t.length > 1 ? series.t[1] - series.t[0] : 1;
  return series.t.map((t, i) => [t, (series.staleServed[i] + series.staleIfError[i]) / width]);
}

let last = null;

function plot() {
  if (!last) return;
  const { results, labels } = last;
  const two = (fn) => ['a', 'b'].map((k) => ({ label: labels[k], color: COLORS[k], points: fn(results[k].series), dash: k === 'b' ? [6, 4] : [] }));
  drawChart($('chart-hit'), { series: two(hitRatio), xLabel: 'simulated s', yMax: 100 });
  drawChart($('chart-origin'), { series: two((s) => perSecond(s, 'originRequests')), xLabel: 'simulated s' });
  drawChart($('chart-stale'), { series: two(staleRate), xLabel: 'simulated s' });
  drawChart($('chart-latency'), { series: two(latency), xLabel: 'simulated s' });
}

function totalsTable(results) {
  const rows = [
    ['Requests', (t) => t.requests.toLocaleString('en')],
    ['Hit ratio', (t) => (100 * t.hitRatio).toFixed(1) + ' %'],
    ['Fresh hits', (t) => t.hits.toLocaleString('en')],
    ['Stale served (SWR)', (t) => t.staleServed.toLocaleString('en')],
    ['Stale served (origin error)', (t) => t.staleIfError.toLocaleString('en')],
    ['Waited for the origin', (t) => t.misses.toLocaleString('en')],
    ['… of which coalesced', (t) => t.coalesced.toLocaleString('en')],
    ['Origin requests', (t) => t.originRequests.toLocaleString('en')],
    ['Errors to clients', (t) => t.errors.toLocaleString('en')],
    ['Mean latency', (t) => t.meanLatencyMs.toFixed(1) + ' ms'],
    ['Evictions', (t) => t.evictions.toLocaleString('en')],
    ['Policy windows (fresh/SWR/SIE)', (t) => t.policyWindowsSecs.join(' / ') + ' s'],
  ];
  const table = $('sim-totals');
  table.querySelector('tbody').replaceChildren(...rows.map(([name, f]) => {
    const tr = document.createElement('tr');
    for (const text of [name, f(results.a.totals), f(results.b.totals)]) {
      const td = document.createElement('td');
      td.textContent = text;
      tr.append(td);
    }
    return tr;
  }));
  table.hidden = false;
}

export function setupSimulator(wasm) {
  const form = $('sim-form');
  const status = $('sim-status');
  const run = () => {
    const { a, b, labels } = readForm(form);
    status.textContent = 'running…';
    $('sim-error').hidden = true;
    // Let the status paint before the (synchronous) simulation runs.
    setTimeout(() => {
      try {
        const t0 = performance.now();
        const results = { a: wasm.simulate(a), b: wasm.simulate(b) };
        const ms = performance.now() - t0;
        last = { results, labels };
        plot();
        totalsTable(results);
        status.textContent = `${(results.a.totals.requests + results.b.totals.requests).toLocaleString('en')} simulated requests in ${ms.toFixed(0)} ms`;
        form.dataset.runs = String(Number(form.dataset.runs || 0) + 1);
      } catch (e) {
        status.textContent = '';
        const box = $('sim-error');
        box.textContent = e instanceof Error ? e.message : String(e);
        box.hidden = false;
      }
    }, 20);
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); run(); });
  window.addEventListener('resize', () => plot());
  return { replot: plot, run };
}
