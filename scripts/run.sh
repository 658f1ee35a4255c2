#!/usr/bin/env bash
# The README's run command: sets up and runs Glasswatch on this machine.
#
# Starts an origin (MediaMTX when MEDIAMTX_BIN points at one or `mediamtx` is
# on the PATH, else the pinned release fetched and verified into the run
# folder by deploy/install-mediamtx.sh; where none can be had, the testkit
# LL-HLS origin built on GStreamer's RTSP server, labelled as a development
# origin), the collector with its embedded MQTT broker, and the agent on
# /dev/video0 or the moving test pattern; then prints one line per stream and
# second (frames, glass-to-HLS p50/p95, fps, drops) until Ctrl-C, which stops
# everything it started.
#
#   scripts/run.sh                 run until Ctrl-C
#   scripts/run.sh --for SECONDS   run headless for SECONDS, then stop; exit 0
#                                  only if the API reported a latency figure
#                                  for the agent's stream (RUN_FOR=SECONDS too)
#
# Environment: RTSP_PORT (8554), HLS_PORT (8888), MQTT_PORT (1883), HTTP_PORT (8080),
# DEVICE_ID (local), SOURCE (auto | test | /dev/videoN), MEDIAMTX_BIN,
# RUN_DIR (.run: configs, logs, history, the admin password). For the test
# suite, which has installed and built everything already: SKIP_SETUP=1 skips
# the install and the release build and BIN_DIR names the binaries' folder
# (target/release by default).
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_FOR="${RUN_FOR:-}"
if [ "${1:-}" = "--for" ]; then
  RUN_FOR="${2:-}"
  shift 2 || true
fi
if [ -n "$RUN_FOR" ] && ! [[ "$RUN_FOR" =~ ^[1-9][0-9]*$ ]]; then
  echo "--for takes a number of seconds, not '$RUN_FOR'" >&2
  exit 2
