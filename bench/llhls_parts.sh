#!/usr/bin/env bash
# Benchmark: what each LL-HLS part duration and GOP costs, on the testkit
# LL-HLS origin (which cuts parts as MediaMTX 1.16.2 does) and on MediaMTX
# when MEDIAMTX_BIN is set, one configuration after the other.
#
#   bench/llhls_parts.sh [seconds]   (default 25 s per case, the last 15 s summarised)
#
# Per case: the agent publishes a 1280x720@30 x264 test pattern (2000 kbps,
# zerolatency) with GOP 15 or 30 over RTSP; the origin is asked for parts of
# 1, 2 or 3 frames (hlsPartDuration 33, 66, 99 ms; 500 ms segments) and cuts
# what MediaMTX's rule makes of them ("cut", read from PART-TARGET: a part
# must be at least one frame long and exceed 85 % of the whole frames it
# rounds up to, so 33 ms, just under a frame at 30 fps, becomes 2 frames;
# "(coll.)" is the collector's own count of its requests); one collector
# (embedded broker) reads it back over LL-HLS through a byte-counting TCP
# relay, which counts the viewer's HTTP requests (each GET ends its header
# block with an empty line and has no body). Printed per case: the median
# over the per-second windows of glass-to-HLS p50 and p95, the viewer's
# requests per second, and the origin's CPU (utime+stime over the window,
# % of one core). The relay adds the same tens of µs to every case.
# AGENT_BIN=path runs another agent build instead of target/release's.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-25}"
window="${WINDOW_S:-15}"
. bench/lib.sh
agent_bin="${AGENT_BIN:-target/release/glasswatch-agent}"
cargo build --release --locked -p glasswatch-collector --bins >/dev/null


# A TCP relay 127.0.0.1:$1 -> 127.0.0.1:$2 that writes the number of HTTP
# requests it has relayed to $3 every 250 ms. Run in the background, its
# subshell becomes python (exec), so the PID the caller kills is the relay's.
relay() {
  exec python3 - "$@" <<'PY'
import asyncio, os, sys
listen, upstream, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
count = 0
async def pipe(r, w, counting):
    global count
    tail = b""
    try:
        while data := await r.read(65536):
            if counting:
                buf = tail + data
                count += buf.count(b"\r\n\r\n")
                tail = buf[-3:]
            w.write(data)
            await w.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        w.close()
async def handle(cr, cw):
    try:
        ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
    except OSError:
        cw.close()
        return
    await asyncio.gather(pipe(cr, uw, True), pipe(ur, cw, False))
async def report():
    while True:
        with open(out + ".tmp", "w") as f:
            f.write(str(count))
        os.replace(out + ".tmp", out)  # never read half-written
        await asyncio.sleep(0.25)
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    asyncio.create_task(report())
    async with server:
        await server.serve_forever()
asyncio.run(main())
PY
}

# One case: the origin already started as $origin with RTSP on $2 and HTTP on $3.
run_case() { # name rtsp_port hls_port gop hls_path
  local name=$1 rtsp=$2 http=$3 gop=$4 hls_path=$5 mq api rport collector agent relay_pid
  mq=$(free_port); api=$(free_port); rport=$(free_port)
  relay "$rport" "$http" "$work/$name.requests" & relay_pid=$!; pids+=("$relay_pid")
  printf '[mqtt]\nlisten = "127.0.0.1:%s"\n[http]\nlisten = "127.0.0.1:%s"\nauth = "none"\n' "$mq" "$api" \
    > "$work/$name-collector.toml"
  target/release/glasswatch-collector --config "$work/$name-collector.toml" \
    > "$work/$name-collector.out" 2> "$work/$name-collector.log" & collector=$!; pids+=("$collector")
  wait_line "$work/$name-collector.out" '^READY'
  wait_port "$rtsp"; wait_port "$rport"
  agent_toml bench "$mq" "rtsp://127.0.0.1:$rtsp/bench-cam0" "http://127.0.0.1:$rport/$hls_path" "$gop" \
    > "$work/$name-agent.toml"
  "$agent_bin" --config "$work/$name-agent.toml" > "$work/$name-agent.log" 2>&1 & agent=$!; pids+=("$agent")
  sleep $((secs - window))
  local c0 r0 t0 c1 r1 t1
  c0=$(cpu "$origin"); r0=$(cat "$work/$name.requests" 2>/dev/null || echo 0); t0=$(date +%s.%N)
  for _ in $(seq 1 "$window"); do
    curl -sf "http://127.0.0.1:$api/api/v1/streams" >> "$work/$name.jsonl" || true
    echo >> "$work/$name.jsonl"
    sleep 1
  done
  c1=$(cpu "$origin"); r1=$(cat "$work/$name.requests" 2>/dev/null || echo 0); t1=$(date +%s.%N)
  echo "$c0 $c1 $r0 $r1 $t0 $t1 $ticks" > "$work/$name.counts"
  # The part duration the origin actually cuts (MediaMTX's rounding), from its media playlist.
  curl -sfL "http://127.0.0.1:$http/${hls_path%/*}/video1_stream.m3u8" \
    | grep -o 'PART-TARGET=[0-9.]*' | head -1 | cut -d= -f2 > "$work/$name.part" || true
  kill -TERM "$agent" "$collector" "$origin" "$relay_pid" 2>/dev/null || true
  wait "$agent" "$collector" "$origin" "$relay_pid" 2>/dev/null || true
}

