// A small hand-written line chart on <canvas>: axes, grid, legend, several series.
// drawChart(canvas, { series: [{ label, color, points: [[x, y], ...] }], xLabel, yMax, yUnit })

const FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif';

function niceStep(range, ticks) {
  const raw = range / Math.max(1, ticks);
  const mag = Math.pow(10, Math.floor(Math.log10(raw || 1)));
  const norm = raw / mag;
  const step = norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
  return step * mag;
}

function format(v, step = 1) {
  if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1).replace(/\.0$/, '') + 'M';
  if (Math.abs(v) >= 1e3) return (v / 1e3).toFixed(1).replace(/\.0$/, '') + 'k';
  const decimals = Math.max(0, Math.min(3, -Math.floor(Math.log10(step) + 1e-9)));
  return v.toFixed(decimals);
}

/** Draws the chart; sizes the canvas backing store to its CSS size and the device pixel ratio. */
export function drawChart(canvas, { series = [], xLabel = '', yMax, yUnit = '' } = {}) {
  const dpr = window.devicePixelRatio || 1;
  const cssWidth = canvas.clientWidth || 600;
  const cssHeight = Number(canvas.getAttribute('height')) || 220;
  canvas.style.height = cssHeight + 'px';
  canvas.width = Math.round(cssWidth * dpr);
  canvas.height = Math.round(cssHeight * dpr);
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, cssWidth, cssHeight);
  ctx.font = FONT;

  const pad = { left: 46, right: 12, top: 26, bottom: 30 };
  const w = Math.max(10, cssWidth - pad.left - pad.right);
  const h = Math.max(10, cssHeight - pad.top - pad.bottom);
  const all = series.flatMap((s) => s.points);
  const xMin = all.length ? Math.min(...all.map((p) => p[0])) : 0;
  const xMax = all.length ? Math.max(...all.map((p) => p[0])) : 1;
  const top = yMax ?? Math.max(1e-9, ...all.map((p) => p[1]));
  const yStep = niceStep(top, 4);
  const yTop = yMax ?? Math.max(yStep, Math.ceil(top / yStep) * yStep);
  const X = (x) => pad.left + ((x - xMin) / (xMax - xMin || 1)) * w;
  const Y = (y) => pad.top + h - (Math.min(y, yTop) / (yTop || 1)) * h;

  // grid and axes
  ctx.strokeStyle = '#e6eae8';
  ctx.fillStyle = '#5d6a64';
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let y = 0; y <= yTop + 1e-9; y += yStep) {
    ctx.beginPath();
    ctx.moveTo(pad.left, Math.round(Y(y)) + 0.5);
    ctx.lineTo(pad.left + w, Math.round(Y(y)) + 0.5);
    ctx.stroke();
    ctx.fillText(format(y, yStep) + yUnit, pad.left - 6, Y(y));
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  const xStep = niceStep(xMax - xMin, Math.max(2, Math.floor(w / 90)));
  for (let x = Math.ceil(xMin / xStep) * xStep; x <= xMax + 1e-9; x += xStep) {
    ctx.fillText(format(x, xStep), X(x), pad.top + h + 6);
  }
  ctx.textAlign = 'right';
  ctx.fillText(xLabel, pad.left + w, pad.top + h + 18 > cssHeight - 12 ? cssHeight - 12 : pad.top + h + 18);
  ctx.strokeStyle = '#9aa5a0';
  ctx.beginPath();
  ctx.moveTo(pad.left + 0.5, pad.top);
  ctx.lineTo(pad.left + 0.5, pad.top + h + 0.5);
  ctx.lineTo(pad.left + w, pad.top + h + 0.5);
  ctx.stroke();

  // series
  for (const s of series) {
    if (!s.points.length) continue;
    ctx.strokeStyle = s.color;
    ctx.lineWidth = 2;
    ctx.lineJoin = 'round';
    ctx.setLineDash(s.dash || []);
    ctx.beginPath();
    s.points.forEach(([x, y], i) => (i ? ctx.lineTo(X(x), Y(y)) : ctx.moveTo(X(x), Y(y))));
    ctx.stroke();
    ctx.setLineDash([]);
  }

  // legend
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  let lx = pad.left;
  for (const s of series) {
    ctx.fillStyle = s.color;
    ctx.fillRect(lx, 8, 14, 4);
    ctx.fillStyle = '#1d2421';
    ctx.fillText(s.label, lx + 19, 10);
    lx += 19 + ctx.measureText(s.label).width + 16;
  }
  if (!all.length) {
    ctx.fillStyle = '#5d6a64';
    ctx.textAlign = 'center';
    ctx.fillText('no data yet', pad.left + w / 2, pad.top + h / 2);
  }
  canvas.dataset.points = String(all.length);
}
