#!/usr/bin/env bash
# Builds the Debian packages with cargo-deb (`cargo install cargo-deb --locked`).
#
#   deploy/build-debs.sh [amd64|arm64|armhf]... [--only agent|collector]
#                        [--profile release|dev] [--deb-version V] [--out DIR] [--no-build]
#
# Without an architecture: this machine's. Packages:
#   glasswatch-agent      amd64, arm64 (Pi 3/4/5, 64-bit OS), armhf (32-bit OS)
#   glasswatch-collector  amd64, arm64
# arm64 and armhf are cross-compiled by deploy/cross-build.sh (no Docker).
# Output: target/debian/ (or --out), named <package>_<version>_<arch>.deb.
# --profile dev packs the unoptimised binaries (the tests use it: minutes
# faster to build; cargo-deb 3.8 warns that it may refuse dev one day);
# release is what devices get. --no-build packs the binaries already in
# target/<profile>/ (this machine's architecture only).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"

arches=()
only=""
profile=release
deb_version=()
out="$repo/target/debian"
build=yes
while [ $# -gt 0 ]; do
  case "$1" in
    amd64|arm64|armhf) arches+=("$1"); shift ;;
    --only) only="${2:?--only agent|collector}"; shift 2 ;;
    --profile) profile="${2:?--profile release|dev}"; shift 2 ;;
    --deb-version) deb_version=(--deb-version "${2:?--deb-version needs a version}"); shift 2 ;;
    --out) out="${2:?--out needs a folder}"; shift 2 ;;
    --no-build) build=no; shift ;;
    *) echo "usage: $0 [amd64|arm64|armhf]... [--only agent|collector] [--profile release|dev] [--deb-version V] [--out DIR] [--no-build]" >&2; exit 2 ;;
  esac
done
[ ${#arches[@]} -gt 0 ] || arches=("$(dpkg --print-architecture)")

if ! cargo deb --version >/dev/null 2>&1; then
  echo "build-debs: cargo-deb is missing: cargo install cargo-deb --locked" >&2
  exit 1
fi

# The agent's packaged config: the sample with device_id commented out, so a
# fresh install does not stream under the sample's name.
mkdir -p target/deb-assets "$out"
sed -e 's/^device_id = .*/# device_id = "…"   (required: set it, or run deploy\/install-device.sh)/' \
  agent/glasswatch-agent.toml > target/deb-assets/agent.toml
if grep -q '^device_id' target/deb-assets/agent.toml; then
  echo "build-debs: could not comment out device_id in the packaged agent.toml" >&2
  exit 1
fi

native="$(dpkg --print-architecture)"
for arch in "${arches[@]}"; do
  for pkg in agent collector; do
    [ -z "$only" ] || [ "$only" = "$pkg" ] || continue
    if [ "$pkg" = collector ] && [ "$arch" = armhf ]; then
      continue # the collector runs on the fleet's server, not on a 32-bit Pi
    fi
    if [ "$arch" = "$native" ]; then
      if [ "$build" = yes ]; then
        cargo build --locked -p "glasswatch-$pkg" --profile "$profile"
      fi
      cargo deb --no-build -p "glasswatch-$pkg" --profile "$profile" "${deb_version[@]}" -o "$out"
    else
      [ "$build" = yes ] || { echo "build-debs: --no-build is for $native only" >&2; exit 2; }
      case "$arch" in
        arm64) short=aarch64; triple=aarch64-unknown-linux-gnu ;;
        armhf) short=armv7; triple=armv7-unknown-linux-gnueabihf ;;
      esac
      deploy/cross-build.sh "$short" --package "glasswatch-$pkg" --profile "$profile"
      # cargo-deb strips with the target's binutils.
      cargo deb --no-build -p "glasswatch-$pkg" --target "$triple" --profile "$profile" "${deb_version[@]}" -o "$out"
    fi
  done
done
ls -l "$out"/*.deb