names=()
for gop in 15 30; do
  for frames in 1 2 3; do
    part_ms=$((frames * 33))
    name="testkit-f$frames-g$gop"
    rtsp=$(free_port); http=$(free_port)
    target/release/glasswatch-test-origin --rtsp-port "$rtsp" --http-port "$http" --dir "$work/$name-hls" \
      --path bench-cam0 --format llhls --part-ms "$part_ms" --segment-ms 500 --target-duration 1 \
      > "$work/$name-origin.log" 2>&1 & origin=$!; pids+=("$origin")
    run_case "$name" "$rtsp" "$http" "$gop" bench-cam0/index.m3u8
    names+=("$name")
    if [ -n "${MEDIAMTX_BIN:-}" ]; then
      name="mediamtx-f$frames-g$gop"
      rtsp=$(free_port); http=$(free_port)
      sed -e "s/^rtspAddress: .*/rtspAddress: 127.0.0.1:$rtsp/" \
          -e "s/^hlsAddress: .*/hlsAddress: 127.0.0.1:$http/" \
          -e "s/^hlsPartDuration: .*/hlsPartDuration: ${part_ms}ms/" \
          -e "s/^hlsSegmentDuration: .*/hlsSegmentDuration: 500ms/" mediamtx.yml > "$work/$name.yml"
      "$MEDIAMTX_BIN" "$work/$name.yml" > "$work/$name-origin.log" 2>&1 & origin=$!; pids+=("$origin")
      run_case "$name" "$rtsp" "$http" "$gop" bench-cam0/index.m3u8
      names+=("$name")
    fi
  done
done

python3 - "$work" "$secs" "$window" "${names[@]}" <<'PY'
import json, os, statistics, sys
work, secs, window, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
print(f"LL-HLS part duration x GOP: agent 1280x720@30 x264 -> origin -> one collector; "
      f"{secs} s per case, the last {window} s summarised")
print(f"{'origin':<10}{'asked':>7}{'cut':>10}{'GOP':>5}{'windows':>8}{'p50 ms':>8}{'p95 ms':>8}{'orig+dlv':>9}"
      f"{'req/s':>7}{'(coll.)':>8}{'origin CPU %':>13}{'drop':>6}")
for name in names:
    kind, f, g = name.split("-")
    frames, gop = int(f[1:]), int(g[1:])
    wins = {}
    for line in open(os.path.join(work, name + ".jsonl")):
        if not line.strip():
            continue
        for s in json.loads(line)["streams"]:
            last = s.get("last")
            if s["device"] == "bench" and last and last["frames"] > 0:
                wins[last["window_start_us"]] = last
    w = list(wins.values())
    try:
        c0, c1, r0, r1, t0, t1, tck = open(os.path.join(work, name + ".counts")).read().split()
        wall = float(t1) - float(t0)
        cpu = (float(c1) - float(c0)) / float(tck) / wall * 100
        rps = (int(r1) - int(r0)) / wall
    except (OSError, ValueError):
        cpu = rps = float("nan")
    try:
        target = float(open(os.path.join(work, name + ".part")).read().strip())
        cut = f"{round(target * 30)} f"
    except (OSError, ValueError):
        cut = "?"
    asked = f"{frames * 33} ms"
    if not w:
        print(f"{kind:<10}{asked:>7}{cut:>10}{gop:>5}  no matched frames (see the logs)")
        continue
    coll = sum(x["hls"]["playlist_requests"] + x["hls"]["media_requests"] for x in w) / len(w)
    med = lambda key: statistics.median(x[key] for x in w if x[key] is not None)
    od = [(x["breakdown"]["origin_delivery_ms"], x["frames"]) for x in w
          if x["breakdown"]["origin_delivery_ms"] is not None]
    odm = sum(a * n for a, n in od) / max(1, sum(n for _, n in od))
    print(f"{kind:<10}{asked:>7}{cut:>10}{gop:>5}{len(w):>8}{med('p50_ms'):>8.1f}{med('p95_ms'):>8.1f}{odm:>9.1f}"
          f"{rps:>7.1f}{coll:>8.1f}{cpu:>13.1f}{sum(x['dropped'] for x in w):>6}")
if not os.environ.get("MEDIAMTX_BIN"):
    print("MediaMTX: skipped (set MEDIAMTX_BIN to a mediamtx binary)")
PY
