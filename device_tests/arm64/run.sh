#!/usr/bin/env bash
# Run device_tests/ on an emulated aarch64 userland (Debian bookworm = Raspberry Pi OS 64-bit), once with
# tflite-runtime and once with ai-edge-litert, against a kit made on the workstation (device_tests/prepare.py).
#
#   device_tests/arm64/run.sh KIT [OUT]      # reports: OUT/arm64-tflite.json, OUT/arm64-litert.json
#
# Environments are built once into $ARM64_ENVS (default .arm64/ in the project). Timings under qemu are
# emulation, 150-400x slower than a real Pi: they say nothing about device speed.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
KIT=$(cd "$1" && pwd)
OUT=$(mkdir -p "${2:-$ROOT/benchmarks/results}" && cd "${2:-$ROOT/benchmarks/results}" && pwd)
ENVS=${ARM64_ENVS:-$ROOT/.arm64}
status=0
for runtime in ${ARM64_RUNTIMES:-tflite litert}; do
  bash "$ROOT/device_tests/arm64/build_env.sh" "$ENVS/$runtime" "$runtime"
  echo "== device_tests on emulated aarch64 with $runtime"
  start=$(date +%s)
  if (cd "$ROOT" && EDGE_REC_EMULATED="qemu-user $(qemu-aarch64-static --version | head -1 | awk '{print $3}'), QEMU_CPU=cortex-a72" \
      PYTHONPATH="$ROOT" "$ENVS/$runtime/bin/python-arm" -m pytest device_tests --kit "$KIT" \
      --report "$OUT/arm64-$runtime.json" -p no:cacheprovider -q); then
    echo "== $runtime: passed in $(( $(date +%s) - start )) s; environment $(du -sm "$ENVS/$runtime/site" | cut -f1) MB site-packages + $(du -sm "$ENVS/$runtime/sysroot" | cut -f1) MB sysroot"
  else
    status=1
    echo "== $runtime: FAILED"
  fi
done
exit $status
