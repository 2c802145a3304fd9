// trialmesh console, coordinator page: plain JavaScript, no build step. Charts are Chart.js
// (Debian's libjs-chart.js, served at /vendor/chart.js). Every result is the JSON
// `trialmesh query --json` prints (docs/json-output.md); the API is described in docs/console.md.
'use strict';

const $ = (id) => document.getElementById(id);
const charts = {};  // canvas id -> Chart, so a new result replaces the old chart
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b'];

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function fillTable(table, header, rows) {
  table.replaceChildren();
  const head = el('tr');
  header.forEach((h) => head.appendChild(el('th', h)));
  table.appendChild(el('thead')).appendChild(head);
  const body = table.appendChild(el('tbody'));
  rows.forEach((r) => {
    const tr = body.appendChild(el('tr'));
    r.forEach((v) => tr.appendChild(v instanceof Node ? v : el('td', v)));
  });
}

function cell(value, withheld) {
  if (withheld) return el('td', 'suppressed', 'withheld');
  if (value === null || value === undefined) return el('td', 'NA');
  if (typeof value === 'number') return el('td', Number.isInteger(value) ? value : value.toPrecision(6));
  return el('td', value, 'text');
}

function showError(message) {
  $('error').hidden = false;
  $('error').textContent = message;
  // A syntax error is "query:LINE:COL: ..." (query/query.h): select the token it points at.
  const m = /^query:(\d+):(\d+):/.exec(message);
  if (!m) return;
  const lines = $('query').value.split('\n');
  let offset = 0;
  for (let i = 0; i < Number(m[1]) - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  offset += Number(m[2]) - 1;
  const rest = $('query').value.slice(offset);
  const token = /^(\w+|"[^"]*"|\S)/.exec(rest);
  $('query').focus();
  $('query').setSelectionRange(offset, offset + (token ? token[0].length : 0));
}

function hideAll() {
  ['error', 'sites-area', 'km-area', 'hist-area', 'forest-area', 'table-area'].forEach((id) => ($(id).hidden = true));
  $('download-png').hidden = true;
}

async function loadInfo() {
  const r = await fetch('/api/info');
  const info = await r.json();
  $('whoami').textContent = (info.coordinator ? `coordinator ${info.coordinator}` : 'no coordinator key') +
    ` · federation ${info.federation}`;
  $('run').disabled = !info.coordinator;
  const select = $('study');
  select.replaceChildren();
  info.studies.forEach((s) => {
    const o = el('option', s);
    o.value = s;
    o.selected = s === info.default_study;
    select.appendChild(o);
  });
  const down = info.sites.filter((s) => !s.reachable);
  $('status').textContent = `${info.sites.length - down.length} of ${info.sites.length} sites reachable` +
    down.map((s) => `; ${s.site}: ${s.reason}`).join('');
}

async function runQuery() {
  hideAll();
  $('status').textContent = 'running…';
  $('run').disabled = true;
  document.body.dataset.state = 'running';
  try {
    const r = await fetch('/api/query', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ study: $('study').value, query: $('query').value }),
    });
    const body = await r.json();
    if (!r.ok) {
      $('status').textContent = '';
      showError(body.error || `HTTP ${r.status}`);
      document.body.dataset.state = 'error';
      return;
    }
    window.tmResult = body;  // for the browser tests and the curious
    render(body, r.headers.get('X-Trialmesh-Result'));
    document.body.dataset.state = 'done';
  } catch (e) {
    showError(String(e));
    document.body.dataset.state = 'error';
  } finally {
    $('run').disabled = false;
  }
}

function render(res, id) {
  $('download-csv').href = `/api/results/${id}.csv`;
  $('download-json').href = `/api/results/${id}.json`;
  if (res.model) return renderModel(res);
  if (res.statistic === 'quantile') return renderQuantile(res);
  renderSites(res);
  const t = res.result;
  if (!t) {
    $('status').textContent = res.refusal ? `no result: ${res.refusal}` : 'no site answered; no result';
    return;
  }
  $('status').textContent = res.query;
  $('table-area').hidden = false;
  fillTable($('result'), t.columns,
    t.rows.map((row) => t.columns.map((c) => cell(row[c], row.suppressed.includes(c)))));
  $('notes').replaceChildren(...t.notes.map((n) => el('li', n)));
  if (t.kind === 'survival') renderKm(t);
  if (t.kind === 'histogram') renderHistogram(t);
}

