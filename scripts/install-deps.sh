#!/usr/bin/env bash
# Installs the system packages Glasswatch needs to build, run and test on
# Debian 12 (bookworm). Idempotent: packages already present are skipped by apt.
# Uses sudo when not run as root.
set -euo pipefail

packages=(
  # Build: GStreamer headers for gstreamer-rs, the RTSP server for the test
  # origin, libclang for the v4l crate's bindgen, pkg-config.
  pkg-config libclang-dev clang
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libgstrtspserver-1.0-dev
  # Runtime: the elements the agent and the test origin use.
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  gstreamer1.0-rtsp gstreamer1.0-x fonts-dejavu-core
  # Independent readers used by the tests.
  ffmpeg
  # MQTT: the broker and its clients, openssl for the test CA, and the
  # documented Python subscriber's modules (Debian's python3).
  mosquitto mosquitto-clients openssl python3 python3-paho-mqtt python3-jsonschema
  # Clock offset injection for the collector's tests.
  faketime
  # PostgreSQL 15 for the collector's database tests: the server binaries
  # (initdb, postgres in /usr/lib/postgresql/15/bin; testkit runs them itself,
  # never the packaged service) and psql/pg_isready.
  postgresql-15 postgresql-client-15
  # promtool (checks the shipped alerting rules and the collector's /metrics).
  prometheus
  # Misc tools the scripts use.
  curl ca-certificates procps
  # The dashboard's browser tests: Debian's Chromium (it decodes H.264 in
  # MSE) driven over WebDriver by chromedriver.
  chromium chromium-driver
  # Deployment tests (testkit/tests/deploy.rs): PyYAML reads mediamtx.yml,
  # systemd-analyze checks the units, file names an ELF's machine; the agent
  # cross-linked for aarch64 (deploy/cross-build.sh) with the target's gcc and
  # C library, run under qemu-user; adduser for the packages' postinst.
  python3-yaml systemd file qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross adduser
  # bench/loaded_suite.sh keeps every core busy beside the suite.
  stress-ng
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
fi

# The aarch64 standard library for the cross-link test (rustup's, as the
# machine's toolchain is rustup's), and cargo-deb for the package tests
# (about 2 minutes to build once; pinned so CI builds the same tool).
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx aarch64-unknown-linux-gnu; then
  rustup target add aarch64-unknown-linux-gnu
fi
cargo_deb_version=3.8.0
if [ "$(cargo deb --version 2>/dev/null | awk '{ print $NF }')" != "$cargo_deb_version" ]; then
  echo "install-deps: cargo install cargo-deb $cargo_deb_version"
  cargo install cargo-deb --locked --version "$cargo_deb_version"
fi

# The dashboard's browser libraries (hls.js, uPlot), at the versions and
# integrity hashes collector/web/package-lock.json pins; the collector's
# build embeds them. Node 20 and npm come with the machine (nodesource's
# nodejs package); Debian's nodejs is the fallback.
if ! command -v npm >/dev/null; then
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends nodejs npm
fi
web="$(cd "$(dirname "$0")/../collector/web" && pwd)"
# npm writes node_modules/.package-lock.json at each install: newer than the
# lock file means this lock file is installed.
if [ ! "$web/node_modules/.package-lock.json" -nt "$web/package-lock.json" ]; then
  echo "install-deps: npm ci in $web"
  (cd "$web" && npm ci --ignore-scripts --no-audit --no-fund)
fi
