#!/usr/bin/env bash
# The README's run command: sets up and runs Glasswatch on this machine.
#
# Starts an origin (MediaMTX when MEDIAMTX_BIN points at one or `mediamtx` is
# on the PATH, else the test origin built on GStreamer's RTSP server), then the
# agent on /dev/video0 or the moving test pattern, and prints the HLS URL.
# Ctrl-C stops everything it started.
#
# Until the collector (with its embedded broker) lands, a local mosquitto on
# 127.0.0.1:$MQTT_PORT takes the agent's MQTT reports.
#
# Environment: RTSP_PORT (8554), HLS_PORT (8888), MQTT_PORT (1883), DEVICE_ID (local),
# SOURCE (auto | test | /dev/videoN), MEDIAMTX_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

RTSP_PORT="${RTSP_PORT:-8554}"
HLS_PORT="${HLS_PORT:-8888}"
MQTT_PORT="${MQTT_PORT:-1883}"
DEVICE_ID="${DEVICE_ID:-local}"
SOURCE="${SOURCE:-auto}"
STREAM_PATH="${DEVICE_ID}-cam0"
RUN_DIR="$PWD/.run"

scripts/install-deps.sh
echo "== building (release)"
cargo build --release --locked -p glasswatch-agent -p glasswatch-testkit --bins

mkdir -p "$RUN_DIR"
pids=()
cleanup() {
  trap - INT TERM EXIT
  echo
  echo "== stopping"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT

mediamtx="${MEDIAMTX_BIN:-$(command -v mediamtx || true)}"
if [ -n "$mediamtx" ] && [ -x "$mediamtx" ]; then
  echo "== origin: MediaMTX ($mediamtx), LL-HLS on :$HLS_PORT"
  sed -e "s/^rtspAddress: .*/rtspAddress: 127.0.0.1:$RTSP_PORT/" \
      -e "s/^hlsAddress: .*/hlsAddress: 127.0.0.1:$HLS_PORT/" mediamtx.yml > "$RUN_DIR/mediamtx.yml"
  "$mediamtx" "$RUN_DIR/mediamtx.yml" > "$RUN_DIR/origin.log" 2>&1 &
  pids+=($!)
else
  echo "== origin: MediaMTX not found (set MEDIAMTX_BIN, or see docs/deployment.md);"
  echo "   using the test origin instead: GStreamer RTSP server (RECORD) writing classic HLS (MPEG-TS, 1 s segments)"
  rm -rf "$RUN_DIR/hls"
  target/release/glasswatch-test-origin --rtsp-port "$RTSP_PORT" --http-port "$HLS_PORT" \
    --dir "$RUN_DIR/hls" --path "$STREAM_PATH" > "$RUN_DIR/origin.log" 2>&1 &
  pids+=($!)
fi

if (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null; then
  echo "== MQTT: a broker already listens on 127.0.0.1:$MQTT_PORT; the agent reports to it"
else
  echo "== MQTT: mosquitto on 127.0.0.1:$MQTT_PORT"
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$MQTT_PORT" > "$RUN_DIR/mosquitto.conf"
  if [ "$(id -u)" = 0 ]; then echo "user root" >> "$RUN_DIR/mosquitto.conf"; fi
  mosquitto -c "$RUN_DIR/mosquitto.conf" > "$RUN_DIR/mosquitto.log" 2>&1 &
  pids+=($!)
fi

for port in "$RTSP_PORT" "$MQTT_PORT"; do
  for _ in $(seq 1 50); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
    sleep 0.1
  done
done

rm -f "$RUN_DIR/frames.jsonl"
cat > "$RUN_DIR/agent.toml" <<TOML
device_id = "$DEVICE_ID"
frame_log = "$RUN_DIR/frames.jsonl"

[mqtt]
url = "mqtt://127.0.0.1:$MQTT_PORT"

[[stream]]
id = "cam0"
source = "$SOURCE"
publish_url = "rtsp://127.0.0.1:$RTSP_PORT/$STREAM_PATH"
hls_url = "http://127.0.0.1:$HLS_PORT/$STREAM_PATH/index.m3u8"
TOML
echo "== agent: $RUN_DIR/agent.toml (log: $RUN_DIR/agent.log, frame records: $RUN_DIR/frames.jsonl)"
target/release/glasswatch-agent --config "$RUN_DIR/agent.toml" > "$RUN_DIR/agent.log" 2>&1 &
pids+=($!)

echo
echo "   RTSP: rtsp://127.0.0.1:$RTSP_PORT/$STREAM_PATH"
echo "   HLS:  http://127.0.0.1:$HLS_PORT/$STREAM_PATH/index.m3u8   (open with ffplay or VLC)"
echo "   MQTT: mosquitto_sub -h 127.0.0.1 -p $MQTT_PORT -t 'glasswatch/v1/devices/#' -v"
echo "   (the collector and its dashboard on http://127.0.0.1:8080 arrive with the collector issue)"
echo
echo "Ctrl-C to stop. Frames published per second:"
last=0
while sleep 1; do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "a process exited; see $RUN_DIR/*.log"; exit 1; fi
  done
  n=$(wc -l < "$RUN_DIR/frames.jsonl" 2>/dev/null || echo 0)
  printf '\r   cam0: %3d fps, %d frames stamped and sent' "$((n - last))" "$n"
  last=$n
done
