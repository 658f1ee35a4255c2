#!/usr/bin/env bash
# The README's run command: sets up and runs Glasswatch on this machine.
#
# Starts an origin (MediaMTX when MEDIAMTX_BIN points at one or `mediamtx` is
# on the PATH, else the testkit LL-HLS origin built on GStreamer's RTSP
# server), the collector with its embedded MQTT broker, and the agent on
# /dev/video0 or the moving test pattern; then prints one line per stream and
# second (frames, glass-to-HLS p50/p95, fps, drops) until Ctrl-C, which stops
# everything it started.
#
# Environment: RTSP_PORT (8554), HLS_PORT (8888), MQTT_PORT (1883), HTTP_PORT (8080),
# DEVICE_ID (local), SOURCE (auto | test | /dev/videoN), MEDIAMTX_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

RTSP_PORT="${RTSP_PORT:-8554}"
HLS_PORT="${HLS_PORT:-8888}"
MQTT_PORT="${MQTT_PORT:-1883}"
HTTP_PORT="${HTTP_PORT:-8080}"
DEVICE_ID="${DEVICE_ID:-local}"
SOURCE="${SOURCE:-auto}"
STREAM_PATH="${DEVICE_ID}-cam0"
RUN_DIR="$PWD/.run"

scripts/install-deps.sh
echo "== building (release)"
cargo build --release --locked -p glasswatch-agent -p glasswatch-collector -p glasswatch-testkit --bins

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
  echo "   using the testkit LL-HLS origin instead: GStreamer RTSP server (RECORD) serving"
  echo "   fMP4 parts as MediaMTX does (50 ms parts, blocking reload) on :$HLS_PORT"
  rm -rf "$RUN_DIR/hls"
  target/release/glasswatch-test-origin --rtsp-port "$RTSP_PORT" --http-port "$HLS_PORT" \
    --dir "$RUN_DIR/hls" --path "$STREAM_PATH" --format llhls --part-ms 50 --segment-ms 500 \
    > "$RUN_DIR/origin.log" 2>&1 &
  pids+=($!)
fi

if (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null; then
  echo "== MQTT: a broker already listens on 127.0.0.1:$MQTT_PORT; the collector and the agent use it"
  mqtt_table="url = \"mqtt://127.0.0.1:$MQTT_PORT\""
else
  echo "== MQTT: the collector's embedded broker on 127.0.0.1:$MQTT_PORT"
  mqtt_table="listen = \"127.0.0.1:$MQTT_PORT\""
fi
# The dashboard asks for a login: one admin user, its password made once
# and kept in $RUN_DIR/admin-password (readable by you only).
if [ ! -s "$RUN_DIR/admin-password" ]; then
  (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$RUN_DIR/admin-password")
fi
admin_hash=$(target/release/glasswatch-collector hash-password < "$RUN_DIR/admin-password")
cat > "$RUN_DIR/collector.toml" <<TOML
[mqtt]
$mqtt_table
[http]
listen = "127.0.0.1:$HTTP_PORT"

[[user]]
name = "admin"
role = "admin"
password_hash = "$admin_hash"
TOML
echo "== collector: $RUN_DIR/collector.toml (log: $RUN_DIR/collector.log)"
target/release/glasswatch-collector --config "$RUN_DIR/collector.toml" --live \
  2> "$RUN_DIR/collector.log" > "$RUN_DIR/live.log" &
pids+=($!)

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
echo "   RTSP:      rtsp://127.0.0.1:$RTSP_PORT/$STREAM_PATH"
echo "   HLS:       http://127.0.0.1:$HLS_PORT/$STREAM_PATH/index.m3u8   (open with ffplay or VLC)"
echo "   Dashboard: http://127.0.0.1:$HTTP_PORT/   (log in as admin, password in $RUN_DIR/admin-password: $(cat "$RUN_DIR/admin-password"))"
echo "   API:       http://127.0.0.1:$HTTP_PORT/api/v1/streams   (a token for scripts: target/release/glasswatch-collector -c $RUN_DIR/collector.toml token create NAME)"
echo "   History:   $RUN_DIR/glasswatch.db (SQLite; e.g. http://127.0.0.1:$HTTP_PORT/api/v1/streams/$DEVICE_ID/cam0/series)"
echo "   MQTT:      mosquitto_sub -h 127.0.0.1 -p $MQTT_PORT -t 'glasswatch/v1/devices/#' -v"
echo
echo "Ctrl-C to stop. One line per stream and second (glass-to-HLS = capture to fully received over HLS):"
tail -n +1 -f "$RUN_DIR/live.log" | grep --line-buffered -v '^READY ' &
tail_pid=$!
trap 'kill $tail_pid 2>/dev/null; cleanup; exit 0' INT TERM
while sleep 1; do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      kill "$tail_pid" 2>/dev/null
      echo "a process exited; see $RUN_DIR/*.log"
      exit 1
    fi
  done
done
