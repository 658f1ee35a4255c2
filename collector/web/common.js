// Helpers both pages share: JSON requests, the login state, colour bands
// and number formatting.

/** DESIGN.md's bands, replaced by the collector's when it sends them. */
export let bandsMs = [100, 500, 2000];

export function setBands(b) {
  if (Array.isArray(b) && b.length === 3 && b.every(Number.isFinite)) bandsMs = b;
  const legend = document.getElementById('bands');
  if (legend) {
    const [g, y, o] = bandsMs.map((v) => (v >= 1000 && v % 1000 === 0 ? `${v / 1000} s` : `${v} ms`));
    legend.textContent = `Bands: green < ${g}, yellow < ${y}, orange < ${o}, red beyond.`;
  }
}

/** The band class of a latency in ms: good, fair, slow, poor, or none. */
export function band(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return 'none';
  if (ms < bandsMs[0]) return 'good';
  if (ms < bandsMs[1]) return 'fair';
  if (ms < bandsMs[2]) return 'slow';
  return 'poor';
}

export function fmt(v, digits = 0) {
  return v === null || v === undefined || !Number.isFinite(v) ? '–' : v.toFixed(digits);
}

/** Time of day (UTC) of µs since the epoch, hh:mm:ss.mmm. */
export function clock(us) {
  if (!Number.isFinite(us)) return '--:--:--.---';
  return new Date(us / 1000).toISOString().slice(11, 23);
}

/** "3 min ago" for µs since the epoch, against now in µs. */
export function ago(us, nowUs) {
  if (!Number.isFinite(us)) return '';
  const s = Math.max(0, (nowUs - us) / 1e6);
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

export async function getJSON(path, timeoutMs = 10000) {
  const r = await fetch(path, {
    headers: { Accept: 'application/json' },
    signal: AbortSignal.timeout(timeoutMs),
  });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

/** Who is logged in; fills the header and its logout form. */
export async function whoami() {
  try {
    const me = await getJSON('/api/v1/whoami');
    const el = document.getElementById('who');
    if (el && me.csrf) {
      const form = document.createElement('form');
      form.method = 'post';
      form.action = '/logout';
      const csrf = document.createElement('input');
      csrf.type = 'hidden';
      csrf.name = 'csrf';
      csrf.value = me.csrf;
      const button = document.createElement('button');
      button.textContent = 'Log out';
      form.append(`${me.name} `, csrf, button);
      el.replaceChildren(form);
    }
    return me;
  } catch (e) {
    return { name: null, role: null, csrf: null };
  }
}

/** An element with a class and text. */
export function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