fi
if [ $# -gt 0 ]; then
  echo "usage: scripts/run.sh [--for SECONDS]" >&2
  exit 2
fi

RTSP_PORT="${RTSP_PORT:-8554}"
HLS_PORT="${HLS_PORT:-8888}"
MQTT_PORT="${MQTT_PORT:-1883}"
HTTP_PORT="${HTTP_PORT:-8080}"
DEVICE_ID="${DEVICE_ID:-local}"
SOURCE="${SOURCE:-auto}"
STREAM_PATH="${DEVICE_ID}-cam0"
RUN_DIR="$(realpath -m "${RUN_DIR:-.run}")"
BIN_DIR="${BIN_DIR:-target/release}"

if [ "${SKIP_SETUP:-0}" != 1 ]; then
  scripts/install-deps.sh
  echo "== building (release)"
  cargo build --release --locked -p glasswatch-agent -p glasswatch-collector -p glasswatch-testkit --bins
fi

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
if [ -z "$mediamtx" ] && [ -x "$RUN_DIR/mediamtx/bin/mediamtx" ]; then
  mediamtx="$RUN_DIR/mediamtx/bin/mediamtx"
fi
if [ -z "$mediamtx" ] && [ "${SKIP_SETUP:-0}" != 1 ]; then
  # The pinned release, checksum verified, into the run folder (no system
  # install, no service): deploy/install-mediamtx.sh says why when it cannot.
  echo "== origin: fetching the pinned MediaMTX release into $RUN_DIR/mediamtx"
  if deploy/install-mediamtx.sh --prefix "$RUN_DIR/mediamtx" --config-dir "$RUN_DIR/mediamtx" \
       --unit-dir "$RUN_DIR/mediamtx" --no-start; then
    mediamtx="$RUN_DIR/mediamtx/bin/mediamtx"
  fi
fi
if [ -n "$mediamtx" ] && [ -x "$mediamtx" ]; then
  echo "== origin: MediaMTX ($mediamtx), LL-HLS on :$HLS_PORT"
  sed -e "s/^rtspAddress: .*/rtspAddress: 127.0.0.1:$RTSP_PORT/" \
      -e "s/^hlsAddress: .*/hlsAddress: 127.0.0.1:$HLS_PORT/" mediamtx.yml > "$RUN_DIR/mediamtx.yml"
  "$mediamtx" "$RUN_DIR/mediamtx.yml" > "$RUN_DIR/origin.log" 2>&1 &
  pids+=($!)
else
  echo "== origin: MediaMTX not found (set MEDIAMTX_BIN, or see docs/deployment.md);"
  echo "   using the testkit LL-HLS origin instead, a development origin: GStreamer RTSP server"
  echo "   (RECORD) serving fMP4 parts as MediaMTX does (50 ms parts, blocking reload) on :$HLS_PORT"
  rm -rf "$RUN_DIR/hls"
  "$BIN_DIR/glasswatch-test-origin" --rtsp-port "$RTSP_PORT" --http-port "$HLS_PORT" \
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
admin_hash=$("$BIN_DIR/glasswatch-collector" hash-password < "$RUN_DIR/admin-password")
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
"$BIN_DIR/glasswatch-collector" --config "$RUN_DIR/collector.toml" --live \
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
"$BIN_DIR/glasswatch-agent" --config "$RUN_DIR/agent.toml" > "$RUN_DIR/agent.log" 2>&1 &
pids+=($!)

echo
echo "   RTSP:      rtsp://127.0.0.1:$RTSP_PORT/$STREAM_PATH"
echo "   HLS:       http://127.0.0.1:$HLS_PORT/$STREAM_PATH/index.m3u8   (open with ffplay or VLC)"
echo "   Dashboard: http://127.0.0.1:$HTTP_PORT/   (log in as admin, password in $RUN_DIR/admin-password: $(cat "$RUN_DIR/admin-password"))"
echo "   API:       http://127.0.0.1:$HTTP_PORT/api/v1/streams   (a token for scripts: $BIN_DIR/glasswatch-collector -c $RUN_DIR/collector.toml token create NAME)"
echo "   History:   $RUN_DIR/glasswatch.db (SQLite; e.g. http://127.0.0.1:$HTTP_PORT/api/v1/streams/$DEVICE_ID/cam0/series)"
echo "   MQTT:      mosquitto_sub -h 127.0.0.1 -p $MQTT_PORT -t 'glasswatch/v1/devices/#' -v"
echo
if [ -n "$RUN_FOR" ]; then
  # Headless: ask the API (with a token made for this run) until it reports
  # the agent's stream with a latency figure, for RUN_FOR seconds at most.
  "$BIN_DIR/glasswatch-collector" -c "$RUN_DIR/collector.toml" token revoke run-sh >/dev/null 2>&1 || true
  token=$("$BIN_DIR/glasswatch-collector" -c "$RUN_DIR/collector.toml" token create run-sh | tail -n 1)
  end=$(( $(date +%s) + RUN_FOR ))
  while [ "$(date +%s)" -lt "$end" ]; do
    sleep 1
    figure=$(curl -sf --max-time 5 -H "Authorization: Bearer $token" \
      "http://127.0.0.1:$HTTP_PORT/api/v1/streams/$DEVICE_ID/cam0" | python3 -c '
import json, sys
l = (json.load(sys.stdin).get("last") or {})
if l.get("frames") and l.get("p50_ms") is not None:
    print("%s/cam0: %d frames, glass-to-HLS p50 %.0f ms p95 %.0f ms" % (sys.argv[1], l["frames"], l["p50_ms"], l["p95_ms"]))
' "$DEVICE_ID" 2>/dev/null || true)
    if [ -n "$figure" ]; then
      echo "== the API reports latency after $(( RUN_FOR - (end - $(date +%s)) )) s: $figure"
      exit 0
    fi
  done
  echo "== no latency figure on the API within $RUN_FOR s; logs in $RUN_DIR" >&2
  tail -n 5 "$RUN_DIR/collector.log" "$RUN_DIR/agent.log" "$RUN_DIR/origin.log" >&2 || true
  exit 1
fi

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
