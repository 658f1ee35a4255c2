#!/usr/bin/env bash
# Benchmark: does everything stay flat over hours? Memory, descriptors and
# threads of the collector (with its embedded broker, and again with
# mosquitto, side by side under the same traffic), the agent and the origin,
# sampled every SAMPLE_S seconds, with the collectors' own counters.
#
#   bench/soak.sh [DURATION_S] [STREAMS]      (defaults 3600 and 50)
#   bench/soak.sh 600                         (the 10-minute form)
#   FAULTS=1 bench/soak.sh 900 20             (with faults, below)
#
# One real agent publishes a test pattern (WIDTHxHEIGHT@30, default
# 1280x720, x264, GOP 15) to the testkit LL-HLS origin (50 ms parts, 500 ms
# segments) and reports to collector E's embedded broker; bench/fanout.py
# relays its traffic as STREAMS-1 simulated devices to E and, mirrored, to a
# mosquitto that collector M reads (the peer). Both keep history in SQLite
# (their own files, the default settings otherwise). Storage is on, as a user
# runs it.
#
# Every SAMPLE_S (10) seconds: VmRSS, RssAnon, open descriptors and threads
# of E, M, mosquitto, the agent and the origin; E's and M's counters from
# /metrics (frames seen and dropped, HLS errors, storage queue and drops,
# broker drops). After WARMUP_S (300, or a fifth of a shorter run) it prints
# each figure's least-squares slope and a table at the start of the measured
# part, 10 min later and at the end; the samples go to a CSV (OUT, default
# target/soak/soak-<time>.csv) ready to plot, the collectors' and origin's
# logs in <csv>.logs/. Targets: memory slope <= 1 KiB/s per process after
# warm-up, descriptors and threads constant, no frame dropped.
#
# FAULTS=1: the origin restarts every 5 min, mosquitto every 7 min, and sim0
# goes silent for a minute every 6 min (no Last Will: fanout.py stops
# relaying it). At the end the dropped frames are set against what those
# outages explain (an origin restart loses the frames published while it was
# away, as on a real MediaMTX restart), and memory must still be flat.
#
# COLLECTOR_BIN runs another collector build (as E and M), to compare two
# builds in one session: two soaks side by side.
#
# The agent runs under GStreamer's leaks tracer (GST_TRACERS=leaks with
# GST_LEAKS_TRACER_SIG): its live GStreamer objects (buffers, events,
# elements…) are listed by type after the warm-up and at the end; a leak
# shows as a type whose count grew.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-3600}"; n="${2:-50}"
every="${SAMPLE_S:-10}"
warmup="${WARMUP_S:-$(( duration >= 1500 ? 300 : duration / 5 ))}"
width="${WIDTH:-1280}"; height="${HEIGHT:-720}"
faults="${FAULTS:-0}"
mkdir -p target/soak
out="${OUT:-target/soak/soak-$(date -u +%Y%m%dT%H%M%SZ).csv}"
[ "$n" -ge 1 ] || { echo "STREAMS must be at least 1" >&2; exit 2; }
. bench/lib.sh
cargo build --release --locked -p glasswatch-collector --bins >/dev/null

# Four figures of a process: VmRSS KiB, RssAnon KiB, open descriptors,
# threads (or "nan nan nan nan" while it is not running).
proc_figures() {
  local p=$1 fds
  if [ -n "$p" ] && [ -r "/proc/$p/status" ]; then
    fds=$(ls "/proc/$p/fd" 2>/dev/null | wc -l)
    awk -v fds="$fds" '$1 == "VmRSS:" {r=$2} $1 == "RssAnon:" {a=$2} $1 == "Threads:" {t=$2}
      END {print r, a, fds, t}' "/proc/$p/status" 2>/dev/null || echo "nan nan nan nan"
  else
    echo "nan nan nan nan"
  fi
}
# A collector's counters from /metrics, summed over streams: frames seen,
# frames dropped, HLS errors, storage queue, storage drops, broker drops,
# and where its memory is (KiB): heap in use, free heap the allocator keeps,
# SQLite's own.
counters() {
  local m
  m=$(curl -sf --max-time 5 "http://127.0.0.1:$1/metrics") || { echo "nan nan nan nan nan nan nan nan nan"; return; }
  awk '
    /^#/ {next}
    {split($1, n, "{"); v[n[1]] += $2}
    END {printf "%d %d %d %d %d %d %d %d %d\n", v["glasswatch_frames_seen_total"], v["glasswatch_frames_dropped_total"],
      v["glasswatch_hls_errors_total"], v["glasswatch_storage_queue_batches"],
      v["glasswatch_storage_dropped_seconds_total"] + v["glasswatch_storage_dropped_frames_total"],
      v["glasswatch_broker_dropped_total"], v["glasswatch_heap_in_use_bytes"] / 1024,
      v["glasswatch_heap_free_held_bytes"] / 1024, v["glasswatch_sqlite_memory_bytes"] / 1024}' <<< "$m"
}
# The real agent's report backlog and records dropped, from its last stats.
agent_backlog() {
  curl -sf --max-time 5 "http://127.0.0.1:$apie/api/v1/streams/real/cam0" | python3 -c '
import json, sys
s = json.load(sys.stdin).get("stats") or {}
print(s.get("report_backlog", "nan"), s.get("records_dropped", "nan"))' 2>/dev/null || echo "nan nan"
}
# The agent's live GStreamer objects, by type, as the leaks tracer lists them
# on SIGUSR1 (GST_LEAKS_TRACER_SIG), into file $1.
gst_live() {
  local before; before=$(wc -l < "$work/agent.log")
  kill -USR1 "$agent" 2>/dev/null || { : > "$1"; return; }
  sleep 3
  tail -n +"$((before + 1))" "$work/agent.log" | grep -o 'object-alive, type-name=(string)[A-Za-z0-9_]*' |
    sed 's/.*(string)//' | sort | uniq -c > "$1" || true
}

