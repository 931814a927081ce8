// Drives the www/ demo page in real headless Chromium (Playwright), as a person would:
// the header analyser, the simulator, and the live view against a real `edgecache serve`
// this test starts itself (with a tiny node origin behind it): alone, and sharing a real
// `redis-server` (also started here) for the fleet's figures. Fails on any console error.
//
//   node tests/browser/www.test.mjs
//
// Needs www/pkg (scripts/build-www.sh), target/release/edgecache (cargo build --release
// --features server; under $CARGO_TARGET_DIR when set) and redis-server ($REDIS_SERVER, else
// /usr/bin/redis-server); scripts/test.sh builds both first and setup installs redis-server.
// Screenshots go to test-output/browser/; EDGECACHE_UPDATE_SCREENSHOT=1 also writes
// www/screenshot.png. Prints cargo-style `test ... ok` lines and a `test result:` line.
import { chromium } from 'playwright-core';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const WWW = join(ROOT, 'www');
const OUT = join(ROOT, 'test-output/browser');
const BIN = join(process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, 'target'), 'release/edgecache');
const REDIS_SERVER = process.env.REDIS_SERVER || '/usr/bin/redis-server';
const TOKEN = 'browser-test-token-0123456789';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const results = [];
const cleanups = [];
let consoleErrors = [];
let allowNetworkErrors = false;

function fail(message) {
  throw new Error(message);
}

async function check(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, ok: true });
    console.log(`test ${name} ... ok (${Date.now() - t0} ms)`);
  } catch (e) {
    results.push({ name, ok: false, error: e });
    console.log(`test ${name} ... FAILED\n    ${e && e.stack ? e.stack.split('\n').slice(0, 4).join('\n    ') : e}`);
  }
}

async function until(what, fn, timeoutMs = 15000, everyMs = 100) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  fail(`timed out waiting for ${what}${last ? ': ' + last.message : ''}`);
}

function listen(server) {
  return new Promise((ok, err) => {
    server.once('error', err);
    server.listen(0, '127.0.0.1', () => ok(server.address().port));
  });
}

async function freePort() {
  const s = createServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm', '.png': 'image/png', '.json': 'application/json', '.ts': 'text/plain' };

/** A static server for www/ on a loopback port. */
async function staticServer() {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
    const file = normalize(join(WWW, path === '/' ? 'index.html' : path));
    if (!file.startsWith(WWW) || !existsSync(file) || statSync(file).isDirectory()) {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return res.end('not found');
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' });
    res.end(readFileSync(file));
  });
  const port = await listen(server);
  cleanups.push(() => new Promise((r) => server.close(r)));
  return port;
}

/** The origin behind edgecache: cacheable responses; it also answers /_edgecache/stats
 *  without any CORS header (the live view's "CORS forbids it" case). */
async function originServer() {
  let hits = 0;
  const server = createServer((req, res) => {
    hits += 1;
    res.writeHead(200, { 'content-type': 'text/plain', 'cache-control': 'max-age=1, stale-while-revalidate=30', etag: '"v1"' });
    res.end(`origin response for ${req.url}\n`);
  });
  const port = await listen(server);
  cleanups.push(() => new Promise((r) => server.close(r)));
  return { port, hits: () => hits };
}

