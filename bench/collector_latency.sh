#!/usr/bin/env bash
# Benchmark: glass-to-HLS latency as the collector measures it, on loopback,
# for each kind of origin, one after the other.
#
#   bench/collector_latency.sh [seconds]   (default 25 s per origin, the last 15 s summarised)
#
# Per origin: the agent publishes a 1280x720@30 x264 test pattern (GOP 15,
# 2000 kbps, zerolatency) over RTSP, the collector (embedded broker) reads it
# back over HLS and publishes per-second summaries. The summaries of the last
# WINDOW_S (15) seconds are read from GET /api/v1/streams once a second;
# printed are the median over those windows of p50 and of p95, and the mean
# breakdown (encode, publish, origin+delivery) weighted by matched frames.
# Origins:
#   - testkit classic HLS, MPEG-TS segments (--format ts, 1 s target),
#     playlist reloaded every 100 ms;
#   - testkit LL-HLS (--format llhls --part-ms 50 --segment-ms 500, MediaMTX's
#     fixture settings), blocking reloads;
#   - MediaMTX with the repo's mediamtx.yml (ports rewritten as scripts/run.sh
#     does) when MEDIAMTX_BIN is set; "skipped" otherwise.
# AGENT_BIN=path runs another agent build instead of target/release's (to
# compare before and after a change in the same session).
# The floor to compare with: in the real MediaMTX capture (collector/testdata)
# a part is fully received 37-49 ms after its last frame was captured.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-25}"
window="${WINDOW_S:-15}"
. bench/lib.sh
agent_bin="${AGENT_BIN:-target/release/glasswatch-agent}"
cargo build --release --locked -p glasswatch-collector --bins >/dev/null


# Runs one origin (the command after the name, started by the caller as $origin)
# with a collector and an agent, and appends the summaries to $work/NAME.jsonl.
run_case() { # name rtsp_port hls_port
  local name=$1 rtsp=$2 http=$3 mq api collector agent
  mq=$(free_port); api=$(free_port)
  printf '[mqtt]\nlisten = "127.0.0.1:%s"\n[http]\nlisten = "127.0.0.1:%s"\nauth = "none"\n' "$mq" "$api" \
    > "$work/$name-collector.toml"
  target/release/glasswatch-collector --config "$work/$name-collector.toml" \
    > "$work/$name-collector.out" 2> "$work/$name-collector.log" & collector=$!; pids+=("$collector")
  wait_line "$work/$name-collector.out" '^READY'
  wait_port "$rtsp"
  agent_toml bench "$mq" "rtsp://127.0.0.1:$rtsp/bench-cam0" "http://127.0.0.1:$http/bench-cam0/index.m3u8" \
    > "$work/$name-agent.toml"
  "$agent_bin" --config "$work/$name-agent.toml" > "$work/$name-agent.log" 2>&1 &
  agent=$!; pids+=("$agent")
  sleep $((secs - window))
  for _ in $(seq 1 "$window"); do
    curl -sf "http://127.0.0.1:$api/api/v1/streams" >> "$work/$name.jsonl" || true
    echo >> "$work/$name.jsonl"
    sleep 1
  done
  kill -TERM "$agent" "$collector" "$origin" 2>/dev/null || true
  wait "$agent" "$collector" "$origin" 2>/dev/null || true
}

# The testkit origin in one format (extra flags after the name).
testkit_case() { # name flags...
  local name=$1 rtsp http; shift
  rtsp=$(free_port); http=$(free_port)
  target/release/glasswatch-test-origin --rtsp-port "$rtsp" --http-port "$http" --dir "$work/$name-hls" \
    --path bench-cam0 "$@" > "$work/$name-origin.log" 2>&1 & origin=$!; pids+=("$origin")
  run_case "$name" "$rtsp" "$http"
}

names=()
testkit_case testkit-ts --format ts --target-duration 1 --segment-ms 1000
names+=(testkit-ts)
testkit_case testkit-llhls --format llhls --part-ms 50 --segment-ms 500 --target-duration 1
names+=(testkit-llhls)
if [ -n "${MEDIAMTX_BIN:-}" ]; then
  rtsp=$(free_port); http=$(free_port)
  sed -e "s/^rtspAddress: .*/rtspAddress: 127.0.0.1:$rtsp/" \
      -e "s/^hlsAddress: .*/hlsAddress: 127.0.0.1:$http/" mediamtx.yml > "$work/mediamtx.yml"
  "$MEDIAMTX_BIN" "$work/mediamtx.yml" > "$work/mediamtx-origin.log" 2>&1 & origin=$!; pids+=("$origin")
  run_case mediamtx "$rtsp" "$http"
  names+=(mediamtx)
fi

python3 - "$work" "$secs" "$window" "${names[@]}" <<'PY'
import json, os, statistics, sys
work, secs, window, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
label = {"testkit-ts": "testkit classic HLS, TS",
         "testkit-llhls": "testkit LL-HLS, 50 ms parts",
         "mediamtx": "MediaMTX (mediamtx.yml)"}
print(f"glass-to-HLS on loopback: agent 1280x720@30 x264 GOP 15 -> origin -> collector; "
      f"{secs} s per origin, summaries of the last {window} s")
print(f"{'origin':<30}{'windows':>8}{'frames':>8}{'p50 ms':>8}{'p95 ms':>8}{'encode':>8}{'publish':>8}"
      f"{'orig+dlv':>9}{'drop':>6}{'unm':>5}{'+/- ms':>7}  read as")
for name in names:
    wins = {}
    for line in open(os.path.join(work, name + ".jsonl")):
        if not line.strip():
            continue
        for s in json.loads(line)["streams"]:
            last = s.get("last")
            if s["device"] == "bench" and last and last["frames"] > 0:
                wins[last["window_start_us"]] = last
    w = list(wins.values())
    if not w:
        print(f"{label[name]:<30}  no matched frames (see the logs)")
        continue
    frames = sum(x["frames"] for x in w)
    def mean(key):
        v = [(x["breakdown"][key], x["frames"]) for x in w if x["breakdown"][key] is not None]
        return sum(a * n for a, n in v) / max(1, sum(n for _, n in v))
    med = lambda key: statistics.median(x[key] for x in w if x[key] is not None)
    unc = statistics.median(x["clock"]["uncertainty_ms"] for x in w)
    h = w[-1]["hls"]
    print(f"{label[name]:<30}{len(w):>8}{frames:>8}{med('p50_ms'):>8.1f}{med('p95_ms'):>8.1f}"
          f"{mean('encode_ms'):>8.1f}{mean('publish_ms'):>8.1f}{mean('origin_delivery_ms'):>9.1f}"
          f"{sum(x['dropped'] for x in w):>6}{sum(x['unmatched'] for x in w):>5}{unc:>7.1f}"
          f"  {h['mode']}/{h['container']}")
if "mediamtx" not in names:
    print(f"{'MediaMTX':<30}  skipped (set MEDIAMTX_BIN to a mediamtx binary)")
print("floor: real MediaMTX on loopback (collector/testdata capture) has a part fully received "
      "37-49 ms after its last frame was captured")
PY
