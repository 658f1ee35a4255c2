#!/usr/bin/env bash
# Benchmark: the cost of MQTT reporting at 30 fps, measured side by side.
#
#   bench/mqtt_overhead.sh [seconds]     (default 30 s after 5 s warm-up)
#
# Two agents publish the same 1280x720@30 x264 test pattern to the testkit
# origin at the same time, one with MQTT reporting to a local mosquitto and
# one with `[mqtt] enabled = false`. Reports each one's CPU, the ratio, the
# bytes per frame record on the wire (JSON payload and MQTT framing), and the
# time from a frame's sent_us to its record reaching a subscriber on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-30}"
. bench/lib.sh


mq=$(free_port); rtsp=$(free_port); http=$(free_port)
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$mq" > "$work/mosquitto.conf"
[ "$(id -u)" = 0 ] && echo "user root" >> "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 & pids+=($!)
target/release/glasswatch-test-origin --rtsp-port "$rtsp" --http-port "$http" --dir "$work/hls" \
  --path b-on --path b-off > "$work/origin.log" 2>&1 & pids+=($!)
wait_port "$mq"; wait_port "$rtsp"

agent_conf() { # device enabled
  cat <<TOML
device_id = "$1"
[mqtt]
enabled = $2
url = "mqtt://127.0.0.1:$mq"
[[stream]]
id = "cam0"
source = "test"
width = 1280
height = 720
fps = 30
encoder = "x264"
publish_url = "rtsp://127.0.0.1:$rtsp/$1"
TOML
}
agent_conf b-on true > "$work/on.toml"; agent_conf b-off false > "$work/off.toml"
target/release/glasswatch-agent --config "$work/on.toml" > "$work/on.log" 2>&1 & on=$!; pids+=($on)
target/release/glasswatch-agent --config "$work/off.toml" > "$work/off.log" 2>&1 & off=$!; pids+=($off)

/usr/bin/python3 - "$mq" "$secs" > "$work/sub.txt" <<'PY' & sub=$!; pids+=($sub)
import json, sys, time
import paho.mqtt.client as mqtt
port, secs = int(sys.argv[1]), float(sys.argv[2])
lat, sizes, counts = [], [], []
def on_message(c, u, m):
    now = time.time_ns() // 1000
    b = json.loads(m.payload)
    sizes.append(len(m.payload) + len(m.topic) + 2 + 2 + 5)  # payload, topic + length, packet id, fixed header
    counts.append(len(b["frames"]))
    lat.extend(now - f["sent_us"] for f in b["frames"])
kw = {"callback_api_version": mqtt.CallbackAPIVersion.VERSION2} if hasattr(mqtt, "CallbackAPIVersion") else {}
c = mqtt.Client(**kw)
c.on_message = on_message
c.connect("127.0.0.1", port)
c.subscribe("glasswatch/v1/devices/b-on/streams/cam0/frames", qos=1)
c.loop_start(); time.sleep(secs + 5); c.loop_stop()
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] / 1000
print(f"{sum(counts)} records in {len(counts)} batches; {sum(sizes)/max(1,sum(counts)):.1f} bytes per record on the wire "
      f"(JSON payload and MQTT framing, {sum(counts)/max(1,len(counts)):.1f} records per batch)")
print(f"sent_us -> subscriber: p50 {pct(0.5):.1f} ms, p95 {pct(0.95):.1f} ms, max {lat[-1]/1000:.1f} ms")
PY

sleep 5
a0=$(cpu $on); b0=$(cpu $off); t0=$(date +%s.%N)
sleep "$secs"
a1=$(cpu $on); b1=$(cpu $off); t1=$(date +%s.%N)
wait $sub || true
python3 - "$a0" "$a1" "$b0" "$b1" "$t0" "$t1" "$ticks" <<'PY'
import sys
a0,a1,b0,b1,t0,t1,tck = map(float, sys.argv[1:])
w = t1 - t0
on, off = (a1-a0)/tck/w*100, (b1-b0)/tck/w*100
print(f"window {w:.1f} s, 1280x720@30 x264, side by side")
print(f"agent with MQTT:    {on:6.1f} % CPU")
print(f"agent without MQTT: {off:6.1f} % CPU")
print(f"ratio on/off: {on/off:.3f}x ({on-off:+.2f} points of one core)")
PY
cat "$work/sub.txt"
