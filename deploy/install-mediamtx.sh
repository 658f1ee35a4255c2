#!/usr/bin/env bash
# Installs the pinned MediaMTX release on a device, checksum verified, with
# /etc/glasswatch/mediamtx.yml and mediamtx.service.
#
#   deploy/install-mediamtx.sh [--prefix /usr/local] [--config-dir /etc/glasswatch]
#                              [--unit-dir /etc/systemd/system] [--no-start] [--print-url]
#
# Version: deploy/mediamtx.version. Architecture: from `uname -m` (x86_64 →
# amd64, aarch64 → arm64, armv7l → armv7, armv6l → armv6: Pi Zero and Pi 1).
#
# Verification, never skipped:
#  1. a SHA-256 pinned in deploy/mediamtx.sha256 ("<sha256>  <file>", as
#     deploy/pin-mediamtx.sh writes it) when a maintainer has pinned one;
#  2. otherwise the release's own checksums.sha256, fetched over HTTPS from
#     the same release.
# An archive whose SHA-256 differs, or that neither lists, is not installed.
#
# Offline: download mediamtx_<version>_linux_<arch>.tar.gz and checksums.sha256
# from the release page elsewhere, put both in one folder, and run
#   GLASSWATCH_MEDIAMTX_BASE_URL=file:///path/to/folder deploy/install-mediamtx.sh
# (verified the same way). To use a MediaMTX binary you already have for
# scripts/run.sh and the tests, set MEDIAMTX_BIN=/path/to/mediamtx instead.
#
# Environment (for mirrors and tests): GLASSWATCH_MEDIAMTX_BASE_URL (https://
# or file:// only), GLASSWATCH_MEDIAMTX_PINS (the pinned list),
# GLASSWATCH_MEDIAMTX_MACHINE (instead of `uname -m`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prefix=/usr/local
config_dir=/etc/glasswatch
unit_dir=/etc/systemd/system
start=yes
print_url=no
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="${2:?--prefix needs a folder}"; shift 2 ;;
    --config-dir) config_dir="${2:?--config-dir needs a folder}"; shift 2 ;;
    --unit-dir) unit_dir="${2:?--unit-dir needs a folder}"; shift 2 ;;
    --no-start) start=no; shift ;;
    --print-url) print_url=yes; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-mediamtx: unknown argument: $1" >&2; exit 2 ;;
  esac
done

version="$(tr -d ' \n' < "$here/mediamtx.version")"
machine="${GLASSWATCH_MEDIAMTX_MACHINE:-$(uname -m)}"
case "$machine" in
  x86_64|amd64) arch=amd64 ;;
  aarch64|arm64) arch=arm64 ;;
  armv7l|armv7|armv8l) arch=armv7 ;;
  armv6l|armv6) arch=armv6 ;;
  *) echo "install-mediamtx: no MediaMTX release for this architecture ($machine); build it from source and set MEDIAMTX_BIN" >&2; exit 1 ;;
esac
file="mediamtx_${version}_linux_${arch}.tar.gz"
base="${GLASSWATCH_MEDIAMTX_BASE_URL:-https://github.com/bluenviron/mediamtx/releases/download/${version}}"
base="${base%/}"
case "$base" in
  https://*|file://*) ;;
  *) echo "install-mediamtx: GLASSWATCH_MEDIAMTX_BASE_URL must be https:// or file:// (got $base)" >&2; exit 2 ;;
esac
if [ "$print_url" = yes ]; then
  echo "$base/$file"
  exit 0
fi

# curl: HTTPS (also after redirects) or a local file, nothing else.
fetch() {
  curl -fsSL --proto '=https,file' --proto-redir '=https' --connect-timeout 15 --retry 2 -o "$2" "$1"
}
offline() {
  cat >&2 <<EOF
install-mediamtx: cannot download $1
  MediaMTX $version could not be fetched from here (offline, or the release is unreachable).
  Either fetch $file and checksums.sha256 from the release page on another machine,
  put them in one folder and run again with GLASSWATCH_MEDIAMTX_BASE_URL=file:///that/folder,
  or, if you already have a MediaMTX binary, set MEDIAMTX_BIN=/path/to/mediamtx
  (scripts/run.sh and the tests use it; without it they fall back to the testkit origin
  or say they were skipped).
EOF
  exit 3
}
# The SHA-256 a checksum list gives for $file ("<hash>  <file>" or "<hash> *<file>").
lookup() {
  awk -v f="$file" '($2 == f || $2 == "*" f) && length($1) == 64 && $1 ~ /^[0-9a-fA-F]+$/ { print tolower($1); exit }' "$1"
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

pins="${GLASSWATCH_MEDIAMTX_PINS:-$here/mediamtx.sha256}"
expected=""
if [ -f "$pins" ]; then
  expected="$(lookup "$pins")"
fi
if [ -n "$expected" ]; then
  source="pinned in $(basename "$pins")"
else
  echo "install-mediamtx: no pinned SHA-256 for $file; using the release's checksums.sha256"
  fetch "$base/checksums.sha256" "$tmp/checksums.sha256" || offline "$base/checksums.sha256"
  expected="$(lookup "$tmp/checksums.sha256")"
  if [ -z "$expected" ]; then
    echo "install-mediamtx: the release's checksums.sha256 does not list $file; refusing to install an unverified binary" >&2
    exit 1
  fi
  source="listed in the release's checksums.sha256"
fi

echo "install-mediamtx: downloading $base/$file"
fetch "$base/$file" "$tmp/$file" || offline "$base/$file"
actual="$(sha256sum "$tmp/$file" | cut -d' ' -f1)"
if [ "$actual" != "$expected" ]; then
  echo "install-mediamtx: SHA-256 mismatch for $file: got $actual, expected $expected ($source); not installed" >&2
  exit 1
fi
echo "install-mediamtx: $file verified (SHA-256 $source)"

tar -xzf "$tmp/$file" -C "$tmp" mediamtx
install -d "$prefix/bin" "$config_dir" "$unit_dir"
install -m 0755 "$tmp/mediamtx" "$prefix/bin/mediamtx"
if [ -f "$config_dir/mediamtx.yml" ]; then
  echo "install-mediamtx: keeping $config_dir/mediamtx.yml (compare with the repository's mediamtx.yml after an upgrade)"
else
  install -m 0644 "$here/../mediamtx.yml" "$config_dir/mediamtx.yml"
fi
sed -e "s|/usr/local/bin/mediamtx|$prefix/bin/mediamtx|" \
    -e "s|/etc/glasswatch/mediamtx.yml|$config_dir/mediamtx.yml|" \
    "$here/../systemd/mediamtx.service" > "$tmp/mediamtx.service"
install -m 0644 "$tmp/mediamtx.service" "$unit_dir/mediamtx.service"
echo "install-mediamtx: MediaMTX $version in $prefix/bin/mediamtx, config $config_dir/mediamtx.yml, unit $unit_dir/mediamtx.service"

if [ "$start" = yes ]; then
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    systemctl enable --now mediamtx.service
    systemctl --no-pager status mediamtx.service || true
  else
    echo "install-mediamtx: systemd is not running here; start it with: $prefix/bin/mediamtx $config_dir/mediamtx.yml"
  fi
fi
