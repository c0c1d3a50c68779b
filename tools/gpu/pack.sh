#!/usr/bin/env bash
# tools/gpu/pack.sh SLOT [PATCH...]: builds ernie and run_gpu_tests for Hopper only (CUDA_ARCHS=90) and
# packs them, stripped, as slot SLOT into build/gpucarry/bin.tar.xz, small enough for a device call's
# 64 MiB limit (the tree is about 30 MB).
# - Without patches the slot is the working tree as it is (build/gpu-SLOT).
# - With patches it is the last commit with those patches applied, built in a copy of the sources
#   (build/src-SLOT, sharing build/deps): the working tree is not touched.
# The stripped binaries of every slot stay in build/gpustage/ (not carried), so packing a second slot keeps
# the first. Options (before SLOT): --only "LIST" makes a comparison slot that runs just those benchmarks
# and no tests (its test binary is not carried); --benches "LIST" replaces run.sh's BENCHES for the slot
# (gemv, gemm, gemm-small). A call carries at most 64 MiB with the working tree (about 29 MB). The slots'
# binaries are nearly the same bytes (22 MB each: the same CPU code and demo model, kernels that differ
# by a patch), so the archive is compressed with a dictionary larger than all of them together: four
# slots take 10.8 MB instead of the 32.4 MB that xz's default 8 MiB window gave, about ten fit a call.
# Typical use, then one device call:
#   tools/gpu/pack.sh --only gemv base && tools/gpu/pack.sh cand pending/NAME.patch
#   run(command="bash tools/gpu/run.sh", carry=["build/gpucarry"])
set -euo pipefail
only="" benches=""
while [ $# -gt 0 ]; do
    case "$1" in
        --only) only=${2:?--only needs a list}; shift 2 ;;
        --benches) benches=${2:?--benches needs a list}; shift 2 ;;
        -*) echo "pack.sh: unknown option '$1'" >&2; exit 2 ;;
        *) break ;;
    esac
done
for b in $only $benches; do
    case "$b" in gemv | gemm | gemm-small) ;; *) echo "pack.sh: unknown benchmark '$b'" >&2; exit 2 ;; esac
done
slot=${1:?usage: tools/gpu/pack.sh [--only LIST] [--benches LIST] SLOT [PATCH...]   (SLOT: letters, digits, - and _)}
shift
case "$slot" in *[!A-Za-z0-9_-]*) echo "pack.sh: bad slot name '$slot'" >&2; exit 2 ;; esac
for p in "$@"; do [ -f "$p" ] || { echo "pack.sh: no patch file '$p'" >&2; exit 2; }; done
patches=()
for p in "$@"; do patches+=("$(cd "$(dirname "$p")" && pwd)/$(basename "$p")"); done
cd "$(dirname "$0")/../.."
root=$PWD
src=.
if [ ${#patches[@]} -gt 0 ]; then
    src=build/src-$slot
    rm -rf "$src"
    mkdir -p "$src/build"
    git archive HEAD | tar -x -C "$src"
    # the copy lies inside this repository, where git apply would silently skip every path outside the
    # copy: the ceiling makes it a plain directory, patched like patch(1) does, failing if anything fails
    (cd "$src" && GIT_CEILING_DIRECTORIES="$root/build" git apply "${patches[@]}") ||
        { echo "pack.sh: the patches do not apply to HEAD" >&2; exit 1; }
    [ -f build/deps/spm/lib/libsentencepiece.a ] || { echo "pack.sh: build the working tree once first (make)" >&2; exit 1; }
    ln -s "$root/build/deps" "$src/build/deps"
    cp -p build/.deps-ok "$src/build/.deps-ok"
fi
# In a copy, -o keeps make from remaking the shared SentencePiece build and package stamp on account of the
# copy's newer scripts (they must exist: build the working tree once first).
keep=()
[ "$src" = . ] || keep=(-o build/.deps-ok -o build/deps/spm/lib/libsentencepiece.a)
make -C "$src" O="build/gpu-$slot" CUDA_ARCHS=90 -j"$(nproc)" "${keep[@]}" \
    "build/gpu-$slot/ernie" "build/gpu-$slot/run_gpu_tests" >&2
rm -rf "build/gpustage/$slot"
mkdir -p "build/gpustage/$slot" build/gpucarry
strip -o "build/gpustage/$slot/ernie" "$src/build/gpu-$slot/ernie"
if [ -n "$only" ]; then
    echo "$only" > "build/gpustage/$slot/only"
else
    strip -o "build/gpustage/$slot/run_gpu_tests" "$src/build/gpu-$slot/run_gpu_tests"
fi
[ -z "$benches" ] || echo "$benches" > "build/gpustage/$slot/benches"
if [ ${#patches[@]} -gt 0 ]; then
    echo "$(git rev-parse --short HEAD) + $(for p in "$@"; do basename "$p"; done | tr '\n' ' ')" > "build/gpustage/$slot/revision"
else
    git rev-parse --short HEAD > "build/gpustage/$slot/revision"
    git diff --stat > "build/gpustage/$slot/changes" || true
fi
tar cf - -C build/gpustage . | xz -6 --lzma2=dict=192MiB > build/gpucarry/bin.tar.xz.tmp
mv build/gpucarry/bin.tar.xz.tmp build/gpucarry/bin.tar.xz
echo "build/gpucarry/bin.tar.xz: $(du -h build/gpucarry/bin.tar.xz | cut -f1), slots: $(cd build/gpustage && ls -d */ | tr -d / | tr '\n' ' ')" >&2
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
total=$(( tree + $(stat -c %s build/gpucarry/bin.tar.xz) ))
[ "$total" -le $(( 64 * 1024 * 1024 )) ] ||
    echo "pack.sh: warning: the working tree and the carry are $(( total >> 20 )) MiB, over a device call's 64 MiB: drop a slot (rm -r build/gpustage/SLOT, then pack again)" >&2
