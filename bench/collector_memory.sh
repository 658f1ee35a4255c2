#!/usr/bin/env bash
# Benchmark: the collector's memory (and CPU) per monitored stream, against one
# ffmpeg HLS reader per stream, measured in the same run.
#
#   bench/collector_memory.sh [N ...]    (default: 20 50; SETTLE_S=40 s per step)
#
# One real agent publishes a test pattern (WIDTHxHEIGHT@30, default 1280x720,
# x264, GOP 15, 2000 kbps) to the testkit LL-HLS origin (50 ms parts, 500 ms
# segments); the collector runs its embedded broker. Steps: the real stream
# alone, then bench/fanout.py relaying the real device's status, frame batches
# and stats as N simulated devices (sim0..simN-1, same hls_url), so the
# collector runs N+1 receivers and record stores over real traffic. Each step
# lasts SETTLE_S (records are kept 30 s, so the stores are full by its end);
# then the collector's VmRSS, VmHWM and RssAnon (/proc/PID/status) are read,
# and its CPU over the step's last 10 s. Reports KiB and CPU per additional
# stream. Peer: `ffmpeg -i HLS_URL -c copy -f null -` reading the same LL-HLS
# URL during the first step, its memory and CPU as one reader per stream
# (ffmpeg 5.1 ignores LL-HLS parts and reads the segments).
# BROKER=mosquitto runs the collector against a mosquitto instead of its
# embedded broker, which leaves the broker's queues and retained messages out
# of its RSS (bench/broker_memory.sh runs both side by side).
# Target: <= 256 KiB per stream.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then counts=("$@"); else counts=(20 50); fi
settle="${SETTLE_S:-40}"
width="${WIDTH:-1280}"; height="${HEIGHT:-720}"
broker="${BROKER:-embedded}"
. bench/lib.sh
cargo build --release --locked -p glasswatch-collector --bins >/dev/null

# A field of /proc/PID/status, in KiB.
kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

rtsp=$(free_port); http=$(free_port); mq=$(free_port); api=$(free_port)
hls_url="http://127.0.0.1:$http/real-cam0/index.m3u8"
target/release/glasswatch-test-origin --rtsp-port "$rtsp" --http-port "$http" --dir "$work/hls" \
  --path real-cam0 --format llhls --part-ms 50 --segment-ms 500 --target-duration 1 \
  > "$work/origin.log" 2>&1 & pids+=("$!")
wait_port "$rtsp"

if [ "$broker" = mosquitto ]; then
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$mq" > "$work/mosquitto.conf"
  [ "$(id -u)" = 0 ] && echo "user root" >> "$work/mosquitto.conf"
  mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 & pids+=("$!")
  wait_port "$mq"
  mqtt_table="url = \"mqtt://127.0.0.1:$mq\""
else
  mqtt_table="listen = \"127.0.0.1:$mq\""
fi
cat > "$work/collector.toml" <<TOML
[mqtt]
$mqtt_table
[http]
listen = "127.0.0.1:$api"
auth = "none"
TOML
target/release/glasswatch-collector --config "$work/collector.toml" \
  > "$work/collector.out" 2> "$work/collector.log" & collector=$!; pids+=("$collector")
wait_line "$work/collector.out" '^READY'

agent_toml real "$mq" "rtsp://127.0.0.1:$rtsp/real-cam0" "$hls_url" 15 "$width" "$height" > "$work/agent.toml"
target/release/glasswatch-agent --config "$work/agent.toml" > "$work/agent.log" 2>&1 & pids+=("$!")

for _ in $(seq 1 100); do curl -sf -o /dev/null "$hls_url" && break; sleep 0.1; done
ffmpeg -nostdin -v error -i "$hls_url" -c copy -f null -progress "$work/ffmpeg.progress" -nostats - \
  > "$work/ffmpeg.log" 2>&1 & ffmpeg=$!; pids+=("$ffmpeg")

# What the collector reports: streams, those with matched frames in their last
# summary, records held, receiver fps (min and median).
api_view() {
  curl -sf "http://127.0.0.1:$api/api/v1/streams" | python3 -c '
import json, statistics, sys
s = json.load(sys.stdin)["streams"]
fps = sorted(x["last"]["receiver_fps"] if x["last"] else 0.0 for x in s)
ok = sum(1 for x in s if x["last"] and x["last"]["frames"] > 0)
print(len(s), ok, sum(x["records"] for x in s), f"{fps[0]:.1f}" if fps else "0", f"{statistics.median(fps):.1f}" if fps else "0")'
}

# The collector's heap in KiB from /metrics: held by the program, and free
# but kept by the allocator (fragmentation), "0 0" where not reported.
heap_kib() {
  curl -sf "http://127.0.0.1:$api/metrics" | awk '$1 == "glasswatch_heap_in_use_bytes" {u = $2}
    $1 == "glasswatch_heap_free_held_bytes" {f = $2} END {printf "%d %d\n", u / 1024, f / 1024}'
}