// One bar per bin and group (`by`); a suppressed count is a gap, not a zero.
function renderHistogram(t) {
  $('hist-area').hidden = false;
  const bins = [...new Set(t.rows.map((r) => r.bin))];
  const groups = new Map();
  t.rows.forEach((r) => {
    const name = curveName(t, r);
    if (!groups.has(name)) groups.set(name, new Map());
    groups.get(name).set(r.bin, r.suppressed.includes('count') ? null : r.count);
  });
  replaceChart('hist-chart', {
    type: 'bar',
    data: {
      labels: bins,
      datasets: [...groups.entries()].map(([name, counts], i) => ({ label: name, tmGroup: name,
        data: bins.map((b) => (counts.has(b) ? counts.get(b) : null)), backgroundColor: COLORS[i % COLORS.length] })),
    },
    options: { animation: false, maintainAspectRatio: false,
      scales: { y: { beginAtZero: true, title: { display: true, text: 'count' } } } },
  });
}

function renderSites(res) {
  $('sites-area').hidden = false;
  const answered = res.sites.filter((s) => s.outcome === 'answered').length;
  $('aggregation').textContent = `${answered} of ${res.sites.length} sites answered` +
    (res.partial ? ' (PARTIAL RESULT)' : '') + ` · aggregation ${res.aggregation}` +
    (res.approval ? ` under approval ${res.approval}` : '') +
    (res.dropped.length ? ` · dropped: ${res.dropped.join(', ')}` : '');
  fillTable($('sites'), ['site', 'outcome', 'reason', 'rows scanned', 'ms'], res.sites.map((s) => {
    const ok = s.outcome === 'answered';
    return [el('td', s.site, 'text'), el('td', s.outcome, 'text outcome'), el('td', s.reason, 'text'),
      el('td', ok && res.aggregation === 'plain' ? s.rows_scanned : ''), el('td', s.elapsed_ms.toFixed(1))];
  }));
  $('sites').querySelectorAll('tbody tr').forEach((tr, i) =>
    tr.classList.add(res.sites[i].outcome === 'answered' ? 'answered' : 'failed'));
}

function modelSites(sites) {
  if (!sites) return;
  $('sites-area').hidden = false;
  $('aggregation').textContent = `${sites.contributed.length} sites contributed · aggregation ${sites.mode}` +
    (sites.approval ? ` under approval ${sites.approval}` : '') + ` · ${sites.fits} fit(s)`;
  const rows = sites.contributed.map((s) => [el('td', s, 'text'), el('td', 'answered', 'text outcome'),
    el('td', '', 'text'), el('td', ''), el('td', '')]);
  sites.left_out.forEach((s) => rows.push([el('td', s.site, 'text'), el('td', s.outcome, 'text outcome'),
    el('td', s.reason, 'text'), el('td', ''), el('td', '')]));
  fillTable($('sites'), ['site', 'outcome', 'reason', 'rows scanned', 'ms'], rows);
  $('sites').querySelectorAll('tbody tr').forEach((tr, i) =>
    tr.classList.add(i < sites.contributed.length ? 'answered' : 'failed'));
}

// The curve a row belongs to, named as the JSON's `curves` ("arm=PBO", "all": query/format.cc).
function curveName(t, row) {
  return t.by.length ? t.by.map((v) => `${v}=${row[v]}`).join(', ') : 'all';
}

// Number at risk at time x: the risk set of the first row at or after x (0 past the end).
function atRisk(rows, x) {
  const r = rows.find((row) => row.time >= x);
  return r ? r.n_risk : 0;
}

function niceStep(max) {
  const raw = max / 6;
  const p = Math.pow(10, Math.floor(Math.log10(raw)));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw);
}

