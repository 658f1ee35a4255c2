// One stream's page: the live player (hls.js in low-latency mode, through
// the collector's HLS proxy) with its viewer latency measured here
// (viewer.js), the live figures, history charts (uPlot), the latency
// breakdown, a histogram of the last minute and the device's events.

import Hls from './hls.mjs';
import uPlot from './uplot.mjs';
import { band, fmt, clock, getJSON, whoami, el, setBands } from './common.js';
import { CollectorClock, ViewerMeter, quantile } from './viewer.js';

const [, , device, stream] = location.pathname.split('/');
const api = `/api/v1/streams/${device}/${stream}`;
document.getElementById('title').textContent = `${device} / ${stream}`;
document.title = `${device}/${stream} · Glasswatch`;

const video = document.getElementById('video');
const rec = document.getElementById('rec');
const rectime = document.getElementById('rectime');
const support = document.getElementById('support');
const state = {
  latest: null, viewer: null, mse: null, rvfc: null, stamps: 0, frames: 0,
  lastLatency: null, reports: null, hlsErrors: [], mode: null, jumps: 0,
  stalls: [], playingSince: null,
};
window.__glasswatchViewer = state;
const viewerBySecond = new Map();

// The live-edge policy, chosen from measurements in headless Chromium
// against the LL-HLS origin (docs/api.md, "Stream page"): hls.js's own
// catch-up only acts with more than 1 s buffered, and its defaults raise
// the target after every stall, so the viewer drifted to > 1 s and stayed
// there. Here hls.js only loads (its rate control off, its target never
// raised after a stall), and keepLive() holds the media buffered ahead of
// the playhead (the player's own share of the latency) near a target: a
// little faster (at most 1.1×, faster rates starved the buffer and
// stalled) when above it, a little slower when nearly empty, and a jump
// back when more than JUMP_BUFFER_S behind.
//
// The target starts at TARGET_BUFFER_S and follows how late parts arrive
// (a jitter buffer): Chromium stopped to wait with 30-130 ms (one to four
// frames) still buffered ahead, and every stall seen came after parts
// arrived 100-210 ms apart instead of 67 (measured with hls.js's log kept
// in the page, on a busy machine). So each ADAPT_EVERY_MS the lowest point
// the buffer reached is compared with LOW_WATER_S: below it, the target
// rises by the depth of the dip (at most MAX_EXTRA_S above the start);
// clear of it by 50 ms, the target falls back 10 ms.
const TARGET_BUFFER_S = 0.2;
const JUMP_BUFFER_S = 1.5;
const LOW_WATER_S = 0.15;
const MAX_EXTRA_S = 0.3;
const ADAPT_EVERY_MS = 5000;
const LIVE_EDGE = {
  lowLatencyMode: true,
  enableWorker: false,
  maxLiveSyncPlaybackRate: 1,
  liveSyncOnStallIncrease: 0,
  maxBufferLength: 4,
  maxMaxBufferLength: 8,
  // hls.js's default, on purpose: a finite back buffer makes hls.js flush
  // it about once a segment, and after each flush (hls.js 1.7,
  // FragmentTracker.detectEvictedFragments without an appended part) it
  // forgets the segment it is loading part by part, so at that segment's
  // end it finds no next part to load and playback ran dry (1-2 stalls in
  // 5 min on an idle machine, 13 in 150 s on a busy one; none since). The
  // browser evicts old media itself when its SourceBuffer quota fills.
  backBufferLength: Infinity,
  liveDurationInfinity: true,
};
// Media arrives a part at a time in LL-HLS, a segment at a time in classic
// HLS: the buffer's floor and the speed-up threshold follow that step.
// base: the floor for the mode; extra: what late parts added (adaptTarget).
const edge = { base: TARGET_BUFFER_S, step: 0, extra: 0 };
const target = () => edge.base + edge.extra;
const adapt = { lowest: Infinity, since: performance.now() };

