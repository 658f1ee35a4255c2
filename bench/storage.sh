#!/usr/bin/env bash
# Benchmark: what the collector's history costs, on SQLite and on a real
# PostgreSQL 15 started by the testkit on 127.0.0.1 (scripts/install-deps.sh
# installs postgresql-15 and postgresql-client-15).
#
#   bench/storage.sh [key=value ...]     (5 to 8 min at the defaults on 2 cores, plus the build)
#
# Runs collector/benches/storage.rs (cargo bench, release profile; its top
# comment says how each part is measured):
#   1. rows written per second through Store::write (30 ticks per call), second
#      rows and frame rows, against a bare rusqlite INSERT loop (SQLite) and
#      psql COPY FROM STDIN (PostgreSQL) of the same rows in the same run;
#   2. p50/p99 of each dashboard query over generated history, and the size
#      on disk per row and per stream-day;
#   3. the collector CPU storage adds at 100 streams (Storage::push_closed,
#      against kind = "none"), the PostgreSQL server's, and the CPU of the
#      frame retention that deletes as many frames as are written;
#   4. part 1 again on PostgreSQL with fsync, synchronous_commit and
#      full_page_writes on (the testkit runs it with them off).
# Keys (defaults): streams=1000 writes=10 frame_streams=100 seconds_min=15
# minute_days=2 hour_days=7 queries=200 cpu_streams=100 cpu_ticks=300
# fsync_on=1, and only=sqlite|only=postgres.
# Targets: summary rows/s >= 20,000 (SQLite), >= 50,000 (PostgreSQL); frame
# rows/s >= 100,000 (PostgreSQL); p99 latest and fleet <= 20 ms, 24 h series
# <= 50 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! cargo bench --locked -p glasswatch-collector --bench storage --no-run 2> "$log"; then
  cat "$log" >&2
  exit 1
fi
# Progress goes to stderr, the report to stdout.
cargo bench --locked -p glasswatch-collector --bench storage -- "$@" 2> >(grep -v -E '^ *(Finished|Running|Compiling|Blocking)' >&2)
