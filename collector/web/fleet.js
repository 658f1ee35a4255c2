// The fleet page: one row per stream, kept current by the collector's
// server-sent events (/api/v1/fleet/live: a snapshot, then per-second
// deltas carrying only the cells that changed). Rows are built once and
// then only their changed cells are touched, so 1,000 streams stay cheap.

import { band, fmt, ago, setBands, whoami, el } from './common.js';

const HISTORY = 60;
/** Band colours, as in app.css. */
const COLOURS = { good: '#1a7f37', fair: '#b08800', slow: '#d4600f', poor: '#cf222e', none: '#8c959f' };
const headers = [
  ['id', 'Stream'], ['online', 'State'], ['p50_ms', 'G2H p50'], ['p95_ms', 'G2H p95'],
  ['viewer_p50_ms', 'Viewer p50'], ['receiver_fps', 'fps'], ['dropped', 'Dropped'],
  ['encoder', 'Encoder'], ['clock_offset_ms', 'Clock'], ['cpu_percent', 'CPU %'],
  ['temperature_c', '°C'], ['spark', 'Last minute'],
];

const perf = { firstRenderMs: null, snapshotMs: null, updates: [], painted: [], rows: 0 };
window.__glasswatchPerf = perf;

let columns = [];
let col = {};
const rows = new Map();
let order = [];
let sortKey = 'id';
let sortDir = 1;
let nowUs = Date.now() * 1000;
const tbody = document.querySelector('#fleet tbody');
const filterInput = document.getElementById('filter');
const stateSelect = document.getElementById('state');

function value(r, key) {
  return key === 'id' ? r.id : r.v[col[key]];
}

// Only rows on (or near) the screen are painted; the others are marked
// dirty and painted when they scroll into view, so an update costs the
// same with 1,000 streams as with 30.
const onScreen = new Set();
const observer = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const r = e.target.row;
    if (e.isIntersecting) {
      onScreen.add(r);
      if (r.dirty) {
        paint(r);
        sparkline(r);
      }
    } else {
      onScreen.delete(r);
    }
  }
  // The first screenful is painted with the next frame.
  if (perf.firstRenderMs === null && onScreen.size > 0) {
    requestAnimationFrame(() => { if (perf.firstRenderMs === null) perf.firstRenderMs = performance.now(); });
  }
}, { rootMargin: '300px 0px' });

/** Sets a cell's text and class only when they change. */
function set(td, text, cls) {
  if (td.textContent !== text) td.textContent = text;
  if (cls !== undefined && td.className !== cls) td.className = cls;
}

function buildRow(id) {
  const tr = document.createElement('tr');
  const cells = {};
  for (const [key] of headers) {
    const td = document.createElement('td');
    td.dataset.k = key;
    cells[key] = td;
    tr.append(td);
  }
  const a = el('a', null, id);
  a.href = `/streams/${id}`;
  cells.id.append(a);
  const canvas = document.createElement('canvas');
  canvas.width = 120;
  canvas.height = 32;
  cells.spark.append(canvas);
  const r = { id, v: [], hist: [], tr, cells, canvas, dirty: true };
  tr.row = r;
  observer.observe(tr);
  return r;
}

function paint(r) {
  r.dirty = false;
  const g = (k) => r.v[col[k]];
  const c = r.cells;
  const online = g('online');
  set(c.online, `${online ? 'online' : 'offline'} ${ago(g('since_us'), nowUs)}`, online ? 'on' : 'off');
  for (const k of ['p50_ms', 'p95_ms', 'viewer_p50_ms']) set(c[k], fmt(g(k)), `num ${band(g(k))}`);
  const pub = g('publisher_fps');
  set(c.receiver_fps, `${fmt(g('receiver_fps'), 1)}${pub !== null && pub !== undefined ? ` / ${fmt(pub, 1)}` : ''}`, 'num');
  set(c.dropped, fmt(g('dropped')), g('dropped') > 0 ? 'num warn' : 'num');
  const enc = g('encoder');
  set(c.encoder, enc ? `${enc}${g('hardware') ? ' (HW)' : ''}` : '–');
  set(c.clock_offset_ms, g('clock_synced')
    ? `${fmt(g('clock_offset_ms'), 1)} ± ${fmt(g('clock_uncertainty_ms'), 1)}`
    : 'not synced');
  set(c.cpu_percent, fmt(g('cpu_percent')), 'num');
  set(c.temperature_c, fmt(g('temperature_c')), 'num');
}

function sparkline(r) {
  if (!onScreen.has(r)) {
    r.dirty = true;
    return;
  }
  const ctx = r.canvas.getContext('2d');
  const w = r.canvas.width;
  const h = r.canvas.height;
  ctx.clearRect(0, 0, w, h);
  const vals = r.hist;
  let max = 0;
  for (const v of vals) if (v !== null && v > max) max = v;
  if (max <= 0) return;
  max *= 1.1;
  ctx.lineWidth = 2;
  const last = vals[vals.length - 1];
  ctx.strokeStyle = COLOURS[band(last)];
  ctx.beginPath();
  let pen = false;
  vals.forEach((v, i) => {
    const x = (i + HISTORY - vals.length) * (w / (HISTORY - 1));
    if (v === null) { pen = false; return; }
    const y = h - 1 - (v / max) * (h - 2);
    if (pen) ctx.lineTo(x, y); else ctx.moveTo(x, y);
    pen = true;
  });
  ctx.stroke();
}

