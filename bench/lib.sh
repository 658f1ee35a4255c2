# Shared helpers of the benchmark scripts (sourced, not run): a work dir and
# child processes cleaned up on exit, free loopback ports, waits, CPU ticks.

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done; }
# Waits up to $3 seconds (default 10) for a line matching $2 in file $1.
wait_line() { for _ in $(seq 1 $((${3:-10} * 10))); do grep -q "$2" "$1" 2>/dev/null && return; sleep 0.1; done; echo "no '$2' in $1" >&2; return 1; }
# utime + stime of a process, in clock ticks.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ticks=$(getconf CLK_TCK)

# The benchmarks' agent: one test-pattern stream cam0 at 30 fps, x264,
# 2000 kbps, printed as its config. Arguments: device id, MQTT port,
# publish URL, HLS URL, and optionally GOP (15), width (1280), height (720).
agent_toml() {
  cat <<TOML
device_id = "$1"
[mqtt]
url = "mqtt://127.0.0.1:$2"
[[stream]]
id = "cam0"
source = "test"
width = ${6:-1280}
height = ${7:-720}
fps = 30
gop = ${5:-15}
bitrate_kbps = 2000
encoder = "x264"
publish_url = "$3"
hls_url = "$4"
TOML
}

cargo build --release --locked -p glasswatch-agent -p glasswatch-testkit --bins >/dev/null
