#!/usr/bin/env bash
# Does the test suite hold on a busy machine? Runs the README's test command
# (scripts/test.sh) RUNS times in a row (default 3) while `stress-ng --cpu
# N` (default: one worker per core, at normal priority) keeps every core
# busy, and reports each run's result and wall time, with the load average.
#
#   bench/loaded_suite.sh [RUNS]          (default 3)
#   CPU_WORKERS=1 bench/loaded_suite.sh   (one core loaded)
#
# The first run builds what it needs under load too; the later ones find it
# built. Each run's output goes to target/loaded-suite/run-K.log. Nothing
# here asserts a time: a run passes when scripts/test.sh exits 0. Peer: the
# same command on the idle machine (its wall time is in the note that
# reports these runs).
set -uo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
workers="${CPU_WORKERS:-$(nproc)}"
command -v stress-ng > /dev/null || { echo "stress-ng is missing: scripts/install-deps.sh installs it" >&2; exit 2; }
mkdir -p target/loaded-suite
stress-ng --cpu "$workers" --timeout 0 --quiet & load=$!
trap 'kill "$load" 2>/dev/null; wait "$load" 2>/dev/null' EXIT
passed=0
for k in $(seq 1 "$runs"); do
  start=$(date +%s)
  scripts/test.sh > "target/loaded-suite/run-$k.log" 2>&1
  rc=$?
  wall=$(( $(date +%s) - start ))
  [ "$rc" = 0 ] && passed=$((passed + 1))
  failed=$(grep -E '^test .* FAILED$|^    [a-z_:]+$' "target/loaded-suite/run-$k.log" | sort -u | tr '\n' ' ')
  printf 'run %d: %s in %d min %02d s, load average %s%s\n' "$k" \
    "$([ "$rc" = 0 ] && echo passed || echo "FAILED (exit $rc)")" $((wall / 60)) $((wall % 60)) \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "${failed:+; failed: $failed}"
done
echo "$passed of $runs runs passed with $workers stress-ng CPU workers beside them"
[ "$passed" = "$runs" ]
