/**
 * The dashboard: one self-contained page (no external assets, so it works without internet),
 * polling `/api/dashboard` every second. It shows the workers with their resources free/total,
 * state and last heartbeat, the jobs with per-task counts, errors with their stack, and a chart
 * of output batches per second over the last minute.
 */

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dpl dashboard</title>
<style>
  :root { color-scheme: light dark; --fg: #1d2430; --muted: #6b7380; --line: #d9dde3; --accent: #2f6fed; --bad: #c43c3c; --ok: #2e8b57; }
  @media (prefers-color-scheme: dark) { :root { --fg: #e6e9ee; --muted: #9aa3b1; --line: #353b45; } }
  body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: var(--fg); }
  h1 { font-size: 1.3rem; margin: 0 0 .2rem; }
  h2 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
  .muted { color: var(--muted); }
  table { border-collapse: collapse; width: 100%; }
  th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { font-weight: 600; color: var(--muted); }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  .state-alive, .state-finished { color: var(--ok); }
  .state-draining, .state-running { color: var(--accent); }
  .state-dead, .state-failed, .state-cancelled { color: var(--bad); }
  pre { white-space: pre-wrap; margin: .3rem 0; font-size: 12px; color: var(--bad); }
  svg { width: 100%; height: 120px; border: 1px solid var(--line); }
  #error { color: var(--bad); }
</style>
</head>
<body>
<h1>dpl</h1>
<div class="muted" id="summary">loading…</div>
<div id="error"></div>
<h2>Throughput <span class="muted" id="rate"></span></h2>
<svg id="chart" viewBox="0 0 600 120" preserveAspectRatio="none" role="img" aria-label="output batches per second, last 60 s"></svg>
<h2>Workers</h2>
<table id="workers"><thead><tr><th>worker</th><th>state</th><th>host</th><th>resources (free/total)</th><th>object store</th><th>last heartbeat</th></tr></thead><tbody></tbody></table>
<h2>Jobs</h2>
<table id="jobs"><thead><tr><th>job</th><th>state</th><th>batches out</th><th>rows out</th><th>tasks: calls · running · retries</th><th>elapsed</th></tr></thead><tbody></tbody></table>
<script>
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
const mib = (b) => (b / 1048576).toFixed(1) + ' MiB';
const secs = (ms) => (ms / 1000).toFixed(1) + ' s';
function resources(w) {
  return Object.keys(w.resources.total).map((k) => esc(k) + ' ' + (w.resources.available[k] ?? 0) + '/' + w.resources.total[k]).join(', ') || '-';
}
function render(d) {
  const live = d.workers.filter((w) => w.state !== 'dead');
  const running = d.jobs.filter((j) => j.state === 'running');
  document.getElementById('summary').textContent =
    'dpl ' + d.version + ' · ' + live.length + ' worker' + (live.length === 1 ? '' : 's') + ' · ' + running.length + ' job' + (running.length === 1 ? '' : 's') + ' running';
  const now = d.now;
  document.querySelector('#workers tbody').innerHTML = d.workers.map((w) =>
    '<tr data-worker="' + esc(w.id) + '"><td>' + esc(w.id) + '</td><td class="state-' + esc(w.state) + '">' + esc(w.state) + '</td><td>' + esc(w.hostname) +
    '</td><td>' + resources(w) + '</td><td class="num">' + mib(w.objectStore.memoryBytes) + (w.objectStore.diskBytes > 0 ? ' + ' + mib(w.objectStore.diskBytes) + ' on disk' : '') +
    '</td><td class="num">' + (w.state === 'dead' ? '-' : secs(now - w.lastHeartbeatMs) + ' ago') + '</td></tr>').join('');
  document.querySelector('#jobs tbody').innerHTML = d.jobs.slice().reverse().map((j) => {
    const tasks = Object.entries(j.tasks).map(([name, t]) => esc(name) + ': ' + t.calls + ' · ' + t.running + ' · ' + t.retries).join('<br>');
    const err = j.error ? '<pre>' + esc(j.error.message) + (j.error.stack ? '\\n' + esc(j.error.stack) : '') + '</pre>' : '';
    const elapsed = (j.endedAtMs ?? now) - j.startedAtMs;
    const seen = Object.entries(j.observed).map(([k, v]) => esc(k) + ' ' + (typeof v !== 'number' ? '?' : Number.isInteger(v) ? v : v.toFixed(2)))
      .concat(Object.entries(j.params).map(([k, v]) => esc(k) + '=' + esc(v)));
    const observed = seen.length > 0 ? '<div class="muted observed">observed: ' + seen.join(' · ') + '</div>' : '';
    const output = j.output && j.output.length > 0 ? '<details class="output"><summary class="muted">task output (last ' + j.output.length + ' lines)</summary><pre>' + esc(j.output.join('\\n')) + '</pre></details>' : '';
    const detached = j.detached ? '<div class="muted">detached: outputs written under ' + esc(j.outDir || '') + '</div>' : '';
    return '<tr data-job="' + esc(j.id) + '"><td>' + esc(j.id) + detached + observed + err + output + '</td><td class="state-' + esc(j.state) + '">' + esc(j.state) +
      '</td><td class="num batches">' + j.outputs + '</td><td class="num">' + j.rows + '</td><td>' + tasks + '</td><td class="num">' + secs(elapsed) + '</td></tr>';
  }).join('');
  const pts = d.throughput;
  const max = Math.max(1, ...pts.map((p) => p.batchesPerSecond));
  const poly = pts.map((p, i) => (i * 600 / Math.max(1, pts.length - 1)).toFixed(1) + ',' + (115 - p.batchesPerSecond / max * 105).toFixed(1)).join(' ');
  document.getElementById('chart').innerHTML =
    '<polyline fill="none" stroke="var(--accent)" stroke-width="2" points="' + poly + '"></polyline>' +
    '<text x="4" y="14" font-size="11" fill="currentColor">' + max.toFixed(1) + ' batches/s</text>';
  const last = pts.length > 0 ? pts[pts.length - 1].batchesPerSecond : 0;
  document.getElementById('rate').textContent = last.toFixed(1) + ' batches/s now';
}
async function tick() {
  try {
    const res = await fetch('api/dashboard', { credentials: 'same-origin' });
    if (!res.ok) throw new Error((await res.json()).error || res.statusText);
    render(await res.json());
    document.getElementById('error').textContent = '';
  } catch (e) {
    document.getElementById('error').textContent = 'cannot reach the head: ' + e.message;
  }
}
tick();
setInterval(tick, 1000);
</script>
</body>
</html>
`;

/** The page shown without the token: how to get in. */
export const DASHBOARD_LOGIN_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dpl dashboard</title>
<style>body { font: 14px system-ui, sans-serif; margin: 2rem; }</style></head>
<body>
<h1>dpl</h1>
<p>This head takes a token. Open <code>/?token=YOUR_TOKEN</code> once; the browser keeps it in a
cookie for this head only.</p>
</body></html>
`;