function adaptTarget(ahead) {
  adapt.lowest = Math.min(adapt.lowest, ahead);
  const now = performance.now();
  if (now - adapt.since < ADAPT_EVERY_MS) return;
  if (adapt.lowest < LOW_WATER_S) {
    edge.extra = Math.min(MAX_EXTRA_S, edge.extra + (LOW_WATER_S - adapt.lowest));
  } else if (adapt.lowest > LOW_WATER_S + 0.05) {
    edge.extra = Math.max(0, edge.extra - 0.01);
  }
  adapt.lowest = Infinity;
  adapt.since = now;
}

function bufferAhead() {
  const b = video.buffered;
  for (let i = 0; i < b.length; i++) {
    if (b.start(i) <= video.currentTime + 0.05 && video.currentTime <= b.end(i)) {
      return { ahead: b.end(i) - video.currentTime, end: b.end(i) };
    }
  }
  return null;
}

// The first start, once: hls.js begins at the playlist's live edge, which
// often lies just before the first independent part it loads; playing from
// there waited for data at once. So the page seeks into what is buffered,
// the target's distance from its end, and plays once enough is there.
let started = false;
function startWhenBuffered() {
  const b = video.buffered;
  if (!b.length || video.seeking) return;
  const start = b.start(b.length - 1);
  const end = b.end(b.length - 1);
  if (end - start < target()) return;
  const at = Math.max(start, end - target());
  if (Math.abs(video.currentTime - at) > 0.05) {
    video.currentTime = at;
    return;
  }
  started = true;
  video.play().catch(() => { started = false; });
}

function keepLive() {
  if (!started) {
    startWhenBuffered();
    return;
  }
  if (video.paused) return;
  const b = bufferAhead();
  // A stall (or a playhead outside what is buffered) counts as empty.
  adaptTarget(b && video.readyState >= 3 ? b.ahead : 0);
  if (!b || video.readyState < 3) return;
  const t = target();
  let rate = 1;
  if (b.ahead > t + edge.step + JUMP_BUFFER_S) {
    video.currentTime = b.end - t;
    state.jumps += 1;
  } else if (b.ahead > t + edge.step + 0.15) {
    rate = 1.1;
  } else if (b.ahead > t + edge.step + 0.04) {
    rate = 1.03;
  } else if (b.ahead < t / 2) {
    rate = 0.97;
  }
  if (video.playbackRate !== rate) video.playbackRate = rate;
}

function figure(label, value, cls = '') {
  const d = el('div', 'figure');
  const b = el('b', cls, value);
  d.append(b, el('span', null, label));
  return d;
}

