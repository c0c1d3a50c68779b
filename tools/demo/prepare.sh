#!/usr/bin/env bash
# tools/demo/prepare.sh [OUTDIR]: builds the demo model's data on this (CPU, Debian 12) machine:
# a small public corpus (King James Bible, fortune cookies, Tang and Song poems), its train/held-out split,
# chat-formatted training examples, and the demo SentencePiece tokenizer with ERNIE-style side files.
# Default OUTDIR: tools/demo/data. Its output is committed; run it again only to change the data.
# The GPU half is tools/demo/train.py; tools/demo/README.md has the whole recipe.
#
# Everything comes from Debian packages (installed here when missing, as root), so it reruns offline and
# gives the same bytes each time: no randomness but a fixed seed, one trainer thread.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/data}
mkdir -p "$out"

need=()
for p in sentencepiece bible-kjv bible-kjv-text fortunes fortunes-min fortunes-zh python3-sentencepiece \
         python3-protobuf; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then echo "prepare: need root to install: ${need[*]}" >&2; exit 1; fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi

# Debian's python3, not a pyenv shim: the sentencepiece and protobuf modules are Debian's.
exec /usr/bin/python3 "$here/prepare.py" "$out"
