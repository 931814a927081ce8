// Entry point: loads the wasm package (www/pkg, built by scripts/build-www.sh), wires tabs and
// the three tools.
import { setupAnalyzer } from './analyzer.js';
import { setupSimulator } from './simulator.js';
import { setupLive } from './live.js';

const status = document.getElementById('wasm-status');
const panels = ['analyzer', 'simulator', 'live'];
const redraw = {};

function showTab() {
  const id = panels.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'analyzer';
  for (const p of panels) {
    document.getElementById(p).hidden = p !== id;
    document.getElementById('tab-' + p).setAttribute('aria-selected', String(p === id));
  }
  // Canvases take their size from layout: draw once visible.
  redraw[id]?.();
}

async function main() {
  window.addEventListener('hashchange', showTab);
  showTab();
  let wasm;
  try {
    wasm = await import('./pkg/edgecache.js');
    await wasm.default();
  } catch (e) {
    status.textContent = 'The wasm package is missing: run scripts/build-www.sh, then reload.';
    status.classList.add('failed');
    return;
  }
  status.textContent = `cache core v${wasm.version()} (wasm)`;
  document.getElementById('version').textContent = `Package v${wasm.version()}.`;
  setupAnalyzer(wasm);
  const sim = setupSimulator(wasm);
  redraw.simulator = () => sim.replot();
  const live = setupLive();
  redraw.live = () => live.redraw();
  document.body.dataset.ready = 'true';
  showTab();
}

main();
