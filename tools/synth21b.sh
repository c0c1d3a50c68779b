#!/bin/bash
# tools/synth21b.sh: builds tools/synth_checkpoint.c and writes a synthetic ERNIE-4.5-21B-A3B-PT checkpoint
# (random bf16 weights, the release's names, shapes, dtypes, shards and index; about 44 GB) into OUT_DIR.
#   tools/synth21b.sh OUT_DIR [synth_checkpoint options: --seed N, --layers N, --experts N, --shard-bytes N,
#                             --tokenizer DIR]
# Run from the repository root (the default tokenizer is tests/fixtures/tok). docs/import-21b.md uses it
# to time a full-size import: tools/synth21b.sh /work/big21b && bin/ernie import /work/big21b ...
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: tools/synth21b.sh OUT_DIR [--seed N] [--layers N] [--experts N] [--shard-bytes N] [--tokenizer DIR]" >&2
    exit 2
fi
cd "$(dirname "$0")/.."
mkdir -p build/tools
${CC:-gcc} -std=c11 -O2 -Wall -Wextra -o build/tools/synth_checkpoint tools/synth_checkpoint.c -lm
exec build/tools/synth_checkpoint "$@"