function replaceChart(id, config) {
  if (charts[id]) charts[id].destroy();
  charts[id] = new Chart($(id), config);
  $('download-png').hidden = false;
  $('download-png').onclick = (e) => {
    e.target.href = charts[id].toBase64Image('image/png');
    e.target.download = `${id}.png`;
  };
  return charts[id];
}

function renderKm(t) {
  $('km-area').hidden = false;
  const groups = new Map();
  t.curves.forEach((c) => groups.set(c.group, []));
  t.rows.forEach((row) => {
    const name = curveName(t, row);
    if (!groups.has(name)) groups.set(name, []);
    if (row.survival !== null) groups.get(name).push(row);
  });
  const datasets = [];
  let maxTime = 0;
  [...groups.entries()].forEach(([name, rows], i) => {
    const color = COLORS[i % COLORS.length];
    const start = (key) => [{ x: 0, y: 1 }].concat(rows.map((r) => ({ x: r.time, y: r[key] })));
    rows.forEach((r) => (maxTime = Math.max(maxTime, r.time)));
    // The band: lower then upper, filled between them ('-1'); drawn under the curve.
    datasets.push({ label: `${name} lower 95%`, tmGroup: name, tmRole: 'lower', data: start('lower_95'),
      stepped: true, borderWidth: 0, pointRadius: 0, fill: false, backgroundColor: color + '22' });
    datasets.push({ label: `${name} upper 95%`, tmGroup: name, tmRole: 'upper', data: start('upper_95'),
      stepped: true, borderWidth: 0, pointRadius: 0, fill: '-1', backgroundColor: color + '33' });
    datasets.push({ label: name, tmGroup: name, tmRole: 'survival', data: start('survival'),
      stepped: true, borderColor: color, backgroundColor: color, borderWidth: 2, pointRadius: 0, fill: false });
  });
  const step = niceStep(maxTime || 1);
  replaceChart('km-chart', {
    type: 'line',
    data: { datasets },
    options: {
      animation: false, maintainAspectRatio: false, parsing: true, spanGaps: false,
      scales: {
        x: { type: 'linear', min: 0, max: Math.ceil(maxTime / step) * step, ticks: { stepSize: step },
          title: { display: true, text: 'time' } },
        y: { min: 0, max: 1, title: { display: true, text: 'survival probability' } },
      },
      plugins: { legend: { labels: { filter: (item, data) => data.datasets[item.datasetIndex].tmRole === 'survival' } } },
    },
  });
  const ticks = [];
  for (let x = 0; x <= maxTime; x += step) ticks.push(x);
  fillTable($('km-risk'), ['group'].concat(ticks.map(String)),
    [...groups.entries()].map(([name, rows]) => [el('td', name, 'text')].concat(ticks.map((x) => el('td', atRisk(rows, x))))));
  fillTable($('km-curves'), ['curve', 'n', 'events', 'median', '95% CI'], t.curves.map((c) =>
    [el('td', c.group, 'text'), cell(c.n, c.suppressed), cell(c.events, c.suppressed), cell(c.median, c.suppressed),
      el('td', c.median_lower === null ? 'NA' : `${c.median_lower}–${c.median_upper === null ? 'NA' : c.median_upper}`)]));
}

// Cox: hazard ratios with their confidence limits; logistic glm: odds ratios (Wald limits);
// lm and other glm: coefficients ± 1.96 SE. The intercept is left out.
function forestRows(res) {
  const z = 1.959963984540054;
  return res.coefficients.filter((c) => c.name !== '(Intercept)').map((c) => {
    if (res.model === 'coxph') return { name: c.name, est: c.hazard_ratio, lo: c.lower, hi: c.upper };
    const lo = c.estimate - z * c.std_error;
    const hi = c.estimate + z * c.std_error;
    if (res.model === 'glm' && /binomial/.test(res.call)) return { name: c.name, est: Math.exp(c.estimate), lo: Math.exp(lo), hi: Math.exp(hi) };
    return { name: c.name, est: c.estimate, lo, hi };
  });
}

