#!/usr/bin/env bash
# tools/build-spm.sh OUTDIR: fetches Debian's SentencePiece source package once and builds its static
# library (with the bundled protobuf-lite) into OUTDIR. Leaves OUTDIR/lib/libsentencepiece.a and
# OUTDIR/include/sentencepiece_processor.h.
#
# apt-get source needs a deb-src entry; rather than edit the machine's sources, it uses a private
# list under OUTDIR that points at the same mirror as the machine's own binary sources.
set -euo pipefail
out=$(realpath -m "$1")
mkdir -p "$out/apt/lists/partial" "$out/src"
cd "$out"

if ! ls src/sentencepiece-*/CMakeLists.txt >/dev/null 2>&1; then
    mirror=$(grep -rhoE 'https?://[^ ]*debian[^ ]*/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
             | grep -v security | head -1 | tr -d " " || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    echo "deb-src $mirror $suite main" > apt/sources.list
    o=(-o "Dir::Etc::SourceList=$out/apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
       -o "Dir::State::Lists=$out/apt/lists" -o "APT::Sandbox::User=root")
    echo "ernie build: fetching the sentencepiece source package from $mirror ($suite)" >&2
    apt-get "${o[@]}" update -qq >&2
    (cd src && apt-get "${o[@]}" source --download-only -qq sentencepiece >&2)
    tar -C src -xzf src/sentencepiece_*.orig.tar.gz
fi

srcdir=$(ls -d src/sentencepiece-*/ | head -1)
echo "ernie build: building SentencePiece from $srcdir (static, bundled protobuf-lite)" >&2
mkdir -p build
cmake -S "$srcdir" -B build -DCMAKE_BUILD_TYPE=Release -DSPM_ENABLE_SHARED=OFF \
      -DSPM_ENABLE_TCMALLOC=OFF -DSPM_USE_BUILTIN_PROTOBUF=ON -DSPM_BUILD_TEST=OFF > build/cmake.log 2>&1 \
    || { cat build/cmake.log >&2; exit 1; }
make -C build -j"$(nproc)" sentencepiece-static > build/make.log 2>&1 || { tail -50 build/make.log >&2; exit 1; }
mkdir -p lib include
cp build/src/libsentencepiece.a lib/
cp "$srcdir/src/sentencepiece_processor.h" include/
