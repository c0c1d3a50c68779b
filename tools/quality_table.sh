#!/usr/bin/env bash
# tools/quality_table.sh [ERNIE] [WINDOWS]: the quality table of README.md. Imports the demo checkpoint
# (tools/demo/checkpoint) with every projection matrix (attention, dense MLP, experts, shared experts)
# in one format and the embeddings, norms and router as stored, then measures perplexity on the
# held-out text and the KL divergence and top-1 agreement against the bf16 import.
# FORMATS="f1 f2 ..." picks the rows; CALIB=TEXTFILE adds, after each format, the same import with
# `--calib TEXTFILE` (8192 tokens).
set -euo pipefail
ernie=${1:-bin/ernie}
windows=${2:-40}
ck=tools/demo/checkpoint
text=tools/demo/data/heldout.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$ernie" import "$ck" -o "$tmp/bf16.ernie" --recipe bf16 2>/dev/null
echo "| weights | bits per weight (all weights) | perplexity | KL from bf16 | top-1 agreement |"
echo "| --- | --- | --- | --- | --- |"
row() { # FORMAT [import options...]
    local f=$1
    shift
    out="$tmp/q.ernie"
    bpw=$("$ernie" import "$ck" -o "$out" --force --recipe bf16 --tensor-type "_proj\$=$f" "$@" --json 2>/dev/null |
          sed -n 's/.*"bpw": \([0-9.]*\).*/\1/p')
    j=$("$ernie" perplexity "$out" "$text" -c 256 --windows "$windows" --ref "$tmp/bf16.ernie" --json 2>/dev/null)
    ppl=$(sed -n 's/.*"perplexity": \([0-9.]*\).*/\1/p' <<<"$j")
    kl=$(sed -n 's/.*"kl": \([0-9.]*\).*/\1/p' <<<"$j")
    top=$(sed -n 's/.*"top1_agreement": \([0-9.]*\).*/\1/p' <<<"$j")
    printf '| %s | %.3f | %.3f | %.4f | %.1f%% |\n' "$f${1:+, calibrated}" "$bpw" "$ppl" "$kl" "$(echo "$top * 100" | bc -l)"
}
for f in ${FORMATS:-bf16 wint8 wint4 ccq2.75 ccq2.5 ccq2.06 ccq2.06+icq ccq2.06+crvq wint2g64}; do
    row "$f"
    if [ -n "${CALIB:-}" ]; then row "$f" --calib "$CALIB" --calib-tokens 8192; fi
done