function renderFigures() {
  const l = state.latest?.last;
  const s = state.latest?.stats;
  const v = state.viewer;
  const items = [
    figure('glass-to-HLS p50 ms', fmt(l?.p50_ms), band(l?.p50_ms)),
    figure('glass-to-HLS p95 ms', fmt(l?.p95_ms), band(l?.p95_ms)),
    figure('viewer p50 ms (here)', fmt(v?.p50_ms), band(v?.p50_ms)),
    figure('viewer p95 ms (here)', fmt(v?.p95_ms), band(v?.p95_ms)),
    figure('fps received / sent', `${fmt(l?.receiver_fps, 1)} / ${fmt(l?.publisher_fps, 1)}`),
    figure('dropped (1 s)', fmt(l?.dropped)),
    figure('player buffer ms', fmt(v?.buffer_ms)),
    figure('stalls (1 s)', fmt(v?.stalls)),
    figure('device clock ms', l?.clock?.synced ? `${fmt(l.clock.offset_ms, 1)} ± ${fmt(l.clock.uncertainty_ms, 1)}` : 'not synced'),
    figure('browser clock ms', meterClock.offsetMs === null ? '–' : `${fmt(meterClock.offsetMs, 1)} ± ${fmt(meterClock.rttMs / 2, 1)}`),
    figure('encoder', state.latest?.encoder ? `${state.latest.encoder}${state.latest.hardware ? ' (HW)' : ''}` : '–'),
    figure('CPU % / °C', `${fmt(s?.cpu_percent)} / ${fmt(s?.temperature_c, 1)}`),
  ];
  document.getElementById('figures').replaceChildren(...items);
  // Breakdown: encode, publish, origin + delivery (collector), player (here).
  const bd = l?.breakdown || {};
  const player = v?.p50_ms != null && l?.p50_ms != null ? Math.max(0, v.p50_ms - l.p50_ms) : null;
  const parts = [
    ['encode', 'encode', bd.encode_ms], ['publish', 'publish', bd.publish_ms],
    ['origin', 'origin + delivery', bd.origin_delivery_ms], ['player', 'player', player],
  ].filter(([, , ms]) => ms != null && ms > 0);
  const total = parts.reduce((a, [, , ms]) => a + ms, 0);
  const bar = document.getElementById('breakdown');
  bar.replaceChildren(...parts.map(([cls, label, ms]) => {
    const d = el('div', cls, `${label} ${fmt(ms)} ms`);
    d.style.width = `${(100 * ms) / total}%`;
    d.title = `${label}: ${fmt(ms, 1)} ms`;
    return d;
  }));
}

const meterClock = new CollectorClock();

async function pollLatest() {
  try {
    state.latest = await getJSON(api, 5000);
    setBands(state.latest.bands_ms);
  } catch (e) {
    state.latest = null;
  }
  renderFigures();
}

function startPlayer(me) {
  state.mse = typeof MediaSource !== 'undefined'
    && MediaSource.isTypeSupported('video/mp4; codecs="avc1.42c01f"');
  state.rvfc = 'requestVideoFrameCallback' in HTMLVideoElement.prototype;
  const notes = [];
  if (!state.mse) notes.push('This browser cannot decode H.264 in Media Source Extensions: stamps are read, frames are not shown.');
  if (!state.rvfc) notes.push('This browser lacks requestVideoFrameCallback: shown times come from timeupdate, with a wider uncertainty (±250 ms).');
  support.textContent = notes.join(' ');
  if (!Hls.isSupported()) {
    support.textContent += ' hls.js is not supported here.';
    return;
  }
  const meter = new ViewerMeter(video, {
    device, stream, csrf: me.csrf, clock: meterClock,
    deviceClock: () => {
      const c = state.latest?.last?.clock;
      return c && c.synced ? { offsetMs: c.offset_ms, uncertaintyMs: c.uncertainty_ms } : null;
    },
    onFrame: (f) => {
      state.frames += 1;
      state.lastLatency = f.latency;
      rec.hidden = false;
      rectime.textContent = clock(f.shownMs * 1000);
    },
    onSecond: (s) => {
      state.viewer = s;
      state.reports = meter.reports;
      viewerBySecond.set(Math.floor(s.window_end_us / 1e6), s.p50_ms);
      if (viewerBySecond.size > 900) viewerBySecond.delete(viewerBySecond.keys().next().value);
    },
  });
  state.meter = meter;
  let hls;
  try {
    hls = new Hls(LIVE_EDGE);
  } catch (e) {
    support.textContent += ` The player did not start: ${e.message}`;
    state.hlsErrors.push(String(e.message));
    return;
  }
  hls.on(Hls.Events.FRAG_PARSING_USERDATA, (_, data) => {
    meter.onUserData(data.samples);
    state.stamps = meter.stamps;
  });
  hls.on(Hls.Events.ERROR, (_, data) => {
    state.hlsErrors.push(`${data.type}: ${data.details}${data.fatal ? ' (fatal)' : ''}`);
    if (state.hlsErrors.length > 20) state.hlsErrors.shift();
    if (data.fatal) {
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
      else setTimeout(() => { hls.loadSource(src); hls.startLoad(); }, 2000);
    }
  });
  hls.on(Hls.Events.LEVEL_LOADED, (_, data) => {
    const d = data.details;
    state.mode = d.partList?.length ? 'll-hls' : 'hls';
    if (state.mode === 'll-hls') {
      // Parts are small: the floor alone (at least two parts).
      edge.step = 0;
      edge.base = Math.max(TARGET_BUFFER_S, 2 * (d.partTarget || 0.1));
    } else {
      // A whole segment lands at once: keep one segment's worth in hand.
      edge.step = d.targetduration || 2;
      edge.base = edge.step + TARGET_BUFFER_S;
    }
    state.edge = edge;
  });
  const src = `/hls/${device}/${stream}/index.m3u8`;
  hls.loadSource(src);
  hls.attachMedia(video);
  video.muted = true;
  setInterval(keepLive, 100);
  // Stalls, with the seconds of playback they came after (for the notes).
  video.addEventListener('playing', () => { if (state.playingSince === null) state.playingSince = performance.now(); });
  video.addEventListener('waiting', () => {
    if (state.playingSince !== null) state.stalls.push(Math.round((performance.now() - state.playingSince) / 100) / 10);
    if (state.stalls.length > 100) state.stalls.shift();
  });
  state.hls = hls;
}