/** Stops a child process this test started, by its pid: SIGTERM, then SIGKILL after 3 s. */
function stopChild(child) {
  return new Promise((r) => {
    if (child.exitCode !== null || child.signalCode !== null) return r();
    child.once('exit', r);
    process.kill(child.pid, 'SIGTERM');
    setTimeout(() => { if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL'); }, 3000).unref();
  });
}

/** Whether a Redis on `port` answers PING. */
function redisPing(port) {
  return new Promise((ok) => {
    const socket = connect(port, '127.0.0.1');
    let reply = '';
    const done = (v) => { socket.destroy(); ok(v); };
    socket.setTimeout(1000, () => done(false));
    socket.on('error', () => done(false));
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (d) => { reply += d; if (reply.includes('\r\n')) done(reply.startsWith('+PONG')); });
  });
}

/** A real `redis-server` of this test's own: a free loopback port, no persistence, its own
 *  directory; stopped by its pid. Returns its URL. */
async function startRedis() {
  if (!existsSync(REDIS_SERVER)) fail(`${REDIS_SERVER} is missing: apt-get install redis-server (or set REDIS_SERVER)`);
  const errors = [];
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'edgecache-browser-redis-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    child.stdout.on('data', (d) => (log += d));
    child.stderr.on('data', (d) => (log += d));
    cleanups.unshift(() => stopChild(child));
    try {
      await until('redis-server to answer PING', async () => {
        if (child.exitCode !== null) fail(`redis-server exited (${child.exitCode}): ${log.slice(-500)}`);
        return redisPing(port);
      }, 5000, 50);
      return `redis://127.0.0.1:${port}/`;
    } catch (e) {
      errors.push(e.message);
      await stopChild(child);
    }
  }
  fail(`could not start redis-server: ${errors.join('; ')}`);
}

/** A real `edgecache serve`, CORS-allowing the page's origin; stopped by its pid. With
 *  `redis`, it shares that Redis and reports to the fleet's totals every `reportSecs`. */
