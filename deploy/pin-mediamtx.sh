#!/usr/bin/env bash
# Pins a MediaMTX release: records its version and the SHA-256 of each Linux
# archive the devices use, taken from the release's own checksum list and
# re-computed from the downloaded archives (both must agree).
#   deploy/pin-mediamtx.sh v1.16.2
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
version="${1:?usage: pin-mediamtx.sh vX.Y.Z}"
base="https://github.com/bluenviron/mediamtx/releases/download/${version}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 3 -o "$tmp/checksums.sha256" "$base/checksums.sha256"
: > "$tmp/pinned"
for arch in amd64 arm64 armv7 armv6; do
  file="mediamtx_${version}_linux_${arch}.tar.gz"
  curl -fsSL --retry 3 -o "$tmp/$file" "$base/$file"
  computed="$(sha256sum "$tmp/$file" | cut -d' ' -f1)"
  listed="$(awk -v f="$file" '$2 == f || $2 == "*"f { print $1 }' "$tmp/checksums.sha256")"
  if [ "$computed" != "$listed" ]; then
    echo "$file: computed $computed but the release lists ${listed:-nothing}" >&2
    exit 1
  fi
  echo "$computed  $file" >> "$tmp/pinned"
done
echo "$version" > "$here/mediamtx.version"
{ sed -n "/^#/p" "$here/mediamtx.sha256"; cat "$tmp/pinned"; } > "$tmp/with-header"
cp "$tmp/with-header" "$here/mediamtx.sha256"
echo "pinned MediaMTX $version:"; cat "$here/mediamtx.sha256"
