#!/usr/bin/env bash
# tools/gpu/pack.sh SLOT: builds the working tree's ernie and run_gpu_tests for Hopper only
# (O=build/gpu-SLOT CUDA_ARCHS=90), strips them into build/gpustage/SLOT/ and packs every slot there into
# build/gpucarry/bin.tar.xz, small enough for the device call's 64 MiB limit (the tree is about 30 MB).
# The stripped binaries of every slot stay in build/gpustage/ (not carried), so packing a second slot keeps
# the first.
# Typical use: pack `base` on main, apply a patch from pending/, pack `cand`, then one device call:
#   run(command="bash tools/gpu/run.sh", carry=["build/gpucarry"])
set -euo pipefail
slot=${1:?usage: tools/gpu/pack.sh SLOT   (letters, digits, - and _)}
case "$slot" in *[!A-Za-z0-9_-]*) echo "pack.sh: bad slot name '$slot'" >&2; exit 2 ;; esac
cd "$(dirname "$0")/../.."
make O="build/gpu-$slot" CUDA_ARCHS=90 -j"$(nproc)" "build/gpu-$slot/ernie" "build/gpu-$slot/run_gpu_tests" >&2
mkdir -p "build/gpustage/$slot" build/gpucarry
strip -o "build/gpustage/$slot/ernie" "build/gpu-$slot/ernie"
strip -o "build/gpustage/$slot/run_gpu_tests" "build/gpu-$slot/run_gpu_tests"
git rev-parse --short HEAD > "build/gpustage/$slot/revision"
git diff --stat > "build/gpustage/$slot/changes" || true
tar cJf build/gpucarry/bin.tar.xz.tmp -C build/gpustage .
mv build/gpucarry/bin.tar.xz.tmp build/gpucarry/bin.tar.xz
echo "build/gpucarry/bin.tar.xz: $(du -h build/gpucarry/bin.tar.xz | cut -f1), slots: $(cd build/gpustage && ls -d */ | tr -d / | tr '\n' ' ')" >&2
