// Viewer latency measured in this browser (DESIGN.md "Latency figures"):
// each frame's SEI stamp is read as hls.js parses it, and when
// requestVideoFrameCallback says that frame was presented, shown − capture
// is computed on the collector's clock. The browser's offset to the
// collector is measured NTP-style against GET /api/v1/time; the device's
// offset is the collector's own (from the stream's latest summary).

/** Glasswatch's SEI UUID (user data unregistered). */
export const STAMP_UUID = '1aa60c2a-2f66-44ba-8983-79b063c25a95';

/**
 * Parses the 22-byte stamp after the UUID: version, flags, stream tag
 * (u32 BE), seq (u64 BE), capture_us (i64 BE). Null when it is not one.
 */
export function parseStamp(bytes) {
  if (!(bytes instanceof Uint8Array) || bytes.length < 22 || bytes[0] !== 1) return null;
  const v = new DataView(bytes.buffer, bytes.byteOffset, 22);
  const seq = v.getBigUint64(6);
  const capture = v.getBigInt64(14);
  return {
    keyframe: (bytes[1] & 1) === 1,
    tag: v.getUint32(2),
    seq: Number(seq),
    captureUs: Number(capture),
  };
}

/** The q-quantile of sorted values (nearest rank). */
export function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i];
}

/** NTP-style offset of the collector's clock from this browser's, in ms. */
export class CollectorClock {
  constructor() {
    this.samples = [];
    this.offsetMs = null;
    this.rttMs = null;
  }

  async measure(n = 8) {
    for (let i = 0; i < n; i++) {
      const t0 = wallMs();
      try {
        const r = await fetch('/api/v1/time', { cache: 'no-store', signal: AbortSignal.timeout(3000) });
        const t3 = wallMs();
        const { now_us: t } = await r.json();
        if (Number.isFinite(t)) {
          this.samples.push({ at: t3, rtt: t3 - t0, offset: t / 1000 - (t0 + t3) / 2 });
        }
      } catch (e) {
        // A failed exchange is only one sample less.
      }
    }
    // The sample with the smallest round trip over the last 2 minutes.
    const now = wallMs();
    this.samples = this.samples.filter((s) => now - s.at < 120000).slice(-64);
    let best = null;
    for (const s of this.samples) if (!best || s.rtt < best.rtt) best = s;
    if (best) {
      this.offsetMs = best.offset;
      this.rttMs = best.rtt;
    }
  }

  /** Collector time (ms since the epoch) of a browser wall time. */
  toCollector(browserMs) {
    return this.offsetMs === null ? null : browserMs + this.offsetMs;
  }
}

// performance.timeOrigin + performance.now() drifts from Date.now() in
// long sessions: the difference is re-measured every few seconds.
let drift = 0;
let driftAt = -1e9;
function remeasureDrift() {
  const p = performance.now();
  if (p - driftAt < 5000) return;
  driftAt = p;
  drift = Date.now() - (performance.timeOrigin + p);
}

/** This browser's wall clock, ms since the epoch, sub-ms resolution. */
export function wallMs() {
  remeasureDrift();
  return performance.timeOrigin + performance.now() + drift;
}

/** Wall time of a DOMHighResTimeStamp (rVFC's expectedDisplayTime). */
export function wallOf(t) {
  remeasureDrift();
  return performance.timeOrigin + t + drift;
}

/**
 * Measures one stream: feed it hls.js user-data samples (onUserData), it
 * watches the video element, and reports each second to the collector.
 */
export class ViewerMeter {
  constructor(video, { device, stream, csrf, clock, deviceClock, onFrame, onSecond }) {
    this.video = video;
    this.device = device;
    this.stream = stream;
    this.csrf = csrf;
    this.clock = clock;
    // () => {offsetMs, uncertaintyMs} of the device, or null.
    this.deviceClock = deviceClock;
    this.onFrame = onFrame || (() => {});
    this.onSecond = onSecond || (() => {});
    this.byPts = new Map();
    this.window = [];
    this.windowStart = null;
    this.stalls = 0;
    this.stamps = 0;
    this.page = Array.from(crypto.getRandomValues(new Uint8Array(8)), (b) => b.toString(16).padStart(2, '0')).join('');
    this.rvfc = 'requestVideoFrameCallback' in HTMLVideoElement.prototype;
    this.method = this.rvfc ? 'rvfc' : 'timeupdate';
    this.reports = { sent: 0, refused: 0 };
    this.last = [];
    video.addEventListener('waiting', () => { this.stalls += 1; });
    if (this.rvfc) {
      const cb = (now, meta) => {
        this.presented(meta.mediaTime, wallOf(meta.expectedDisplayTime), 0);
        video.requestVideoFrameCallback(cb);
      };
      video.requestVideoFrameCallback(cb);
    } else {
      // timeupdate fires every 15–250 ms: the frame shown at currentTime
      // may have been up for that long, so the uncertainty widens by it.
      video.addEventListener('timeupdate', () => {
        this.presented(video.currentTime, wallMs(), 250);
      });
    }
    this.timer = setInterval(() => this.report(), 1000);
  }

