#!/usr/bin/env bash
# Benchmark: does the collector's memory stay flat with its default (embedded)
# broker? Sampled over minutes, next to the same collector against mosquitto,
# both in the same run under the same traffic.
#
#   bench/broker_memory.sh [N]    (default 50; STEP1_S=60 and STEPN_S=150 s, SAMPLE_S=5 s)
#
# One real agent publishes a test pattern (WIDTHxHEIGHT@30, default 1280x720,
# x264, GOP 15, 2000 kbps) to the testkit LL-HLS origin (50 ms parts, 500 ms
# segments) and reports to the embedded broker of collector E. Collector M
# reads the same origin but uses a mosquitto on another port (the peer).
# bench/fanout.py relays the real device's status, frame batches and stats to
# both brokers, as itself and, in step 2, as N simulated devices (sim0..),
# answers clock pings to the simulated devices on both brokers and passes M's
# pings to the real device on (and its pongs back). Step 1 is the real stream
# alone (STEP1_S); step 2 is N+1 streams (STEPN_S). Every SAMPLE_S seconds the
# VmRSS of E, M and mosquitto is read from /proc/PID/status. Reported per
# step: VmRSS at the end, and the growth in KiB/s as the least-squares slope
# of the samples over the step's second half (the first half lets the record
# stores fill: records are kept 30 s). Per stream: (VmRSS at the end of step
# 2 - at the end of step 1) / N, with the share of it that was SQLite's
# page cache filling up (glasswatch_sqlite_memory_bytes from /metrics: a
# fixed bound for all connections together, storage.sqlite_cache_kib, that a
# longer run reaches whatever the number of streams). Target: <= 256 KiB per
# stream, and flat.
# STORAGE=none runs both collectors without history (default: SQLite, each
# its own file, as a user runs it). RAW=1 also prints every sample.
# HEAPTRACK=DIR runs the embedded-broker collector under heaptrack, whose
# data is written to DIR (then: heaptrack_print DIR/heaptrack.*); the
# collector runs slower under it, so read its memory from heaptrack's output.
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-50}"
step1="${STEP1_S:-60}"; stepn="${STEPN_S:-150}"; every="${SAMPLE_S:-5}"
width="${WIDTH:-1280}"; height="${HEIGHT:-720}"
storage="${STORAGE:-sqlite}"
. bench/lib.sh
cargo build --release --locked -p glasswatch-collector --bins >/dev/null

# VmRSS of a process, in KiB.
rss() { awk '$1 == "VmRSS:" {print $2}' "/proc/$1/status"; }
# What SQLite holds in a collector (its page caches: bounded by
# storage.sqlite_cache_kib for all connections together, not per stream), in
# KiB, from /metrics.
sqlite_kib() {
  curl -sf "http://127.0.0.1:$1/metrics" |
    awk '$1 == "glasswatch_sqlite_memory_bytes" {printf "%d\n", $2 / 1024; found = 1} END {if (!found) print 0}'
}

rtsp=$(free_port); http=$(free_port); mqe=$(free_port); mqm=$(free_port); apie=$(free_port); apim=$(free_port)
hls_url="http://127.0.0.1:$http/real-cam0/index.m3u8"
target/release/glasswatch-test-origin --rtsp-port "$rtsp" --http-port "$http" --dir "$work/hls" \
  --path real-cam0 --format llhls --part-ms 50 --segment-ms 500 --target-duration 1 \
  > "$work/origin.log" 2>&1 & pids+=("$!")
wait_port "$rtsp"

printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$mqm" > "$work/mosquitto.conf"
[ "$(id -u)" = 0 ] && echo "user root" >> "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 & mosq=$!; pids+=("$mosq")
wait_port "$mqm"

start_collector() { # name, [mqtt] line, api port, [wrapper command...]
  # Each its own SQLite file: one shared file would make each wait for the
  # other's locks, and its write queue grow meanwhile.
  printf '[mqtt]\n%s\n[http]\nlisten = "127.0.0.1:%s"\nauth = "none"\n[storage]\nkind = "%s"\nsqlite = "%s.db"\n' \
    "$2" "$3" "$storage" "$1" > "$work/$1.toml"
  local name=$1; shift 3
  "$@" "$PWD/target/release/glasswatch-collector" --config "$work/$name.toml" > "$work/$name.out" 2> "$work/$name.log" &
  pids+=("$!")
  wait_line "$work/$name.out" '^READY' 60
}
wrap=()
if [ -n "${HEAPTRACK:-}" ]; then
  mkdir -p "$HEAPTRACK"
  wrap=(env -C "$HEAPTRACK" heaptrack)
