#!/usr/bin/env bash
# Benchmark: glasswatch-agent against a bare gst-launch-1.0 pipeline of the
# same elements, run side by side (same origin, same machine, same time).
#
#   bench/agent_vs_gst.sh [seconds]      (default 30 s measured after 5 s warm-up)
#
# Both publish a 1280x720@30 test pattern with the PUB clock overlay, x264
# (zerolatency, ultrafast, GOP 15, 2000 kbps) over RTSP/TCP to the testkit
# origin. Reports CPU (utime+stime over the window) and peak RSS (VmHWM) of
# each, their ratio and difference, and the agent's own measure of the time the
# stamper adds per frame. Targets: CPU <= 1.05x, RSS <= +8 MB, stamper < 0.2 ms.
# AGENT_BIN=path runs another agent build instead of target/release's (to
# compare before and after a change in the same session).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
# OVERLAY=0 compares the two without the burnt-in clock (the agent redraws it every frame).
overlay="${OVERLAY:-1}"
. bench/lib.sh
agent_bin="${AGENT_BIN:-target/release/glasswatch-agent}"


rtsp=$(free_port); http=$(free_port)
target/release/glasswatch-test-origin --rtsp-port "$rtsp" --http-port "$http" --dir "$work/hls" \
  --path bench-agent --path bench-gst > "$work/origin.log" 2>&1 &
pids+=($!)
wait_port "$rtsp"

cat > "$work/agent.toml" <<TOML
device_id = "bench"
[[stream]]
id = "agent"
source = "test"
width = 1280
height = 720
fps = 30
gop = 15
bitrate_kbps = 2000
encoder = "x264"
overlay = $( [ "$overlay" = 1 ] && echo true || echo false )
publish_url = "rtsp://127.0.0.1:$rtsp/bench-agent"
TOML
"$agent_bin" --config "$work/agent.toml" > "$work/agent.log" 2>&1 &
agent=$!; pids+=($agent)

overlay_elems=()
if [ "$overlay" = 1 ]; then
  overlay_elems=(! textoverlay "text=PUB 00:00:00.000" halignment=left valignment=top shaded-background=true
    color=0xff0000ff "font-desc=Sans Bold 30")
fi
gst-launch-1.0 -q videotestsrc is-live=true pattern=ball \
  ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 \
  "${overlay_elems[@]}" \
  ! videoconvert ! video/x-raw,format=I420 \
  ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=15 bitrate=2000 bframes=0 b-adapt=false \
  ! video/x-h264 ! h264parse config-interval=-1 ! video/x-h264,stream-format=byte-stream,alignment=au \
  ! queue leaky=downstream max-size-buffers=0 max-size-bytes=0 max-size-time=2000000000 \
  ! rtspclientsink location="rtsp://127.0.0.1:$rtsp/bench-gst" protocols=tcp latency=0 > "$work/gst.log" 2>&1 &
gst=$!; pids+=($gst)

sleep 5
a0=$(cpu $agent); g0=$(cpu $gst); t0=$(date +%s.%N)
sleep "$secs"
a1=$(cpu $agent); g1=$(cpu $gst); t1=$(date +%s.%N)
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
ahwm=$(hwm $agent); ghwm=$(hwm $gst)
kill -TERM $agent; wait $agent 2>/dev/null || true
stamper=$(grep -o 'stamper_mean_us="[0-9.]*"' "$work/agent.log" | tail -1 | tr -dc '0-9.')
stamped=$(grep -o ' stamped=[0-9]*' "$work/agent.log" | tail -1 | tr -dc '0-9')

python3 - "$a0" "$a1" "$g0" "$g1" "$t0" "$t1" "$ticks" "$ahwm" "$ghwm" "${stamper:-nan}" "${stamped:-0}" <<'PY'
import sys
a0,a1,g0,g1,t0,t1,tck,ah,gh,st,n = sys.argv[1:]
wall = float(t1) - float(t0)
acpu = (float(a1) - float(a0)) / float(tck) / wall * 100
gcpu = (float(g1) - float(g0)) / float(tck) / wall * 100
print(f"window {wall:.1f} s, 1280x720@30 x264 test pattern, side by side, overlay {'on' if int(__import__('os').environ.get('OVERLAY','1')) else 'off'}")
print(f"{'':24}{'CPU %':>8}{'peak RSS MB':>14}")
print(f"{'glasswatch-agent':24}{acpu:8.1f}{int(ah)/1024:14.1f}")
print(f"{'gst-launch-1.0 (peer)':24}{gcpu:8.1f}{int(gh)/1024:14.1f}")
print(f"CPU ratio agent/gst: {acpu/gcpu:.3f}x (target <= 1.05x)")
print(f"RSS difference: {(int(ah)-int(gh))/1024:+.1f} MB (target <= +8 MB)")
print(f"stamper: mean {st} us added per frame over {n} frames (target < 200 us)")
PY