rtsp=$(free_port); http=$(free_port); mqe=$(free_port); mqm=$(free_port); apie=$(free_port); apim=$(free_port)
hls_url="http://127.0.0.1:$http/real-cam0/index.m3u8"
start_origin() {
  target/release/glasswatch-test-origin --rtsp-port "$rtsp" --http-port "$http" --dir "$work/hls" \
    --path real-cam0 --format llhls --part-ms 50 --segment-ms 500 --target-duration 1 \
    >> "$work/origin.log" 2>&1 & origin=$!; pids+=("$origin")
  wait_port "$rtsp"
}
start_mosquitto() {
  mosquitto -c "$work/mosquitto.conf" >> "$work/broker.log" 2>&1 & mosq=$!; pids+=("$mosq")
  wait_port "$mqm"
}
start_origin
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$mqm" > "$work/mosquitto.conf"
[ "$(id -u)" = 0 ] && echo "user root" >> "$work/mosquitto.conf"
start_mosquitto

start_collector() { # name, [mqtt] line, api port
  printf '[mqtt]\n%s\n[http]\nlisten = "127.0.0.1:%s"\nauth = "none"\n[storage]\nsqlite = "%s.db"\n' \
    "$2" "$3" "$1" > "$work/$1.toml"
  "${COLLECTOR_BIN:-target/release/glasswatch-collector}" --config "$work/$1.toml" > "$work/$1.out" 2> "$work/$1.log" &
  pids+=("$!")
  wait_line "$work/$1.out" '^READY' 30
}
start_collector embedded "listen = \"127.0.0.1:$mqe\"" "$apie"; ce=${pids[-1]}
start_collector mosquitto "url = \"mqtt://127.0.0.1:$mqm\"" "$apim"; cm=${pids[-1]}

agent_toml real "$mqe" "rtsp://127.0.0.1:$rtsp/real-cam0" "$hls_url" 15 "$width" "$height" > "$work/agent.toml"
GST_TRACERS=leaks GST_LEAKS_TRACER_SIG=1 GST_DEBUG="GST_TRACER:7" \
  target/release/glasswatch-agent --config "$work/agent.toml" > "$work/agent.log" 2>&1 & agent=$!; pids+=("$agent")
for _ in $(seq 1 100); do curl -sf -o /dev/null "$hls_url" && break; sleep 0.1; done

/usr/bin/python3 bench/fanout.py "$mqe" real cam0 "$((n - 1))" --mirror "$mqm" > "$work/fanout.log" 2>&1 &
fanout=$!; pids+=("$fanout")
wait_line "$work/fanout.log" '^READY'