function pad(x, ratio, sign) {
  return ratio ? x * Math.pow(1.15, sign) : x + sign * 0.1 * Math.max(Math.abs(x), 1e-9);
}

function renderModel(res) {
  modelSites(res.sites);
  $('status').textContent = `${res.call} · n = ${res.n}` + (res.events !== undefined ? ` · events = ${res.events}` : '');
  $('table-area').hidden = false;
  // modelJson sorts keys alphabetically; the term's name reads best first.
  const keys = Object.keys(res.coefficients[0] || {});
  const cols = ['name'].concat(keys.filter((k) => k !== 'name'));
  fillTable($('result'), cols, res.coefficients.map((c) => cols.map((k) => cell(c[k], false))));
  $('notes').replaceChildren(...(res.warnings || []).map((w) => el('li', w)));
  const rows = forestRows(res);
  if (!rows.length) return;
  const ratio = res.model === 'coxph' || (res.model === 'glm' && /binomial/.test(res.call));
  const label = res.model === 'coxph' ? 'hazard ratio' : ratio ? 'odds ratio' : 'coefficient';
  $('forest-area').hidden = false;
  $('forest-title').textContent = `Forest plot: ${label} with 95% confidence interval`;
  const ref = ratio ? 1 : 0;
  const datasets = rows.map((r, i) => ({ label: r.name, tmRole: 'interval', data: [{ x: r.lo, y: i }, { x: r.hi, y: i }],
    showLine: true, borderColor: '#1f3b5c', borderWidth: 2, pointRadius: 0 }));
  datasets.push({ label, tmRole: 'estimate', data: rows.map((r, i) => ({ x: r.est, y: i })),
    pointStyle: 'rect', pointRadius: 6, backgroundColor: '#d62728', borderColor: '#d62728' });
  datasets.push({ label: 'no effect', tmRole: 'reference', data: [{ x: ref, y: -0.5 }, { x: ref, y: rows.length - 0.5 }],
    showLine: true, borderDash: [4, 4], borderColor: '#888', pointRadius: 0 });
  replaceChart('forest-chart', {
    type: 'scatter',
    data: { datasets },
    options: {
      animation: false, maintainAspectRatio: false,
      scales: {
        // Limits around the intervals and the reference line, with a little room either side.
        x: { type: ratio ? 'logarithmic' : 'linear', title: { display: true, text: label },
          min: pad(Math.min(ref, ...rows.map((r) => r.lo)), ratio, -1),
          max: pad(Math.max(ref, ...rows.map((r) => r.hi)), ratio, 1),
          // Chart.js labels only powers of ten on a log axis; a forest plot spans less.
          ticks: { callback: (v) => Number(v.toPrecision(2)).toString() } },
        y: { min: -0.5, max: rows.length - 0.5, reverse: true, afterBuildTicks: (axis) => (axis.ticks = rows.map((r, i) => ({ value: i }))),
          ticks: { callback: (v) => (rows[v] ? rows[v].name : '') } },
      },
      plugins: { legend: { display: false },
        tooltip: { callbacks: { label: (ctx) => { const r = rows[ctx.parsed.y]; return r ? `${r.name}: ${r.est.toPrecision(4)} (${r.lo.toPrecision(4)}–${r.hi.toPrecision(4)})` : ''; } } } },
    },
  });
}

function renderQuantile(res) {
  if (res.sites) modelSites(res.sites);
  $('status').textContent = `${res.call} · n = ${res.n}`;
  $('table-area').hidden = false;
  fillTable($('result'), ['p', 'name', 'quantile'], res.rows.map((r) => [cell(r.p), cell(r.name), cell(r.quantile)]));
  $('notes').replaceChildren();
}

document.addEventListener('DOMContentLoaded', () => {
  $('run').addEventListener('click', runQuery);
  $('query').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) runQuery();
  });
  document.querySelectorAll('button.example').forEach((b) =>
    b.addEventListener('click', () => { $('query').value = b.dataset.query; runQuery(); }));
  loadInfo().catch((e) => showError(`cannot load the federation: ${e}`));
});