// ---- history charts

const RANGES = [['5 min', 300], ['1 h', 3600], ['24 h', 86400], ['7 d', 604800]];
let range = 300;
let charts = [];

function chartWidth() {
  return Math.max(280, document.getElementById('chart-latency').clientWidth - 2);
}

async function loadCharts() {
  const to = Date.now() * 1000;
  const from = to - range * 1e6;
  let series;
  try {
    series = await getJSON(`${api}/series?from=${Math.round(from)}&to=${Math.round(to)}`);
  } catch (e) {
    document.getElementById('chart-latency').textContent = `No history (${e.message}).`;
    return;
  }
  const pts = series.points;
  const x = pts.map((p) => p.t_us / 1e6);
  // Viewer p50 of every viewer, from storage, on the same points (by the
  // point's start); this page's own seconds where storage has none yet.
  const step = { seconds: 1e6, minutes: 60e6, hours: 3600e6 }[series.resolution] || 1e6;
  const stored = new Map();
  try {
    const v = await getJSON(`${api}/viewer/series?from=${Math.round(from)}&to=${Math.round(to)}`);
    for (const p of v.points) stored.set(Math.floor(p.t_us / step), p.p50_ms);
  } catch (e) {
    // Storage off: this page's figures alone.
  }
  const viewer = pts.map((p) => stored.get(Math.floor(p.t_us / step))
    ?? (step === 1e6 ? viewerBySecond.get(Math.floor(p.t_us / 1e6)) : null) ?? null);
  const w = chartWidth();
  for (const c of charts) c.destroy();
  charts = [
    new uPlot({
      title: 'Latency (ms)', width: w, height: 200,
      series: [{}, { label: 'p50', stroke: '#1a7f37' }, { label: 'p95', stroke: '#b08800' },
        { label: 'p99', stroke: '#cf222e' }, { label: 'viewer p50', stroke: '#8250df', dash: [4, 3] }],
    }, [x, pts.map((p) => p.p50_ms), pts.map((p) => p.p95_ms), pts.map((p) => p.p99_ms), viewer],
    document.getElementById('chart-latency')),
    new uPlot({
      title: 'Frames per second', width: w, height: 160,
      series: [{}, { label: 'received', stroke: '#0969da' }, { label: 'sent', stroke: '#8c959f' }],
    }, [x, pts.map((p) => p.receiver_fps), pts.map((p) => p.publisher_fps)],
    document.getElementById('chart-fps')),
  ];
  const host = document.getElementById('chart-latency');
  if (host.firstChild && host.firstChild.nodeType === Node.TEXT_NODE) host.firstChild.remove();
}

