#!/usr/bin/env bash
# Cross-compiles glasswatch-agent (or the collector) for a Raspberry Pi
# without Docker.
#
#   deploy/cross-build.sh aarch64|armv7 [--package glasswatch-agent|glasswatch-collector]
#                         [--profile release|dev|cross-check] [--sysroot-only]
#
# Pi 3/4/5 with a 64-bit OS: aarch64 (aarch64-unknown-linux-gnu, Debian arm64).
# Pi 2/3/4 with a 32-bit OS: armv7 (armv7-unknown-linux-gnueabihf, Debian armhf).
#
# What it does, on a Debian 12 (bookworm) or Ubuntu build machine:
#  1. `rustup target add` for the target's standard library.
#  2. The target's gcc (gcc-aarch64-linux-gnu / gcc-arm-linux-gnueabihf) as
#     the linker, installed with apt-get when missing.
#  3. A sysroot folder with the target's GStreamer and GLib development files
#     and the shared libraries they need: `apt-get download <pkg>:<arch>` and
#     `dpkg -x`, never `apt-get install`: libgstreamer-plugins-base1.0-dev is
#     not Multi-Arch: same, so installing the :arm64 one would remove the
#     machine's own. apt needs the architecture known (`dpkg
#     --add-architecture`, then `apt-get update`); the script does both when
#     missing. The sysroot is kept (default target/sysroot/<arch>, or
#     $GLASSWATCH_SYSROOT) and reused while its package list is unchanged.
#  4. `cargo build --target <triple> -p glasswatch-agent` with pkg-config,
#     bindgen (the v4l crate) and the linker pointed at the sysroot.
#
# The binary lands in target/<triple>/<profile>/glasswatch-agent (dev:
# target/<triple>/debug). `--profile cross-check` (Cargo.toml: no debug info,
# nothing optimised) only proves that the build links and starts, in a third
# of the dev profile's time; the tests use it. Try it
# without a Pi (qemu-user, no binfmt needed):
#   GST_REGISTRY_FORK=no qemu-aarch64 -L target/sysroot/arm64 \
#     target/aarch64-unknown-linux-gnu/release/glasswatch-agent --version
# Packages for the device: deploy/build-debs.sh (it calls this script).
# With Docker, `cross build --release -p glasswatch-agent --target <triple>`
# does the same from cross.toml.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"

usage() { echo "usage: $0 aarch64|armv7 [--package glasswatch-agent|glasswatch-collector] [--profile release|dev|cross-check] [--sysroot-only]" >&2; exit 2; }
[ $# -ge 1 ] || usage
case "$1" in
  aarch64|arm64) triple=aarch64-unknown-linux-gnu; debarch=arm64; gnu=aarch64-linux-gnu ;;
  armv7|armhf) triple=armv7-unknown-linux-gnueabihf; debarch=armhf; gnu=arm-linux-gnueabihf ;;
  *) usage ;;
esac
shift
profile=release
package=glasswatch-agent
sysroot_only=no
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:?--profile needs a value}"; shift 2 ;;
    --package|-p) package="${2:?--package needs a value}"; shift 2 ;;
    --sysroot-only) sysroot_only=yes; shift ;;
    *) usage ;;
  esac
done

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
apt_install() {
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@"
}

# 1. The standard library for the target.
if command -v rustup >/dev/null; then
  if ! rustup target list --installed | grep -qx "$triple"; then
    rustup target add "$triple"
  fi
else
  echo "cross-build: rustup not found; assuming the $triple standard library is installed" >&2
fi

# 2. The linker (and the target's C library headers for bindgen).
if ! command -v "$gnu-gcc" >/dev/null; then
  apt_install "gcc-$gnu" "libc6-dev-$debarch-cross"
fi

