// The header analyser: pasted headers -> wasm analyzeHeaders -> verdict, facts, warnings,
// timeline, reasoning. Every decision shown comes from the core's policy.
import { rfcLinks } from './rfc.js';

const now = () => new Date().toUTCString();
const hourAgo = () => new Date(Date.now() - 3600e3).toUTCString();
const weekAgo = () => new Date(Date.now() - 7 * 86400e3).toUTCString();

export const EXAMPLES = {
  cdn: () => [`HTTP/1.1 200 OK\nDate: ${now()}\nCache-Control: public, max-age=300, s-maxage=3600\nETag: "a1b2c3"\nSurrogate-Key: products product-42\nContent-Type: text/html`, ''],
  swr: () => [`HTTP/1.1 200 OK\nDate: ${now()}\nCache-Control: max-age=60, stale-while-revalidate=30, stale-if-error=86400\nLast-Modified: ${hourAgo()}\nContent-Type: application/json`, ''],
  private: () => [`HTTP/1.1 200 OK\nDate: ${now()}\nCache-Control: private, max-age=600\nContent-Type: text/html`, ''],
  nocache: () => [`HTTP/1.1 200 OK\nDate: ${now()}\nCache-Control: no-cache\nETag: "v7"\nContent-Type: text/html`, ''],
  smaxage: () => [`HTTP/1.1 200 OK\nDate: ${now()}\nCache-Control: s-maxage=600, stale-while-revalidate=60\nETag: "v1"`, ''],
  vary: () => [`HTTP/1.1 200 OK\nDate: ${now()}\nCache-Control: public, max-age=600\nVary: Accept-Encoding, User-Agent\nETag: "v1"`, 'GET / HTTP/1.1\nAccept-Encoding: gzip, br\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0'],
  cookie: () => [`HTTP/1.1 200 OK\nDate: ${now()}\nCache-Control: public, max-age=3600\nSet-Cookie: session=abc123; HttpOnly; Secure\nETag: "v1"`, ''],
  auth: () => [`HTTP/1.1 200 OK\nDate: ${now()}\nCache-Control: max-age=60\nETag: "v1"`, 'GET /account HTTP/1.1\nAuthorization: Bearer eyJhbGciOi...'],
  heuristic: () => [`HTTP/1.1 200 OK\nDate: ${now()}\nLast-Modified: ${weekAgo()}\nContent-Type: image/png`, ''],
};

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  const { dataset, ...rest } = props;
  Object.assign(e, rest);
  Object.assign(e.dataset, dataset || {});
  e.append(...children.filter((c) => c !== null && c !== undefined));
  return e;
}

function secs(n) {
  if (n === 0) return '0 s';
  const units = [[86400, 'd'], [3600, 'h'], [60, 'min'], [1, 's']];
  const parts = [];
  let rest = Math.abs(n);
  for (const [u, name] of units) {
    if (rest >= u && parts.length < 2) {
      parts.push(`${Math.floor(rest / u)} ${name}`);
      rest %= u;
    }
  }
  return (n < 0 ? '−' : '') + parts.join(' ');
}

function fact(dl, term, ...value) {
  dl.append(el('dt', { textContent: term }), el('dd', {}, ...value));
}