  /** hls.js FRAG_PARSING_USERDATA samples. */
  onUserData(samples) {
    for (const s of samples || []) {
      if (s.uuid !== STAMP_UUID) continue;
      const stamp = parseStamp(s.userDataBytes);
      if (!stamp || !Number.isFinite(s.pts)) continue;
      this.stamps += 1;
      this.byPts.set(Math.round(s.pts * 1e6), stamp);
    }
    // Keep the last 900 stamps (30 s at 30 fps).
    if (this.byPts.size > 900) {
      const drop = this.byPts.size - 900;
      let i = 0;
      for (const k of this.byPts.keys()) {
        if (i++ >= drop) break;
        this.byPts.delete(k);
      }
    }
  }

  find(mediaTime, exact) {
    const key = Math.round(mediaTime * 1e6);
    for (const k of [key, key - 1, key + 1]) {
      const s = this.byPts.get(k);
      if (s) return s;
    }
    if (exact) return null;
    // timeupdate: the latest stamp at or before the playhead.
    let best = null;
    let bestKey = -Infinity;
    for (const [k, s] of this.byPts) if (k <= key && k > bestKey) { best = s; bestKey = k; }
    return best;
  }

  presented(mediaTime, shownBrowserMs, extraUncertaintyMs) {
    const stamp = this.find(mediaTime, this.rvfc);
    if (!stamp) return;
    const shown = this.clock.toCollector(shownBrowserMs);
    const dev = this.deviceClock();
    if (shown === null) return;
    const captureDevMs = stamp.captureUs / 1000;
    const captureMs = dev && Number.isFinite(dev.offsetMs) ? captureDevMs - dev.offsetMs : captureDevMs;
    const latency = shown - captureMs;
    const uncertainty = (this.clock.rttMs || 0) / 2 + ((dev && dev.uncertaintyMs) || 0) + extraUncertaintyMs;
    this.window.push(latency);
    this.uncertainty = uncertainty;
    this.onFrame({ shownMs: shown, captureMs, latency, stamp, uncertainty });
  }

  bufferMs() {
    const v = this.video;
    const b = v.buffered;
    for (let i = 0; i < b.length; i++) {
      if (b.start(i) <= v.currentTime + 0.05 && v.currentTime <= b.end(i)) {
        return Math.max(0, (b.end(i) - v.currentTime) * 1000);
      }
    }
    return 0;
  }

  async report() {
    const now = this.clock.toCollector(wallMs());
    if (now === null) return;
    const endUs = Math.round(now * 1000);
    const startUs = this.windowStart ?? endUs - 1000000;
    this.windowStart = endUs;
    const sorted = this.window.sort((a, b) => a - b);
    this.window = [];
    const summary = {
      page: this.page,
      window_start_us: startUs,
      window_end_us: endUs,
      frames: sorted.length,
      p50_ms: quantile(sorted, 0.5),
      p95_ms: quantile(sorted, 0.95),
      max_ms: sorted.length ? sorted[sorted.length - 1] : null,
      buffer_ms: this.bufferMs(),
      stalls: this.stalls,
      uncertainty_ms: Math.min(60000, this.uncertainty || (this.clock.rttMs || 0) / 2),
      method: this.method,
      // The Prometheus buckets of /metrics (le, seconds), then +Inf.
      buckets: bucketCounts(sorted),
      sum_ms: sorted.reduce((a, b) => a + b, 0),
    };
    this.stalls = 0;
    this.last.push(...sorted);
    if (this.last.length > 3600) this.last.splice(0, this.last.length - 3600);
    this.onSecond(summary);
    if (endUs <= startUs) return;
    const headers = { 'Content-Type': 'application/json' };
    if (this.csrf) headers['X-CSRF-Token'] = this.csrf;
    try {
      const r = await fetch(`/api/v1/streams/${this.device}/${this.stream}/viewer`, {
        method: 'POST', headers, body: JSON.stringify(summary), signal: AbortSignal.timeout(3000),
      });
      if (r.ok) this.reports.sent += 1; else this.reports.refused += 1;
    } catch (e) {
      this.reports.refused += 1;
    }
  }
}

/** Upper bounds (s) of the collector's latency buckets, as metrics.rs's BUCKETS_S. */
const BUCKETS_S = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10];

/** How many of the latencies (ms) fall in each bucket, then above the last. */
function bucketCounts(ms) {
  const counts = new Array(BUCKETS_S.length + 1).fill(0);
  for (const v of ms) {
    const i = BUCKETS_S.findIndex((b) => v / 1000 <= b);
    counts[i === -1 ? BUCKETS_S.length : i] += 1;
  }
  return counts;
}
