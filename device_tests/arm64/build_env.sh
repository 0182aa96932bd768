#!/usr/bin/env bash
# Build an aarch64 Python environment (Debian bookworm arm64 = Raspberry Pi OS 64-bit userland, Python 3.11)
# on an x86_64 Debian host, run under qemu user-mode emulation: no rootfs, no chroot, host apt state untouched.
#
#   device_tests/arm64/build_env.sh DIR tflite|litert
#   DIR/bin/python-arm -c 'import platform; print(platform.machine())'     # aarch64
#
# tflite : tflite-runtime 2.14 + numpy 1.26 (tflite-runtime 2.14 does not load with numpy 2)
# litert : ai-edge-litert + numpy 2
# Needs root (apt-get; a private mount namespace for the cpuinfo fix), the host's Debian mirror and PyPI.
set -euo pipefail
DIR=$(mkdir -p "$1" && cd "$1" && pwd)
RUNTIME=$2
PY=3.11
HNSWLIB=0.8.0
HOST_PY=${HOST_PYTHON:-python3}   # the host python whose pip fetches the aarch64 wheels
STAMP=$DIR/.built-$RUNTIME
[ -f "$STAMP" ] && { echo "arm64 env ($RUNTIME) already built in $DIR"; exit 0; }
log() { echo "[arm64 $RUNTIME $(( $(date +%s) - T0 ))s] $*"; }
T0=$(date +%s)
mkdir -p "$DIR"/{apt/lists/partial,apt/cache/archives/partial,apt/prefs,sysroot,site,bin,src,wheels}

host_tools() {  # qemu-aarch64-static runs aarch64 binaries; the cross g++ builds hnswlib (no aarch64 wheel)
  command -v qemu-aarch64-static >/dev/null && command -v aarch64-linux-gnu-g++ >/dev/null && return
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      qemu-user-static g++-aarch64-linux-gnu >/dev/null
}

sysroot() {  # the arm64 python3.11 .debs and their dependency closure, unpacked (not installed)
  [ -x "$DIR/sysroot/usr/bin/python$PY" ] && return
  : > "$DIR/apt/sources.list"; : > "$DIR/apt/status"
  cat > "$DIR/apt/apt.conf" <<CONF
APT::Architecture "arm64";
APT::Architectures { "arm64"; };
Dir::State "$DIR/apt";
Dir::State::Lists "$DIR/apt/lists";
Dir::State::status "$DIR/apt/status";
Dir::Cache "$DIR/apt/cache";
Dir::Etc::SourceList "$DIR/apt/sources.list";
Dir::Etc::SourceParts "/etc/apt/sources.list.d";
Dir::Etc::Preferences "$DIR/apt/prefs/none";
Dir::Etc::PreferencesParts "$DIR/apt/prefs";
APT::Sandbox::User "root";
CONF
  APT_CONFIG=$DIR/apt/apt.conf apt-get update -qq
  APT_CONFIG=$DIR/apt/apt.conf apt-get install -y -qq --download-only --no-install-recommends \
      python$PY libstdc++6 libgomp1 libpython$PY-dev >/dev/null
  for deb in "$DIR"/apt/cache/archives/*.deb; do dpkg-deb -x "$deb" "$DIR/sysroot"; done
}

wheels() {  # aarch64 wheels, resolved and installed by the host's pip into site/
  local plat="--platform linux_aarch64 --platform manylinux2014_aarch64" v pkgs
  for v in $(seq 17 36); do plat="$plat --platform manylinux_2_${v}_aarch64"; done  # pip does not widen 2_X down
  if [ "$RUNTIME" = tflite ]; then pkgs="tflite-runtime==2.14.0 numpy==1.26.4"; else pkgs="ai-edge-litert numpy"; fi
  pkgs="$pkgs sentencepiece cryptography pytest"
  local abi="--python-version $PY --implementation cp --abi cp${PY/./} --only-binary=:all:"
  "$HOST_PY" -m pip download -q $plat $abi $pkgs -d "$DIR/wheels"
  "$HOST_PY" -m pip install -q --no-index --find-links "$DIR/wheels" --target "$DIR/site" $plat $abi $pkgs
}

hnswlib() {  # cross-compile hnswlib's bindings (no -march=native: the binary must run on any ARMv8)
  [ -n "$(ls "$DIR"/site/hnswlib.*.so 2>/dev/null)" ] && return
  "$HOST_PY" -m pip download -q --no-deps --no-binary hnswlib "hnswlib==$HNSWLIB" -d "$DIR/src"
  "$HOST_PY" -m pip download -q --no-deps --only-binary=:all: pybind11 -d "$DIR/src"
  tar xzf "$DIR/src/hnswlib-$HNSWLIB.tar.gz" -C "$DIR/src"
  "$HOST_PY" -m zipfile -e "$DIR"/src/pybind11-*.whl "$DIR/src/pybind11"
  aarch64-linux-gnu-g++ -O3 -DNDEBUG -std=c++14 -fPIC -shared -fvisibility=hidden -s -w \
      -DVERSION_INFO="\"$HNSWLIB\"" -I "$DIR/src/hnswlib-$HNSWLIB/hnswlib" -I "$DIR/src/pybind11/pybind11/include" \
      -I "$DIR/sysroot/usr/include" -I "$DIR/sysroot/usr/include/python$PY" \
      "$DIR/src/hnswlib-$HNSWLIB/python_bindings/bindings.cpp" -o "$DIR/site/hnswlib.cpython-${PY/./}-aarch64-linux-gnu.so"
}

launcher() {
  cp "$(dirname "$0")/rpi4_cpuinfo" "$DIR/cpuinfo"
  cat > "$DIR/bin/python-arm" <<'SH'
#!/bin/bash
# aarch64 python under qemu-user. QEMU_CPU=cortex-a72 (a Pi 4): qemu's default "max" CPU advertises
# SVE/SME and ai-edge-litert then picks kernels that gave wrong int8 results. ai-edge-litert also
# crashes when it reads the host's x86 /proc/cpuinfo, so an ARM one is bound over it in a private
# mount namespace (root only; the host is not affected).
D=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
export QEMU_LD_PREFIX=$D/sysroot QEMU_CPU=${QEMU_CPU:-cortex-a72} PYTHONNOUSERSITE=1
export PYTHONPATH=$D/site${PYTHONPATH:+:$PYTHONPATH}
if [ "$(id -u)" = 0 ]; then
  exec unshare -m -- sh -c 'mount --bind "$0" /proc/cpuinfo && exec "$@"' "$D/cpuinfo" \
      qemu-aarch64-static "$D/sysroot/usr/bin/python3.11" "$@"
fi
exec qemu-aarch64-static "$D/sysroot/usr/bin/python3.11" "$@"
SH
  chmod +x "$DIR/bin/python-arm"
}

host_tools; log "host tools ready"
sysroot; log "sysroot: $(du -sh "$DIR/sysroot" | cut -f1)"
wheels; log "wheels: $(du -sh "$DIR/site" | cut -f1)"
hnswlib; log "hnswlib $HNSWLIB cross-compiled"
launcher
"$DIR/bin/python-arm" -c "import platform, numpy, hnswlib, sentencepiece, cryptography; print('aarch64 python', platform.machine(), platform.python_version(), 'numpy', numpy.__version__)"
touch "$STAMP"
log "done"
