#!/usr/bin/env bash
# Sets up one device (Raspberry Pi or x86 box running Debian/Raspberry Pi OS):
# the glasswatch-agent package, MediaMTX, the agent's config, and both
# services enabled and started. Run as root on the device.
#
#   deploy/install-device.sh --device-id pi-kitchen --broker mqtts://broker.example.net:8883 \
#       [--mqtt-user pi-kitchen] [--mqtt-password-file FILE] [--camera /dev/video0|test|auto] \
#       [--hls-host ADDR] [--collector-ip ADDR] [--deb FILE] [--config-only] [--etc DIR]
#
#   --device-id        this device's id (a-z, 0-9, '_', '-'; up to 64)
#   --broker           the MQTT broker: mqtt://host[:port] or mqtts://host[:port]
#   --mqtt-user        user name, when the broker wants one (deploy/mosquitto/add-device.sh
#                      makes one per device); the password comes from
#   --mqtt-password-file  a file whose first line is the password (or
#                      $GLASSWATCH_MQTT_PASSWORD; never on the command line)
#   --camera           V4L2 device, "test" (moving test pattern) or "auto" (default /dev/video0)
#   --hls-host         address the collector reaches this device's HLS at
#                      (default: the first address `hostname -I` gives)
#   --collector-ip     only this address may read the streams (mediamtx.yml's read rule)
#   --deb              the agent package (default: the newest target/debian/glasswatch-agent_*_<arch>.deb)
#   --config-only      write and check the config only (no package, MediaMTX or systemd)
#   --etc              config folder (default /etc/glasswatch)
#
# The config lands in <etc>/agent.toml (mode 0640, group glasswatch): a
# conffile, kept on package upgrades. Every other key keeps its default; see
# /usr/share/doc/glasswatch-agent/agent.toml.example for all of them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

device="" broker="" user="" pass_file="" camera="auto" hls_host="" collector_ip=""
deb="" config_only=no etc=/etc/glasswatch
die() { echo "install-device: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --device-id) device="${2:-}"; shift 2 ;;
    --broker) broker="${2:-}"; shift 2 ;;
    --mqtt-user) user="${2:-}"; shift 2 ;;
    --mqtt-password-file) pass_file="${2:-}"; shift 2 ;;
    --camera) camera="${2:-}"; shift 2 ;;
    --hls-host) hls_host="${2:-}"; shift 2 ;;
    --collector-ip) collector_ip="${2:-}"; shift 2 ;;
    --deb) deb="${2:-}"; shift 2 ;;
    --config-only) config_only=yes; shift ;;
    --etc) etc="${2:-}"; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
done
[ -n "$device" ] || die "--device-id is required"
[[ "$device" =~ ^[a-z0-9_-]{1,64}$ ]] || die "--device-id: 1 to 64 of a-z, 0-9, '_' and '-'"
[ -n "$broker" ] || die "--broker is required (mqtt://host[:port] or mqtts://host[:port])"
[[ "$broker" =~ ^mqtts?://[^[:space:]\"]+$ ]] || die "--broker: mqtt://host[:port] or mqtts://host[:port]"
[[ "$camera" =~ ^(auto|test|/dev/[A-Za-z0-9/_-]+)$ ]] || die "--camera: a /dev path, test or auto"
[ -z "$user" ] || [[ "$user" =~ ^[A-Za-z0-9_.@-]+$ ]] || die "--mqtt-user: letters, digits and _ . @ - only"
if [ -z "$hls_host" ]; then
  hls_host="$(hostname -I 2>/dev/null | awk '{ print $1 }')"
  [ -n "$hls_host" ] || hls_host=127.0.0.1
fi
[[ "$hls_host" =~ ^[A-Za-z0-9.:_-]+$ ]] || die "--hls-host: an address or host name"
case "$hls_host" in *:*) hls_authority="[$hls_host]" ;; *) hls_authority="$hls_host" ;; esac
agent="${GLASSWATCH_AGENT_BIN:-/usr/bin/glasswatch-agent}"