async function startEdgecache(originPort, pageOrigin, { redis, reportSecs } = {}) {
  if (!existsSync(BIN)) fail(`${BIN} is missing: cargo build --release --features server`);
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'edgecache-browser-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const config = join(dir, 'edgecache.toml');
  writeFileSync(config, [
    `listen = "127.0.0.1:${port}"`,
    `origin = "http://127.0.0.1:${originPort}"`,
    ...(redis ? [`redis = "${redis}"`] : []),
    '[cache.admin]',
    'path = "/_edgecache"',
    `cors_allow_origins = ["${pageOrigin}"]`,
    ...(reportSecs ? ['[cache.stats]', `report_secs = ${reportSecs}`] : []),
    '',
  ].join('\n'));
  const child = spawn(BIN, ['serve', '--config', config, '--listen', `127.0.0.1:${port}`, '--origin', `http://127.0.0.1:${originPort}`], {
    env: { ...process.env, EDGECACHE_ADMIN_TOKEN: TOKEN, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  // Cleanups run in order: this one goes first, before that of the Redis it may use.
  cleanups.unshift(() => stopChild(child));
  const base = `http://127.0.0.1:${port}`;
  await until('edgecache serve to answer its stats endpoint', async () => {
    if (child.exitCode !== null) fail(`edgecache exited (${child.exitCode}): ${log}`);
    const r = await fetch(`${base}/_edgecache/stats`, { headers: { authorization: `Bearer ${TOKEN}` } });
    return r.status === 200;
  }, 20000, 150);
  return { base, pid: child.pid };
}

/** Pixels of a canvas that are not fully transparent, and a hash of its pixel data. */
async function canvasSignature(page, id) {
  return page.evaluate((id) => {
    const c = document.getElementById(id);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let painted = 0;
    let hash = 0;
    for (let i = 3; i < d.length; i += 4) {
      if (d[i] !== 0) painted += 1;
      hash = (hash * 31 + d[i - 3] + d[i - 2] * 7 + d[i - 1] * 13 + d[i]) | 0;
    }
    return { painted, hash, width: c.width, height: c.height };
  }, id);
}

/** Stops the live view's polling if a check before left it running (a failed one does). */
async function stopLive(page) {
  if (await page.isEnabled('#live-stop')) await page.click('#live-stop');
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  if (!existsSync(join(WWW, 'pkg/edgecache.js'))) fail('www/pkg is missing: run scripts/build-www.sh');

  const pagePort = await staticServer();
  const pageOrigin = `http://127.0.0.1:${pagePort}`;
  const origin = await originServer();
  const edge = await startEdgecache(origin.port, pageOrigin);

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
  cleanups.unshift(() => browser.close());
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const NETWORK = /ERR_CONNECTION_REFUSED|CORS policy|Failed to load resource|net::ERR_FAILED|401 \(Unauthorized\)/;
  page.on('console', (msg) => {
    if (msg.type() !== 'error') return;
    if (allowNetworkErrors && NETWORK.test(msg.text())) return;
    consoleErrors.push(msg.text());
  });
  page.on('pageerror', (e) => consoleErrors.push('page error: ' + e.message));

  await check('page loads the wasm core', async () => {
    await page.goto(pageOrigin + '/');
    await page.waitForSelector('body[data-ready=true]', { timeout: 15000 });
    const status = await page.textContent('#wasm-status');
    if (!/cache core v\d/.test(status)) fail(`wasm status: ${status}`);
  });

  await check('analyser: verdict, warnings and RFC references for pasted headers', async () => {
    await page.click('#tab-analyzer');
    await page.fill('#response-headers', 'HTTP/1.1 200 OK\nCache-Control: private, max-age=600\nContent-Type: text/html');
    await page.fill('#request-headers', '');
    await until('the private verdict', async () => /Not stored by a shared cache/.test(await page.textContent('#verdict')));
    const verdict = await page.textContent('#verdict');
    if (!/private/.test(verdict)) fail(`verdict does not explain private: ${verdict}`);
    if (!(await page.$('#warnings li[data-code="private-with-max-age"]'))) fail('no private-with-max-age warning');
    const facts = await page.textContent('#facts');
    if (!facts.includes('RFC 9111 §5.2.2.7')) fail('the reason has no RFC reference');
    if (!(await page.textContent('#cs-fetch')).includes('detail=private')) fail('Cache-Status on fetch lacks detail=private');
    await page.screenshot({ path: join(OUT, 'analyzer-private.png'), fullPage: true });
  });

  await check('analyser: examples (no-cache, stale windows, Vary) and a parse error', async () => {
    await page.click('[data-example=nocache]');
    await until('the no-cache warning', () => page.$('#warnings li[data-code="no-cache-is-not-no-store"]'));
    if (!/validated with the origin on every use/.test(await page.textContent('#verdict'))) fail('no-cache verdict');
    await page.click('[data-example=swr]');
    await until('the SWR verdict', async () => /served stale while revalidating for 30 s/.test(await page.textContent('#verdict')));
    const timeline = await page.textContent('#timeline tbody');
    if (!timeline.includes('detail=stale-while-revalidate')) fail('timeline lacks a stale-while-revalidate Cache-Status');
    if (!timeline.includes('detail=stale-if-error')) fail('timeline lacks a stale-if-error Cache-Status');
    await page.screenshot({ path: join(OUT, 'analyzer.png'), fullPage: true });
    if (process.env.EDGECACHE_UPDATE_SCREENSHOT === '1') {
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: join(WWW, 'screenshot.png'), fullPage: false });
    }
    await page.click('[data-example=vary]');
    await until('the Vary warning', () => page.$('#warnings li[data-code="vary-fragments-cache"]'));
    await page.fill('#response-headers', 'Cache-Control: max-age=60\nthis line has no colon');
    await page.click('#analyze');
    await until('the parse error', async () => /line 2/.test(await page.textContent('#analysis-error')));
    if (await page.isHidden('#analysis-error')) fail('parse error not shown');
  });

  await check('simulator: a run plots charts and A (SWR + coalescing) beats B', async () => {
    await page.click('#tab-simulator');
    await page.waitForSelector('#simulator:not([hidden])');
    const before = await canvasSignature(page, 'chart-hit');
    await page.fill('input[name=durationSecs]', '40');
    await page.click('#sim-run');
    await until('the first run', async () => (await page.getAttribute('#sim-form', 'data-runs')) === '1', 30000);
    const after = await canvasSignature(page, 'chart-hit');
    if (!(after.painted > before.painted + 1000)) fail(`hit-ratio chart barely painted: ${before.painted} -> ${after.painted}`);
    for (const id of ['chart-origin', 'chart-stale', 'chart-latency']) {
      const sig = await canvasSignature(page, id);
      if (sig.painted < 1000) fail(`${id} is empty`);
      const points = Number(await page.getAttribute('#' + id, 'data-points'));
      if (!(points > 40)) fail(`${id} has ${points} points`);
    }
    const cell = async (row, col) => (await page.textContent(`#sim-totals tbody tr:nth-child(${row}) td:nth-child(${col})`)).replace(/[^\d.]/g, '');
    const hitA = Number(await cell(2, 2));
    const hitB = Number(await cell(2, 3));
    const originA = Number(await cell(8, 2));
    const originB = Number(await cell(8, 3));
    const staleA = Number(await cell(4, 2));
    if (!(hitA > hitB)) fail(`hit ratio A ${hitA} <= B ${hitB}`);
    if (!(originA < originB)) fail(`origin requests A ${originA} >= B ${originB}`);
    if (!(staleA > 0)) fail('A served nothing stale');
    await page.screenshot({ path: join(OUT, 'simulator.png'), fullPage: true });
    // A different TTL gives a different picture.
    await page.fill('input[name=ttlSecs]', '1');
    await page.click('#sim-run');
    await until('the second run', async () => (await page.getAttribute('#sim-form', 'data-runs')) === '2', 30000);
    const third = await canvasSignature(page, 'chart-hit');
    if (third.hash === after.hash) fail('changing the TTL did not change the chart');
    await page.fill('input[name=zipf]', '9');
    await page.click('#sim-run');
    await until('the invalid-input message', async () => /zipf/.test(await page.textContent('#sim-error')));
    await page.fill('input[name=zipf]', '1');
  });

  await check('live view: charts a real edgecache serve through CORS', async () => {
    await page.click('#tab-live');
    await page.fill('#live-form input[name=url]', `${edge.base}/_edgecache/stats`);
    await page.fill('#live-form input[name=token]', TOKEN);
    await page.fill('#live-form input[name=interval]', '0.3');
    await page.click('#live-start');
    // Traffic through the proxy while the page polls.
    let stop = false;
    const traffic = (async () => {
      for (let i = 0; !stop; i++) {
        await fetch(`${edge.base}/item/${i % 5}`).then((r) => r.text()).catch(() => {});
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    try {
      await until('several polls', async () => Number(await page.getAttribute('#live-form', 'data-polls')) >= 6, 20000);
      await until('hits counted', async () => Number((await page.textContent('#live-counters dd[data-counter="L1 hits"]')).replace(/\D/g, '')) > 10, 10000);
    } finally {
      stop = true;
      await traffic;
    }
    if ((await page.getAttribute('#live-message', 'data-kind')) !== 'ok') fail(await page.textContent('#live-message'));
    const sig = await canvasSignature(page, 'chart-live');
    if (sig.painted < 1000) fail('live chart is empty');
    if (!(Number(await page.getAttribute('#chart-live', 'data-points')) >= 6)) fail('live chart has too few points');
    // Without Redis there are no fleet figures: the fleet block says why, as a note, and the
    // instance's figures are labelled as this instance's.
    if (await page.isHidden('#live-instance')) fail('the instance block is hidden');
    const id = await page.textContent('#live-instance-id');
    if (!/^[0-9a-f]{16}$/.test(id)) fail(`instance id shown: ${JSON.stringify(id)}`);
    if ((await page.getAttribute('#live-fleet', 'data-state')) !== 'unavailable') fail(`fleet state: ${await page.getAttribute('#live-fleet', 'data-state')}`);
    if (await page.isHidden('#live-fleet-unavailable')) fail('the reason there are no fleet figures is hidden');
    const reason = await page.textContent('#live-fleet-reason');
    if (!/^No fleet figures\. No shared tier \(Redis\)/.test(reason)) fail(`fleet reason: ${reason}`);
    if (!/redis/.test(await page.textContent('#live-fleet-hint'))) fail('no hint on how to get fleet figures');
    if (!(await page.isHidden('#live-fleet-counters'))) fail('fleet counters shown without fleet figures');
    if (!(await page.isDisabled('input[name=live-chart-scope][value=fleet]'))) fail('the fleet chart can be chosen without fleet figures');
    await page.screenshot({ path: join(OUT, 'live.png'), fullPage: true });
    await page.click('#live-stop');
  });

  await check('live view: clear messages for a wrong token, a dead server and CORS', async () => {
    // The browser itself logs 401 responses, refused connections and CORS blocks as console
    // errors: expected here, and only here.
    allowNetworkErrors = true;
    try {
      await stopLive(page);
      await page.fill('#live-form input[name=token]', 'wrong-token-0123456789');
      await page.click('#live-start');
      await until('the 401 message', async () => /refused the token/.test(await page.textContent('#live-message')));
      await page.click('#live-stop');
      const dead = await freePort();
      await page.fill('#live-form input[name=url]', `http://127.0.0.1:${dead}/_edgecache/stats`);
      await page.click('#live-start');
      await until('the unreachable message', async () => /Cannot reach/.test(await page.textContent('#live-message')));
      await page.click('#live-stop');
      await page.fill('#live-form input[name=url]', `http://127.0.0.1:${origin.port}/_edgecache/stats`);
      await page.click('#live-start');
      await until('the CORS message', async () => /CORS forbids it/.test(await page.textContent('#live-message')));
      const text = await page.textContent('#live-message');
      if (!text.includes(pageOrigin)) fail(`the CORS message does not name the page origin: ${text}`);
      await page.click('#live-stop');
      await page.waitForTimeout(300);
    } finally {
      allowNetworkErrors = false;
    }
  });

  await check('live view: the fleet\'s figures from an edgecache sharing a real Redis', async () => {
    await stopLive(page);
    const redis = await startRedis();
    const shared = await startEdgecache(origin.port, pageOrigin, { redis, reportSecs: 1 });
    await page.fill('#live-form input[name=url]', `${shared.base}/_edgecache/stats`);
    await page.fill('#live-form input[name=token]', TOKEN);
    await page.fill('#live-form input[name=interval]', '0.3');
    await page.click('#live-start');
    const fleetCounter = async (name) => Number((await page.textContent(`#live-fleet-counters dd[data-counter="${name}"]`)).replace(/\D/g, ''));
    let stop = false;
    const traffic = (async () => {
      for (let i = 0; !stop; i++) {
        await fetch(`${shared.base}/fleet/${i % 5}`).then((r) => r.text()).catch(() => {});
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    try {
      await until('fleet figures', async () => (await page.getAttribute('#live-fleet', 'data-state')) === 'figures', 15000);
      await until('the fleet totals to count requests, hits and bytes', async () => (await fleetCounter('requests')) > 10
        && (await fleetCounter('L1 hits')) > 0 && (await fleetCounter('bytes from cache')) > 0, 15000);
      await page.check('input[name=live-chart-scope][value=fleet]');
      await until('fleet rates charted', async () => (await page.getAttribute('#chart-live', 'data-scope')) === 'fleet'
        && Number(await page.getAttribute('#chart-live', 'data-points')) >= 9, 15000);
    } finally {
      stop = true;
      await traffic;
    }
    if ((await page.getAttribute('#live-message', 'data-kind')) !== 'ok') fail(await page.textContent('#live-message'));
    if ((await page.getAttribute('#live-fleet', 'data-instances')) !== '1') fail(`instances: ${await page.getAttribute('#live-fleet', 'data-instances')}`);
    const fact = (name) => page.textContent(`#live-fleet-freshness dd[data-fact="${name}"]`);
    if (!/^1 \(within the last 3 s\)$/.test(await fact('instances reporting'))) fail(`instances reporting: ${await fact('instances reporting')}`);
    if (!/ old$/.test(await fact('their reports'))) fail(`report ages: ${await fact('their reports')}`);
    if (!/ ago$/.test(await fact('this instance\u2019s last report'))) fail(`own report: ${await fact('this instance\u2019s last report')}`);
    if ((await fact('reports every')) !== '1 s') fail(`report interval: ${await fact('reports every')}`);
    if (!/ago\)$/.test(await fact('counting since'))) fail(`since: ${await fact('counting since')}`);
    if (!/^\d+(\.\d)? %$/.test(await page.textContent('#live-fleet-counters dd[data-counter="hit ratio"]'))) fail('no fleet hit ratio');
    if (await page.$('#live-fleet-counters dd[data-counter="L1 entries"]')) fail('a per-instance gauge is shown as a fleet total');
    if (!(await page.isHidden('#live-fleet-unavailable'))) fail('the unavailable note is shown with fleet figures');
    // The one instance reporting is the one answering, and is named as such.
    const id = await page.textContent('#live-instance-id');
    const listed = await page.textContent('#live-fleet-list');
    if (!listed.includes(id) || !listed.includes('(this instance)')) fail(`reporting list: ${listed}`);
    // The fleet counts only what was reported: never more than the instance counted.
    const [own, all] = await page.evaluate(() => ['live-counters', 'live-fleet-counters'].map((id) =>
      Number(document.querySelector(`#${id} dd[data-counter="requests"]`).textContent.replace(/\D/g, ''))));
    if (!(all <= own)) fail(`fleet requests ${all} > the instance's ${own}`);
    if (!/whole fleet/.test(await page.textContent('#live-chart-caption'))) fail('the chart caption does not say it shows the fleet');
    if ((await canvasSignature(page, 'chart-live')).painted < 1000) fail('fleet chart is empty');
    await page.click('#live-fleet-reporting summary');
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(OUT, 'live-fleet.png'), fullPage: true });
    await page.click('#live-stop');
    await page.check('input[name=live-chart-scope][value=instance]');
    if ((await page.getAttribute('#chart-live', 'data-scope')) !== 'instance') fail('the chart did not go back to the instance');
  });

  await check('phone layout: no horizontal scrolling, tools usable', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const tab of ['analyzer', 'simulator', 'live']) {
      await page.click('#tab-' + tab);
      await page.waitForTimeout(150);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      if (overflow > 1) fail(`${tab}: page is ${overflow}px wider than the phone`);
      if (tab === 'live') await page.screenshot({ path: join(OUT, 'phone-live.png'), fullPage: true });
    }
    await page.click('#tab-analyzer');
    await page.click('[data-example=cdn]');
    await until('the CDN verdict', async () => /Cacheable by a shared cache/.test(await page.textContent('#verdict')));
    await page.screenshot({ path: join(OUT, 'phone-analyzer.png'), fullPage: true });
  });

  await check('no console errors', async () => {
    if (consoleErrors.length) fail('console errors:\n' + consoleErrors.join('\n'));
  });
}

let crashed = null;
try {
  await main();
} catch (e) {
  crashed = e;
  console.log(`test setup ... FAILED\n    ${e && e.stack ? e.stack : e}`);
} finally {
  for (const c of cleanups) {
    try { await c(); } catch { /* keep cleaning */ }
  }
}
const passed = results.filter((r) => r.ok).length;
const failed = results.length - passed + (crashed ? 1 : 0);
console.log(`\ntest result: ${failed ? 'FAILED' : 'ok'}. ${passed} passed; ${failed} failed; 0 ignored`);
process.exit(failed ? 1 : 0);
