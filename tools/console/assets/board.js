// trialmesh console, ethics board page: GET /api/board (docs/console.md), shown as three
// tables. Plain JavaScript, no build step.
'use strict';

const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function fillTable(table, header, rows) {
  table.replaceChildren();
  const head = el('tr');
  header.forEach((h) => head.appendChild(el('th', h, 'text')));
  table.appendChild(el('thead')).appendChild(head);
  const body = table.appendChild(el('tbody'));
  rows.forEach((r) => {
    const tr = body.appendChild(el('tr'));
    r.forEach((v) => tr.appendChild(v instanceof Node ? v : el('td', v, 'text')));
  });
}

function renderLogs(board) {
  $('logs-area').hidden = false;
  fillTable($('logs'), ['site', 'audit log', 'entries', 'signed at', 'reason'], board.sites.map((s) => {
    const verdict = el('td', s.verified ? 'verified' : s.reachable ? 'NOT VERIFIED' : 'unreachable',
      'text ' + (s.verified ? 'verified' : 'failed'));
    verdict.dataset.site = s.site;
    return [el('td', s.site, 'text'), verdict, el('td', s.tree_size ?? ''), el('td', s.head_time ?? '', 'text'),
      el('td', s.reason, 'text')];
  }));
}

function renderApprovals(board) {
  // One row per approval, one column per site: its state there.
  const labels = new Map();
  board.sites.forEach((s) => (s.approvals || []).forEach((a) => {
    if (!labels.has(a.approval)) labels.set(a.approval, { a, states: {} });
    labels.get(a.approval).states[s.site] = a.state;
  }));
  $('approvals-area').hidden = false;
  const sites = board.sites.map((s) => s.site);
  fillTable($('approvals'), ['approval', 'committee', 'valid', 'aggregation'].concat(sites),
    [...labels.values()].map(({ a, states }) => [a.approval, a.committee, `${a.valid_from} – ${a.valid_until}`,
      a.aggregation].concat(sites.map((site) => {
      const state = states[site] || 'not held';
      const td = el('td', state, 'text state-' + state.replace(/ /g, '-'));
      td.dataset.site = site;
      td.dataset.approval = a.approval;
      return td;
    }))));
}

function renderTimeline(board) {
  $('timeline-area').hidden = false;
  const select = $('timeline-site');
  select.replaceChildren(...board.sites.filter((s) => s.verified).map((s) => {
    const o = el('option', s.site);
    o.value = s.site;
    return o;
  }));
  const show = () => {
    const site = board.sites.find((s) => s.site === select.value);
    const entries = site ? site.timeline.slice().reverse() : [];
    fillTable($('timeline'), ['#', 'time', 'event', 'study', 'coordinator', 'query', 'approval', 'decision', 'detail'],
      entries.map((e) => [e.sequence, e.time, e.kind, e.study, e.coordinator, e.query, e.approval, e.decision, e.detail]));
  };
  select.onchange = show;
  // Long texts (a model's round queries) are cut in the cell; the whole text is its tooltip.
  $('timeline').addEventListener('mouseover', (e) => {
    if (e.target.tagName === 'TD') e.target.title = e.target.textContent;
  });
  show();
}

async function load() {
  const r = await fetch('/api/board');
  const body = await r.json();
  if (!r.ok) {
    $('status').textContent = '';
    $('error').hidden = false;
    $('error').textContent = body.error;
    document.body.dataset.state = 'error';
    return;
  }
  window.tmBoard = body;
  $('whoami').textContent = `board member ${body.board} · federation ${body.federation}`;
  const ok = body.sites.filter((s) => s.verified).length;
  $('status').textContent = `${ok} of ${body.sites.length} sites' audit logs verified`;
  renderLogs(body);
  renderApprovals(body);
  renderTimeline(body);
  document.body.dataset.state = 'done';
}

document.addEventListener('DOMContentLoaded', () => load().catch((e) => {
  $('error').hidden = false;
  $('error').textContent = String(e);
  document.body.dataset.state = 'error';
}));
