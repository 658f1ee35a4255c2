#!/usr/bin/env bash
# Benchmark: frames the collector parses per second on one core, from the real
# MediaMTX v1.16.2 LL-HLS parts and MPEG-TS segments in collector/testdata,
# against ffmpeg's demuxer (`ffmpeg -i FILE -map 0:v -c copy -f null -`) over
# the same bytes in the same run.
#
#   bench/collector_parse.sh [seconds]    (default 3 s per measure)
#
# Runs collector/benches/parse.rs (cargo bench, release profile; its top
# comment says how each side is timed). Prints frames per CPU-second of both,
# per container, the collector's throughput and the ratio collector/ffmpeg.
# It asserts, before timing, that every recorded frame carries its stamp and a
# fingerprint. Target: >= 30,000 frames/s per core (1,000 streams at 30 fps).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-3}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! cargo bench --locked -p glasswatch-collector --bench parse -- "$secs" 2> "$log"; then
  cat "$log" >&2
  exit 1
fi