echo "soak: $n streams for $duration s (warm-up $warmup s), sampled every $every s, faults $([ "$faults" = 1 ] && echo on || echo off); CSV: $out" >&2
echo "t_s,proc,rss_kib,anon_kib,fds,threads" > "$out.procs"
echo "t_s,collector,frames_seen,frames_dropped,hls_errors,storage_queue,storage_dropped,broker_dropped,heap_kib,heap_free_kib,sqlite_kib" > "$out.counters"
echo "t_s,report_backlog,records_dropped" > "$out.agent"
t0=$(date +%s)
origin_down=0; mosq_down=0; silent=0; dumped=0
next_origin=300; next_mosq=420; next_silent=360
while :; do
  t=$(( $(date +%s) - t0 ))
  [ "$t" -ge "$duration" ] && break
  if [ "$dumped" = 0 ] && [ "$t" -ge "$warmup" ]; then gst_live "$work/gst-start"; dumped=1; fi
  for pair in "collector-embedded:$ce" "collector-mosquitto:$cm" "mosquitto:$mosq" "agent:$agent" "origin:$origin"; do
    echo "$t,${pair%%:*},$(proc_figures "${pair#*:}" | tr ' ' ',')" >> "$out.procs"
  done
  echo "$t,embedded,$(counters "$apie" | tr ' ' ',')" >> "$out.counters"
  echo "$t,mosquitto,$(counters "$apim" | tr ' ' ',')" >> "$out.counters"
  echo "$t,$(agent_backlog | tr ' ' ',')" >> "$out.agent"
  if [ "$faults" = 1 ]; then
    if [ "$t" -ge "$next_origin" ]; then
      kill "$origin"; wait "$origin" 2>/dev/null || true; sleep 2; start_origin
      origin_down=$((origin_down + 1)); next_origin=$((next_origin + 300))
      echo "$t s: origin restarted" >&2
    fi
    if [ "$t" -ge "$next_mosq" ]; then
      kill "$mosq"; wait "$mosq" 2>/dev/null || true; sleep 2; start_mosquitto
      mosq_down=$((mosq_down + 1)); next_mosq=$((next_mosq + 420))
      echo "$t s: mosquitto restarted" >&2
    fi
    if [ "$t" -ge "$next_silent" ]; then
      kill -USR1 "$fanout"
      if [ "$silent" = 0 ]; then silent=1; next_silent=$((next_silent + 60)); echo "$t s: sim0 silent" >&2
      else silent=0; next_silent=$((next_silent + 300)); echo "$t s: sim0 back" >&2; fi
    fi
  fi
  sleep "$every"
done
if [ "$silent" = 1 ]; then kill -USR1 "$fanout"; fi

# The agent's live GStreamer objects at the end, against the warm-up's.
gst_live "$work/gst-end"
# The collectors', origin's, relay's and mosquitto's logs stay beside the
# CSV (the work dir goes): a frame dropped or a step in memory is read off
# them.
mkdir -p "$out.logs"
cp "$work/embedded.log" "$work/mosquitto.log" "$work/origin.log" "$work/fanout.log" "$work/broker.log" "$out.logs/" 2>/dev/null || true
kill -TERM "$agent"
for _ in $(seq 1 150); do kill -0 "$agent" 2>/dev/null || break; sleep 0.1; done

python3 - "$out" "$warmup" "$duration" "$n" "$faults" "$origin_down" "$mosq_down" "$work/gst-start" "$work/gst-end" "$width" "$height" <<'PY'
import csv, math, sys
out, warmup, duration, n, faults, origin_down, mosq_down, gst_a, gst_b, w, h = sys.argv[1:]
warmup, duration, n = int(warmup), int(duration), int(n)

def num(x):
    try:
        return float(x)
    except ValueError:
        return math.nan

procs = list(csv.DictReader(open(out + ".procs")))
counters = list(csv.DictReader(open(out + ".counters")))
names = ["collector-embedded", "collector-mosquitto", "mosquitto", "agent", "origin"]
keys = ["rss_kib", "anon_kib", "fds", "threads"]

# One plot-ready CSV: a row per sample time, a column per process and figure.
times = sorted({int(r["t_s"]) for r in procs})
by = {(int(r["t_s"]), r["proc"]): r for r in procs}
cby = {(int(r["t_s"]), r["collector"]): r for r in counters}
agent = {int(r["t_s"]): r for r in csv.DictReader(open(out + ".agent"))}
ckeys = ["frames_seen", "frames_dropped", "hls_errors", "storage_queue", "storage_dropped", "broker_dropped",
         "heap_kib", "heap_free_kib", "sqlite_kib"]
with open(out, "w", newline="") as f:
    wr = csv.writer(f)
    wr.writerow(["t_s"] + [f"{p}.{k}" for p in names for k in keys]
                + [f"{c}.{k}" for c in ("embedded", "mosquitto") for k in ckeys]
                + ["agent.report_backlog", "agent.records_dropped"])
    for t in times:
        wr.writerow([t] + [by.get((t, p), {}).get(k, "") for p in names for k in keys]
                    + [cby.get((t, c), {}).get(k, "") for c in ("embedded", "mosquitto") for k in ckeys]
                    + [agent.get(t, {}).get(k, "") for k in ("report_backlog", "records_dropped")])

def slope(pts):
    pts = [(x, y) for x, y in pts if not math.isnan(y)]
    if len(pts) < 3:
        return math.nan
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else math.nan

def at(p, k, t):
    """The figure of the first sample at or after t."""
    for tt in times:
        if tt >= t and (tt, p) in by:
            return num(by[(tt, p)][k])
    return math.nan

after = [t for t in times if t >= warmup]
if not after:
    sys.exit("no sample after the warm-up: run longer")
t_a, t_end = after[0], after[-1]
t_10 = next((t for t in after if t >= t_a + 600), t_end)
print(f"soak: one real agent {w}x{h}@30 x264 -> testkit LL-HLS origin (50 ms parts) + {n - 1} simulated "
      f"devices = {n} streams, {duration} s, measured after a {warmup} s warm-up; faults "
      f"{'on: origin restarted %s times, mosquitto %s times, sim0 silent a minute every 6 min' % (origin_down, mosq_down) if faults == '1' else 'off'}")
print(f"{'process':<21}{'':>9}{'start':>10}{'+10 min':>10}{'end':>10}{'slope/s':>12}")
worst = {}
for p in names:
    for k, unit in zip(keys, ["KiB", "KiB", "", ""]):
        s = slope([(t, num(by[(t, p)][k])) for t in after if (t, p) in by])
        worst[(p, k)] = s
        label = {"rss_kib": "VmRSS KiB", "anon_kib": "RssAnon KiB", "fds": "fds", "threads": "threads"}[k]
        print(f"{p if k == 'rss_kib' else '':<21}{label:>11}{at(p, k, t_a):>10.0f}{at(p, k, t_10):>10.0f}"
              f"{at(p, k, t_end):>10.0f}{s:>12.2f}")
for c in ("embedded", "mosquitto"):
    first = cby.get((t_a, c), {})
    last = cby.get((t_end, c), {})
    d = {k: num(last.get(k, "nan")) - num(first.get(k, "nan")) for k in ckeys}
    print(f"collector ({c} broker), measured part: frames seen {d['frames_seen']:.0f}, dropped "
          f"{d['frames_dropped']:.0f}, HLS errors {d['hls_errors']:.0f}, storage dropped "
          f"{d['storage_dropped']:.0f}, broker dropped {d['broker_dropped']:.0f}, storage queue at the end "
          f"{num(last.get('storage_queue', 'nan')):.0f}")
for c in ("embedded", "mosquitto"):
    parts = []
    for k, label in (("heap_kib", "heap in use"), ("heap_free_kib", "free heap kept"), ("sqlite_kib", "SQLite")):
        s = slope([(t, num(cby[(t, c)][k])) for t in after if (t, c) in cby])
        parts.append(f"{label} {num(cby.get((t_a, c), {}).get(k, 'nan')):.0f} -> "
                     f"{num(cby.get((t_end, c), {}).get(k, 'nan')):.0f} KiB ({s:.2f} KiB/s)")
    print(f"collector ({c} broker), where its memory is: " + ", ".join(parts))
backlog = [num(agent[t]["report_backlog"]) for t in after if t in agent]
backlog = [b for b in backlog if not math.isnan(b)]
rd = [num(agent[t]["records_dropped"]) for t in after if t in agent]
rd = [x for x in rd if not math.isnan(x)]
print(f"agent: report backlog max {max(backlog) if backlog else float('nan'):.0f} after warm-up, "
      f"records dropped {(rd[-1] - rd[0]) if rd else float('nan'):.0f} (its cumulative count, end minus warm-up)")
print("targets: memory slope <= 1 KiB/s per process, descriptors and threads flat, no frame dropped")
for p in names:
    r = worst[(p, "rss_kib")]
    print(f"  {p}: VmRSS slope {r:.2f} KiB/s ({'met' if r <= 1 else 'NOT met'}), "
          f"fds slope {worst[(p, 'fds')]:.4f}/s, threads slope {worst[(p, 'threads')]:.4f}/s")
def live(path):
    try:
        return {l.split()[1]: int(l.split()[0]) for l in open(path) if len(l.split()) == 2}
    except OSError:
        return {}
a, b = live(gst_a), live(gst_b)
grew = sorted(((b.get(k, 0) - a.get(k, 0), k) for k in set(a) | set(b)), reverse=True)
print(f"agent's live GStreamer objects (leaks tracer): {sum(a.values())} after warm-up, {sum(b.values())} at the end"
      + ("; grew most: " + ", ".join(f"{k} {d:+d}" for d, k in grew[:5] if d > 0) if any(d > 0 for d, _ in grew) else ""))
print(f"samples: {out}")
PY
rm -f "$out.procs" "$out.counters" "$out.agent"