function rangeButtons() {
  const box = document.getElementById('ranges');
  for (const [label, s] of RANGES) {
    const b = el('button', null, label);
    b.setAttribute('aria-pressed', String(s === range));
    b.addEventListener('click', () => {
      range = s;
      for (const o of box.children) o.setAttribute('aria-pressed', String(o === b));
      loadCharts();
    });
    box.append(b);
  }
}

// ---- histogram of the last minute (glass-to-HLS from storage, viewer here)

async function histogram() {
  const to = Date.now() * 1000;
  let g2h = [];
  try {
    const f = await getJSON(`${api}/frames?from=${Math.round(to - 60e6)}&to=${Math.round(to)}&limit=5000`);
    g2h = f.frames.map((x) => x.glass_to_hls_ms);
  } catch (e) {
    // Storage off or frames not kept: the viewer's side alone.
  }
  const viewer = state.meter ? state.meter.last.slice(-1800) : [];
  const all = g2h.concat(viewer).filter(Number.isFinite).sort((a, b) => a - b);
  const host = document.getElementById('histogram');
  if (all.length === 0) { host.textContent = 'No frames in the last minute.'; return; }
  const hi = quantile(all, 0.99) * 1.1 || 1;
  const bins = 40;
  const count = (vals) => {
    const c = new Array(bins).fill(0);
    for (const v of vals) c[Math.min(bins - 1, Math.max(0, Math.floor((v / hi) * bins)))] += 1;
    return c;
  };
  const a = count(g2h);
  const b = count(viewer);
  const canvas = document.createElement('canvas');
  const w = chartWidth();
  canvas.width = w * devicePixelRatio;
  canvas.height = 140 * devicePixelRatio;
  canvas.style.width = `${w}px`;
  canvas.style.height = '140px';
  const ctx = canvas.getContext('2d');
  ctx.scale(devicePixelRatio, devicePixelRatio);
  const max = Math.max(1, ...a, ...b);
  const bw = (w - 40) / bins;
  ctx.font = '11px system-ui';
  ctx.fillStyle = '#59636e';
  ctx.fillText(`0 … ${fmt(hi)} ms · blue: glass-to-HLS (${g2h.length}) · red: viewer here (${viewer.length})`, 4, 12);
  a.forEach((n, i) => { ctx.fillStyle = 'rgba(9,105,218,.6)'; ctx.fillRect(20 + i * bw, 138 - (n / max) * 118, bw - 1, (n / max) * 118); });
  b.forEach((n, i) => { ctx.fillStyle = 'rgba(207,34,46,.6)'; ctx.fillRect(20 + i * bw, 138 - (n / max) * 118, bw - 1, (n / max) * 118); });
  host.replaceChildren(canvas);
}

async function events() {
  const list = document.getElementById('events');
  try {
    const e = await getJSON(`/api/v1/devices/${device}/events?limit=50`);
    list.replaceChildren(...e.events.map((ev) => el('li', null,
      `${new Date(ev.at_us / 1000).toISOString().replace('T', ' ').slice(0, 19)} UTC · ${ev.kind}${ev.detail ? ` (${ev.detail})` : ''}`)));
    if (e.events.length === 0) list.replaceChildren(el('li', null, 'No events stored.'));
  } catch (err) {
    list.replaceChildren(el('li', null, `No events (${err.message}).`));
  }
}

async function main() {
  rangeButtons();
  const me = await whoami();
  await meterClock.measure(8);
  setInterval(() => meterClock.measure(4), 30000);
  startPlayer(me);
  pollLatest();
  setInterval(pollLatest, 1000);
  loadCharts();
  setInterval(() => { if (range === 300) loadCharts(); }, 10000);
  histogram();
  setInterval(histogram, 5000);
  events();
  setInterval(events, 30000);
}

main();