function visible(r) {
  const f = filterInput.value.trim().toLowerCase();
  const s = stateSelect.value;
  if (f && !r.id.includes(f)) return false;
  const online = r.v[col.online];
  if (s === 'online' && !online) return false;
  if (s === 'offline' && online) return false;
  return true;
}

function compare(a, b) {
  const x = value(a, sortKey);
  const y = value(b, sortKey);
  const xn = x === null || x === undefined;
  const yn = y === null || y === undefined;
  if (xn || yn) return xn === yn ? a.id.localeCompare(b.id) : xn ? 1 : -1;
  if (x < y) return -sortDir;
  if (x > y) return sortDir;
  return a.id.localeCompare(b.id);
}

/** Puts the visible rows in order; touches the DOM only where it changed. */
function arrange() {
  const next = [...rows.values()].filter(visible).sort(compare);
  const same = next.length === order.length && next.every((r, i) => r === order[i]);
  if (!same) {
    const frag = document.createDocumentFragment();
    for (const r of next) frag.append(r.tr);
    tbody.replaceChildren(frag);
    order = next;
  }
  let online = 0;
  for (const r of rows.values()) if (r.v[col.online]) online += 1;
  document.getElementById('count').textContent = `${next.length} of ${rows.size} streams`;
  document.getElementById('summary').textContent = `${online} online, ${rows.size - online} offline`;
}

function header() {
  const tr = document.querySelector('#fleet thead tr');
  tr.replaceChildren();
  for (const [key, label] of headers) {
    const th = el('th', null, label);
    if (key !== 'spark' && key !== 'encoder') {
      th.tabIndex = 0;
      th.classList.add('sortable');
      const go = () => {
        if (sortKey === key) sortDir = -sortDir; else { sortKey = key; sortDir = key === 'id' ? 1 : -1; }
        for (const h of tr.children) h.removeAttribute('aria-sort');
        th.setAttribute('aria-sort', sortDir > 0 ? 'ascending' : 'descending');
        arrange();
      };
      th.addEventListener('click', go);
      th.addEventListener('keydown', (e) => { if (e.key === 'Enter') go(); });
    }
    tr.append(th);
  }
}

function snapshot(data) {
  const t0 = performance.now();
  columns = data.columns;
  col = Object.fromEntries(columns.map((c, i) => [c, i]));
  setBands(data.bands_ms);
  nowUs = data.now_us;
  for (const r of rows.values()) observer.unobserve(r.tr);
  onScreen.clear();
  rows.clear();
  order = [];
  for (const row of data.rows) {
    const r = buildRow(row[0]);
    r.v = row.slice(1);
    r.hist = (data.history[r.id] || []).slice(-HISTORY);
    rows.set(r.id, r);
  }
  // Rows are painted as the observer finds them on screen.
  arrange();
  perf.snapshotMs = performance.now() - t0;
  perf.rows = rows.size;
}

function delta(data) {
  const t0 = performance.now();
  nowUs = data.now_us;
  let reorder = false;
  const sortCol = col[sortKey];
  for (const u of data.u) {
    const id = u[0];
    let r = rows.get(id);
    if (!r) {
      r = buildRow(id);
      r.v = new Array(columns.length).fill(null);
      rows.set(id, r);
      reorder = true;
    }
    let newWindow = false;
    for (let i = 1; i + 1 < u.length; i += 2) {
      r.v[u[i]] = u[i + 1];
      if (u[i] === col.window_end_us) newWindow = true;
      if (u[i] === sortCol || u[i] === col.online) reorder = true;
    }
    if (newWindow) {
      r.hist.push(r.v[col.p50_ms]);
      if (r.hist.length > HISTORY) r.hist.shift();
    }
    if (onScreen.has(r)) {
      paint(r);
      if (newWindow) sparkline(r);
    } else {
      r.dirty = true;
    }
  }
  for (const id of data.gone) {
    const r = rows.get(id);
    if (r) {
      observer.unobserve(r.tr);
      onScreen.delete(r);
    }
    rows.delete(id);
    reorder = true;
  }
  // "since" texts age every second (on screen; the others when they show).
  for (const r of onScreen) {
    set(r.cells.online, `${r.v[col.online] ? 'online' : 'offline'} ${ago(r.v[col.since_us], nowUs)}`);
  }
  if (reorder) arrange();
  perf.updates.push(performance.now() - t0);
  // Script, style, layout and paint: until the next frame is drawn.
  requestAnimationFrame(() => perf.painted.push(performance.now() - t0));
  if (perf.updates.length > 600) perf.updates.shift();
  if (perf.painted.length > 600) perf.painted.shift();
}

function connect() {
  const es = new EventSource('/api/v1/fleet/live');
  es.addEventListener('snapshot', (e) => snapshot(JSON.parse(e.data)));
  es.addEventListener('delta', (e) => delta(JSON.parse(e.data)));
  es.onerror = () => { document.getElementById('summary').textContent = 'reconnecting…'; };
}

header();
filterInput.addEventListener('input', arrange);
stateSelect.addEventListener('change', arrange);
whoami();
connect();