# 3. The sysroot. Development files for pkg-config and the link, then every
# shared library the agent loads at run time (for qemu, and for the linker
# to resolve the libraries those need).
packages=(
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libglib2.0-dev
  # pkg-config wants the .pc files that GLib's and GStreamer's name under
  # Requires.private even for a dynamic link.
  libpcre2-dev libffi-dev libunwind-dev libdw-dev libelf-dev zlib1g-dev
  libmount-dev libblkid-dev libselinux1-dev libsepol-dev liborc-0.4-dev
  liblzma-dev libzstd-dev
  libgstreamer1.0-0 libgstreamer-plugins-base1.0-0 libglib2.0-0 liborc-0.4-0
  libunwind8 libdw1 libelf1 libffi8 libpcre2-8-0 zlib1g libmount1 libblkid1
  libselinux1 liblzma5 libbz2-1.0 libzstd1 libgcc-s1 libc6
)
sysroot="${GLASSWATCH_SYSROOT:-$repo/target/sysroot/$debarch}"
stamp="$sysroot/.glasswatch-packages"
want="$(printf '%s\n' "${packages[@]}")"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx "$debarch"; then
    echo "cross-build: adding the $debarch architecture to apt (downloads only; nothing $debarch is installed)"
    $SUDO dpkg --add-architecture "$debarch"
    $SUDO apt-get update -q
  elif ! apt-cache show "libc6:$debarch" >/dev/null 2>&1; then
    $SUDO apt-get update -q
  fi
  rm -rf "$sysroot"
  mkdir -p "$sysroot/.debs"
  echo "cross-build: downloading ${#packages[@]} $debarch packages into $sysroot"
  (cd "$sysroot/.debs" && apt-get download -q -o APT::Sandbox::User=root "${packages[@]/%/:$debarch}")
  for deb in "$sysroot"/.debs/*.deb; do
    dpkg -x "$deb" "$sysroot"
  done
  rm -rf "$sysroot/.debs"
  # dpkg -x does not merge /lib into /usr/lib as a merged-/usr system does:
  # do it, so one library folder holds everything.
  for d in lib bin sbin; do
    if [ -d "$sysroot/$d" ] && [ ! -L "$sysroot/$d" ]; then
      mkdir -p "$sysroot/usr/$d"
      cp -a "$sysroot/$d/." "$sysroot/usr/$d/"
      rm -rf "${sysroot:?}/$d"
      ln -s "usr/$d" "$sysroot/$d"
    fi
  done
  # Absolute symbolic links (libfoo.so -> /lib/...) point into the build
  # machine; make them relative to the sysroot.
  find "$sysroot/usr" -type l -lname '/*' -print0 | while IFS= read -r -d '' link; do
    target="$(readlink "$link")"
    ln -sfn "$(realpath -m --relative-to="$(dirname "$link")" "$sysroot$target")" "$link"
  done
  printf '%s\n' "$want" > "$stamp"
fi
echo "cross-build: sysroot $sysroot"
[ "$sysroot_only" = yes ] && exit 0

# 4. The build.
libdir="$sysroot/usr/lib/$gnu"
upper="$(echo "$triple" | tr 'a-z-' 'A-Z_')"
export PKG_CONFIG_ALLOW_CROSS=1
export PKG_CONFIG_SYSROOT_DIR="$sysroot"
export PKG_CONFIG_LIBDIR="$libdir/pkgconfig:$sysroot/usr/share/pkgconfig"
export PKG_CONFIG_PATH=""
export "CARGO_TARGET_${upper}_LINKER=$gnu-gcc"
# -rpath-link: the linker finds the libraries GStreamer itself needs.
export "CARGO_TARGET_${upper}_RUSTFLAGS=-C link-arg=-Wl,-rpath-link,$libdir"
# C code built by crates (SQLite in the collector, ring) for the target.
export "CC_${triple//-/_}=$gnu-gcc" "AR_${triple//-/_}=$gnu-ar"
# bindgen (v4l) parses the kernel's videodev2.h for the target.
export "BINDGEN_EXTRA_CLANG_ARGS_${triple//-/_}=--sysroot=/usr/$gnu -I$sysroot/usr/include -I$sysroot/usr/include/$gnu"
cd "$repo"
cargo build --locked -p "$package" --target "$triple" --profile "$profile"
out_dir="$profile"
[ "$profile" = dev ] && out_dir=debug
bin="$repo/target/$triple/$out_dir/$package"
"$gnu-strip" -o "$bin.stripped" "$bin"
echo "cross-build: $bin ($(stat -c %s "$bin") bytes; stripped: $bin.stripped, $(stat -c %s "$bin.stripped") bytes)"