fi
start_collector embedded "listen = \"127.0.0.1:$mqe\"" "$apie" "${wrap[@]}"
ce=${pids[-1]}
# Under heaptrack, the collector is the wrapper's child (stopped by PID on
# exit too, or it outlives the bench).
if [ ${#wrap[@]} -gt 0 ]; then
  ce=$(pgrep -n -f "glasswatch-collector --config $work/embedded.toml"); pids+=("$ce")
fi
start_collector mosquitto "url = \"mqtt://127.0.0.1:$mqm\"" "$apim"
cm=${pids[-1]}

agent_toml real "$mqe" "rtsp://127.0.0.1:$rtsp/real-cam0" "$hls_url" 15 "$width" "$height" > "$work/agent.toml"
target/release/glasswatch-agent --config "$work/agent.toml" > "$work/agent.log" 2>&1 & pids+=("$!")
for _ in $(seq 1 100); do curl -sf -o /dev/null "$hls_url" && break; sleep 0.1; done

# Streams whose last summary matched frames, of all streams, per collector.
matched() {
  curl -sf "http://127.0.0.1:$1/api/v1/streams" | python3 -c '
import json, sys
s = json.load(sys.stdin)["streams"]
print("%d/%d" % (sum(1 for x in s if x["last"] and x["last"]["frames"] > 0), len(s)))' 2>/dev/null || echo "?"
}

samples="$work/samples"
t0=$(date +%s)
step() { # number of simulated devices, seconds
  /usr/bin/python3 bench/fanout.py "$mqe" real cam0 "$1" --mirror "$mqm" > "$work/fanout-$1.log" 2>&1 &
  local fanout=$!; pids+=("$fanout")
  wait_line "$work/fanout-$1.log" '^READY'
  local end=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -lt "$end" ]; do
    sleep "$every"
    echo "$(($1 + 1)) $(($(date +%s) - t0)) $(rss "$ce") $(rss "$cm") $(rss "$mosq") $(sqlite_kib "$apie") $(sqlite_kib "$apim")" >> "$samples"
  done
  echo "$(($1 + 1)) matched $(matched "$apie") $(matched "$apim")" >> "$work/matched"
  kill -TERM "$fanout"; wait "$fanout" 2>/dev/null || true
}
step 0 "$step1"
step "$n" "$stepn"

errors=$(grep -c ' ERROR ' "$work/embedded.log" || true)
python3 - "$samples" "$work/matched" "$step1" "$stepn" "$every" "$width" "$height" "$errors" "${RAW:-0}" "$storage" <<'PY'
import sys
samples, matched, s1, sn, every, w, h, errors, raw, storage = sys.argv[1:]
rows = [l.split() for l in open(samples)]
match = {l.split()[0]: l.split()[2:] for l in open(matched)}
steps = sorted({int(r[0]) for r in rows})
names = ["collector, embedded broker", "collector, mosquitto", "mosquitto itself"]

def slope(pts):
    n = len(pts)
    if n < 2:
        return float("nan")
    mx = sum(p[0] for p in pts) / n
    my = sum(p[1] for p in pts) / n
    den = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / den if den else float("nan")

print(f"collector VmRSS over time: one real agent {w}x{h}@30 x264 -> testkit LL-HLS origin (50 ms parts); "
      f"step 1 the real stream ({s1} s), step 2 plus simulated devices ({sn} s); sampled every {every} s; "
      f"storage {storage}")
end = {}
print(f"{'streams':>8}  {'process':<28}{'VmRSS MiB':>10}{'KiB/s (2nd half)':>18}{'matched':>10}")
for st in steps:
    mine = [r for r in rows if int(r[0]) == st]
    pts = [(float(r[1]), [int(x) for x in r[2:5]]) for r in mine]
    half = pts[len(pts) // 2:]
    for k, name in enumerate(names):
        m = match.get(str(st), ["?", "?"])
        end[(st, k)] = pts[-1][1][k]
        if k < 2:
            end[(st, k, "sqlite")] = int(mine[-1][5 + k])
        print(f"{st:>8}  {name:<28}{pts[-1][1][k] / 1024:>10.1f}"
              f"{slope([(t, v[k]) for t, v in half]):>18.1f}{m[k] if k < 2 else '':>10}")
if raw == "1":
    for r in rows:
        print("sample", " ".join(r))
if len(steps) > 1:
    a, b = steps[0], steps[-1]
    for k, name in enumerate(names[:2]):
        sq = (end[(b, k, "sqlite")] - end[(a, k, "sqlite")]) / (b - a)
        print(f"per additional stream, {a} -> {b}, {name}: {(end[(b, k)] - end[(a, k)]) / (b - a):.0f} KiB VmRSS, "
              f"of which SQLite's page cache {sq:.0f} KiB (it reached {end[(b, k, 'sqlite')]} KiB, bounded by "
              f"storage.sqlite_cache_kib, not by streams)")
    print(f"mosquitto itself: {(end[(b, 2)] - end[(a, 2)]) / (b - a):.1f} KiB per stream")
    per = (end[(b, 0)] - end[(a, 0)]) / (b - a)
    print(f"target: <= 256 KiB per stream with the default broker; measured {per:.0f} KiB "
          f"({'met' if per <= 256 else 'NOT met'})")
print(f"ERROR lines in the embedded-broker collector's log: {errors}")
PY