if [ "$config_only" = no ]; then
  [ "$(id -u)" -eq 0 ] || die "run as root (it installs a package and enables services)"
  # 1. The package (apt-get resolves GStreamer and the rest).
  if [ -z "$deb" ]; then
    arch="$(dpkg --print-architecture)"
    deb="$(ls -t "$here"/../target/debian/glasswatch-agent_*_"$arch".deb 2>/dev/null | head -n1 || true)"
    [ -n "$deb" ] || die "no glasswatch-agent_*_$arch.deb in target/debian: build it with deploy/build-debs.sh $arch, or pass --deb"
  fi
  echo "== installing $deb"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
    -o Dpkg::Options::=--force-confold "$(realpath "$deb")"
  # 2. MediaMTX: a binary from MEDIAMTX_BIN, one already installed, or the pinned release.
  if [ -n "${MEDIAMTX_BIN:-}" ]; then
    echo "== MediaMTX from MEDIAMTX_BIN ($MEDIAMTX_BIN)"
    install -m 0755 "$MEDIAMTX_BIN" /usr/local/bin/mediamtx
    install -d "$etc"
    [ -f "$etc/mediamtx.yml" ] || install -m 0644 "$here/../mediamtx.yml" "$etc/mediamtx.yml"
    install -m 0644 "$here/../systemd/mediamtx.service" /etc/systemd/system/mediamtx.service
  elif [ -x /usr/local/bin/mediamtx ] && [ -f "$etc/mediamtx.yml" ]; then
    echo "== MediaMTX already installed (/usr/local/bin/mediamtx)"
  else
    echo "== MediaMTX"
    "$here/install-mediamtx.sh" --config-dir "$etc" --no-start
  fi
fi

# 3. The config.
install -d -m 0755 "$etc"
group=root
getent group glasswatch >/dev/null && group=glasswatch
if [ -n "$collector_ip" ] && [ -f "$etc/mediamtx.yml" ]; then
  [[ "$collector_ip" =~ ^[0-9A-Fa-f.:/]+$ ]] || die "--collector-ip: an address or network"
  sed -i "s|^    ips: \['10.0.0.0/8'.*\]$|    ips: ['$collector_ip']|" "$etc/mediamtx.yml"
  grep -q "ips: \['$collector_ip'\]" "$etc/mediamtx.yml" \
    || echo "install-device: warning: could not narrow the read rule in $etc/mediamtx.yml; edit authInternalUsers by hand" >&2
fi
mqtt_auth=""
if [ -n "$user" ]; then
  mqtt_auth="username = \"$user\""$'\n'
fi
if [ -n "$pass_file" ] || [ -n "${GLASSWATCH_MQTT_PASSWORD:-}" ]; then
  umask 077
  if [ -n "$pass_file" ]; then
    head -n1 "$pass_file" > "$etc/mqtt.pass"
  else
    printf '%s\n' "$GLASSWATCH_MQTT_PASSWORD" > "$etc/mqtt.pass"
  fi
  chgrp "$group" "$etc/mqtt.pass"
  chmod 0640 "$etc/mqtt.pass"
  mqtt_auth+="password_file = \"$etc/mqtt.pass\""$'\n'
fi
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
cat > "$tmp" <<EOF
# glasswatch-agent configuration, written by deploy/install-device.sh on $(date -u +%Y-%m-%d).
# Keys not set here keep their defaults; all of them, documented:
# /usr/share/doc/glasswatch-agent/agent.toml.example. Check after editing:
#   glasswatch-agent --config $etc/agent.toml --check-config

# This device's id (MQTT topics, RTSP/HLS path names).
device_id = "$device"

[mqtt]
url = "$broker"
$mqtt_auth
[[stream]]
id = "cam0"
source = "$camera"
# The address the collector reads this stream at (this device's MediaMTX).
hls_url = "http://$hls_authority:8888/$device-cam0/index.m3u8"
EOF
if ! "$agent" --config "$tmp" --check-config; then
  die "the config does not check out (above); nothing changed"
fi
install -m 0640 -g "$group" "$tmp" "$etc/agent.toml"
echo "== wrote $etc/agent.toml"
[ "$config_only" = yes ] && exit 0

# 4. Enable and start, then show what systemd says.
systemctl daemon-reload
systemctl enable --now mediamtx.service
systemctl enable glasswatch-agent.service
systemctl restart glasswatch-agent.service
sleep 3
systemctl --no-pager status mediamtx.service glasswatch-agent.service || true