# One step: settle, then CPU over the last 10 s, memory at the end.
results=()
measure() { # streams
  sleep $((settle - 10))
  local c0 f0=0 t0 c1 f1=0 t1 r0
  c0=$(cpu "$collector"); t0=$(date +%s.%N); r0=$(kib "$collector" VmRSS)
  if [ "$1" = 1 ]; then f0=$(cpu "$ffmpeg"); fi
  sleep 10
  c1=$(cpu "$collector"); t1=$(date +%s.%N)
  results+=("$1 $(kib "$collector" VmRSS) $(kib "$collector" VmHWM) $(kib "$collector" RssAnon) $c0 $c1 $t0 $t1 $r0 $(api_view) $(heap_kib)")
  if [ "$1" = 1 ]; then
    f1=$(cpu "$ffmpeg")
    peer="$(kib "$ffmpeg" VmRSS) $(kib "$ffmpeg" VmHWM) $(kib "$ffmpeg" RssAnon) $f0 $f1 $t0 $t1"
    peer+=" $(grep -o '^frame=[0-9]*' "$work/ffmpeg.progress" | tail -1 | tr -dc '0-9')"
    kill "$ffmpeg"
  fi
}

measure 1
fanout=
for n in "${counts[@]}"; do
  if [ -n "$fanout" ]; then kill -TERM "$fanout"; wait "$fanout" 2>/dev/null || true; fi
  /usr/bin/python3 bench/fanout.py "$mq" real cam0 "$n" > "$work/fanout-$n.log" 2>&1 & fanout=$!; pids+=("$fanout")
  wait_line "$work/fanout-$n.log" '^READY'
  measure $((n + 1))
done

python3 - "$ticks" "$settle" "$width" "$height" "$broker" "$peer" "${results[@]}" <<'PY'
import sys
tck, settle, w, h, broker, peer = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
rows = []
for r in sys.argv[7:]:
    f = r.split()
    n, rss, hwm, anon = int(f[0]), int(f[1]), int(f[2]), int(f[3])
    dt = float(f[7]) - float(f[6])
    cpu = (float(f[5]) - float(f[4])) / tck / dt * 100
    rows.append(dict(n=n, rss=rss, hwm=hwm, anon=anon, cpu=cpu, grow=(rss - int(f[8])) / dt,
                     streams=int(f[9]), ok=int(f[10]), records=int(f[11]), fmin=f[12], fmed=f[13],
                     heap=int(f[14]), free=int(f[15])))
p = peer.split()
prss, phwm, panon = int(p[0]), int(p[1]), int(p[2])
pcpu = (float(p[4]) - float(p[3])) / tck / (float(p[6]) - float(p[5])) * 100
print(f"collector memory per stream: one real agent {w}x{h}@30 x264 -> testkit LL-HLS origin "
      f"(50 ms parts) + simulated devices relaying its traffic; {settle} s per step; {broker} broker")
print(f"{'streams':>8}{'VmRSS MiB':>11}{'VmHWM MiB':>11}{'RssAnon MiB':>13}{'heap MiB':>10}{'free MiB':>10}"
      f"{'+KiB/s':>8}{'CPU %':>8}{'matched':>9}{'records':>9}{'fps min/median':>16}")
for r in rows:
    print(f"{r['n']:>8}{r['rss']/1024:>11.1f}{r['hwm']/1024:>11.1f}{r['anon']/1024:>13.1f}"
          f"{r['heap']/1024:>10.1f}{r['free']/1024:>10.1f}{r['grow']:>8.0f}"
          f"{r['cpu']:>8.1f}{str(r['ok'])+'/'+str(r['streams']):>9}{r['records']:>9}"
          f"{r['fmin']+'/'+r['fmed']:>16}")
print("(heap: held by the program; free: kept by glibc's allocator inside its heap, i.e. fragmentation; "
      "+KiB/s: VmRSS growth over the step's last 10 s; matched: streams whose last summary matched "
      "frames; records: frame records held, all streams)")
base = rows[0]
per = []
for r in rows[1:]:
    k = r["n"] - base["n"]
    per.append(((r["rss"] - base["rss"]) / k, (r["anon"] - base["anon"]) / k, (r["cpu"] - base["cpu"]) / k))
    print(f"per additional stream, 1 -> {r['n']}: {per[-1][0]:.0f} KiB VmRSS, {per[-1][1]:.0f} KiB RssAnon "
          f"({(r['heap'] - base['heap']) / k:.0f} KiB heap held, {(r['free'] - base['free']) / k:.0f} KiB "
          f"free kept), {per[-1][2]:.2f} % of a core")
if len(rows) > 2:
    a, b = rows[-2], rows[-1]
    k = b["n"] - a["n"]
    print(f"per additional stream, {a['n']} -> {b['n']}: {(b['rss'] - a['rss']) / k:.0f} KiB VmRSS, "
          f"{(b['anon'] - a['anon']) / k:.0f} KiB RssAnon, {(b['cpu'] - a['cpu']) / k:.2f} % of a core")
print(f"peer, one ffmpeg -c copy reader of the same URL: VmRSS {prss/1024:.1f} MiB, VmHWM {phwm/1024:.1f} MiB, "
      f"RssAnon {panon/1024:.1f} MiB, {pcpu:.2f} % of a core ({p[7] if len(p) > 7 else '?'} frames read)")
rss, anon, cpu = per[-1]
print(f"ratio collector per stream / ffmpeg per reader (1 -> {rows[-1]['n']}): memory {rss/prss:.3f}x (VmRSS), "
      f"{anon/panon:.3f}x (RssAnon); CPU {cpu/pcpu:.2f}x" if pcpu > 0 else "")
print(f"target: <= 256 KiB per stream; measured {rss:.0f} KiB ({'met' if rss <= 256 else 'NOT met'})")
PY