/** Renders a report (the object analyzeHeaders returns). */
export function render(r) {
  const verdict = $('verdict');
  verdict.textContent = r.verdict;
  verdict.className = 'verdict ' + (r.storable ? 'ok' : 'bad');
  $('analysis-error').hidden = true;

  const dl = $('facts');
  dl.replaceChildren();
  fact(dl, 'Storable', r.storable ? 'yes' : `no — ${r.reason.text}`, rfcLinks(r.storable ? 'RFC 9111 §3' : r.reason.rfc));
  fact(dl, 'Request', r.request.text, rfcLinks(r.request.rfc));
  fact(dl, 'Directives', r.directives.list.length ? el('code', { textContent: r.directives.list.join(', ') }) : 'none recognised',
    ` from ${r.directives.source}`, r.directives.ignoredFields.length ? ` (ignoring ${r.directives.ignoredFields.join(', ')})` : '');
  fact(dl, 'Freshness', `${secs(r.freshness.lifetimeSecs)} — ${r.freshness.text}`, rfcLinks(r.freshness.rfc));
  if (r.storable) fact(dl, 'Age / TTL now', `age ${secs(r.ageSecs)}, ${r.ttlSecs >= 0 ? secs(r.ttlSecs) + ' of freshness left' : secs(-r.ttlSecs) + ' stale'}`, rfcLinks('RFC 9111 §4.2.3'));
  fact(dl, 'Stale windows', `stale-while-revalidate ${secs(r.staleWhileRevalidateSecs)}, stale-if-error ${secs(r.staleIfErrorSecs)}. ${r.stale.text}`, rfcLinks(r.stale.rfc));
  fact(dl, 'Vary', r.vary.text, r.vary.selected.length ? el('span', {}, ' Stored with ', el('code', { textContent: r.vary.selected.map(([n, v]) => `${n}: ${v}`).join('; ') })) : null, rfcLinks(r.vary.rfc));
  const v = r.validators;
  fact(dl, 'Validators', v.etag || v.lastModified
    ? el('span', {}, [v.etag && `ETag ${v.etag}`, v.lastModified && `Last-Modified ${v.lastModified}`].filter(Boolean).join(', '),
      v.conditionalRequest.length ? el('span', {}, ' → revalidates with ', el('code', { textContent: v.conditionalRequest.map(([n, x]) => `${n}: ${x}`).join('; ') })) : null)
    : 'none (no cheap 304 revalidation)', rfcLinks('RFC 9111 §4.3.1'));
  if (r.tags.length) fact(dl, 'Purge tags', el('code', { textContent: r.tags.join(' ') }));
  if (r.storable && r.keepSecs !== null) fact(dl, 'Kept for', `${secs(r.keepSecs)} (stale windows and validator retention)`);

  $('cache-status-box').hidden = false;
  $('cs-fetch').textContent = r.cacheStatus.onFetch;
  $('cs-repeat').textContent = r.cacheStatus.onRepeat;

  const warnings = $('warnings');
  warnings.replaceChildren(...r.warnings.map((w) =>
    el('li', { className: w.severity, dataset: { code: w.code } }, el('span', { className: 'badge', textContent: w.severity }), w.text, ' ', rfcLinks(w.rfc))));
  $('warnings-box').hidden = r.warnings.length === 0;

  const tbody = $('timeline').querySelector('tbody');
  tbody.replaceChildren(...r.timeline.map((m) => el('tr', {},
    el('td', { textContent: secs(m.atSecs) }),
    el('td', { textContent: m.label }),
    el('td', {}, el('span', { className: 'decision ' + m.decision, textContent: m.decision + (m.revalidateReason ? ` (${m.revalidateReason})` : '') })),
    el('td', {}, el('code', { textContent: m.cacheStatus }), m.cacheStatusOnError ? el('div', { className: 'small muted' }, 'origin down: ', el('code', { textContent: m.cacheStatusOnError })) : null),
    el('td', {}, m.text, ' ', rfcLinks(m.rfc)))));
  $('timeline-box').hidden = r.timeline.length === 0;

  $('notes').replaceChildren(...r.notes.map((n) => el('li', {}, n.text, ' ', rfcLinks(n.rfc))));
  $('notes-box').hidden = r.notes.length === 0;
}

function showError(message) {
  const verdict = $('verdict');
  verdict.textContent = 'Cannot analyse these headers.';
  verdict.className = 'verdict bad';
  const box = $('analysis-error');
  box.textContent = message;
  box.hidden = false;
  for (const id of ['warnings-box', 'timeline-box', 'notes-box', 'cache-status-box']) $(id).hidden = true;
  $('facts').replaceChildren();
}

export function setupAnalyzer(wasm) {
  const response = $('response-headers');
  const request = $('request-headers');
  const run = () => {
    if (!response.value.trim()) {
      $('verdict').textContent = 'Paste headers or pick an example.';
      $('verdict').className = 'verdict empty';
      return;
    }
    try {
      // No times given: the response counts as received at its Date (else now), and reuse is
      // judged at that moment, so the age is what its Age header says.
      const input = { responseHeaders: response.value };
      if (request.value.trim()) input.requestHeaders = request.value;
      render(wasm.analyzeHeaders(input));
    } catch (e) {
      showError(e instanceof Error ? e.message : String(e));
    }
  };
  let timer;
  const later = () => { clearTimeout(timer); timer = setTimeout(run, 250); };
  response.addEventListener('input', later);
  request.addEventListener('input', later);
  $('analyze').addEventListener('click', run);
  for (const b of document.querySelectorAll('[data-example]')) {
    b.addEventListener('click', () => {
      const [resp, req] = EXAMPLES[b.dataset.example]();
      response.value = resp;
      request.value = req;
      run();
    });
  }
  // Start with an example so the page is never empty.
  const [resp, req] = EXAMPLES.swr();
  response.value = resp;
  request.value = req;
  run();
}
