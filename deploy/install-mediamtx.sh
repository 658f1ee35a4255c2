#!/usr/bin/env bash
# Installs the pinned MediaMTX release on a device, checksum verified.
#
#   deploy/install-mediamtx.sh [--prefix /usr/local] [--config-dir /etc/glasswatch]
#
# The version is pinned in deploy/mediamtx.version and each archive's SHA-256
# in deploy/mediamtx.sha256 ("<sha256>  <file name>", as sha256sum prints).
# An archive without a pinned checksum is refused: run deploy/pin-mediamtx.sh
# (once, by a maintainer, from a trusted network) to pin a new version.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prefix=/usr/local
config_dir=/etc/glasswatch
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix="$2"; shift 2 ;;
    --config-dir) config_dir="$2"; shift 2 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

version="$(tr -d ' \n' < "$here/mediamtx.version")"
case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64|arm64) arch=arm64 ;;
  armv7l) arch=armv7 ;;
  armv6l) arch=armv6 ;;
  *) echo "unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac
file="mediamtx_${version}_linux_${arch}.tar.gz"
pinned="$(awk -v f="$file" '$2 == f { print $1 }' "$here/mediamtx.sha256")"
if [ -z "$pinned" ]; then
  echo "no pinned SHA-256 for $file in deploy/mediamtx.sha256; refusing to install an unverified binary" >&2
  echo "(a maintainer pins it with deploy/pin-mediamtx.sh $version)" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
url="https://github.com/bluenviron/mediamtx/releases/download/${version}/${file}"
echo "downloading $url"
curl -fsSL --retry 3 -o "$tmp/$file" "$url"
echo "$pinned  $tmp/$file" | sha256sum -c -
tar -xzf "$tmp/$file" -C "$tmp" mediamtx
install -m 0755 "$tmp/mediamtx" "$prefix/bin/mediamtx"
install -d "$config_dir"
if [ ! -f "$config_dir/mediamtx.yml" ]; then
  install -m 0644 "$here/../mediamtx.yml" "$config_dir/mediamtx.yml"
fi
echo "installed MediaMTX $version to $prefix/bin/mediamtx (config $config_dir/mediamtx.yml)"
