#!/usr/bin/env bash
# tools/gpu/run.sh: the whole GPU check in one device call, for the slots that tools/gpu/pack.sh packed:
# the device line, torch's bf16 rate (the yardstick of `bench kernels gemm --ref-tflops`), every GPU test of
# each slot, `ernie bench kernels --quick` and `ernie bench kernels gemm --quick` of each slot, on the same
# card, one after the other. Full logs go to $OUT/logs.tar.xz (a device call brings back at most 8 files);
# the benchmark tables and a short summary are printed last.
# Environment: SLOTS (default: every packed slot), TESTS (test filters, default all; `none` skips them),
# BENCHES (default "gemv gemm"; empty skips them), BUDGET seconds for the whole call (default 540),
# SASS (slots whose kernels' SASS to dump with cuobjdump, to $OUT/sass-SLOT.txt.xz, default none).
# A slot whose folder holds a file `only` (e.g. "gemm") runs just those benchmarks and no tests: a
# comparison build that needs no second test pass. A file `benches` there replaces BENCHES for that slot.
# Benchmarks: gemv, gemm (T = 2048), gemm-small (the plain and MoE GEMMs at T = 16 and 64).
set -uo pipefail
cd "$(dirname "$0")/../.."
t0=$SECONDS
left() { local l=$(( ${BUDGET:-540} - (SECONDS - t0) )); echo $(( l > 1 ? l : 1 )); }   # never 0: timeout 0 waits forever
out=$(mktemp -d /tmp/gpu-logs.XXXXXX)
# The archive is rewritten after every step: a call killed at its limit (no EXIT trap after SIGKILL) still
# brings back what was done. Written under a temporary name and renamed, so it is never half a file.
save_logs() { tar cJf "${OUT:-/tmp}/logs.tar.xz.part" -C "$out" . && mv "${OUT:-/tmp}/logs.tar.xz.part" "${OUT:-/tmp}/logs.tar.xz"; }
trap save_logs EXIT
mkdir -p build/gpustage
tar xJf build/gpucarry/bin.tar.xz -C build/gpustage || { echo "run.sh: cannot unpack build/gpucarry/bin.tar.xz"; exit 1; }
slots=${SLOTS:-$(cd build/gpustage && ls -d */ | tr -d /)}
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,driver_version --format=csv,noheader | tee "$out/device.txt"
benches_of() { cat "build/gpustage/$1/only" 2>/dev/null || cat "build/gpustage/$1/benches" 2>/dev/null || echo "${BENCHES-gemv gemm}"; }
ref=""   # torch's rate is the yardstick of the gemm benchmarks only
for s in $slots; do benches_of "$s" | grep -q gemm && ref=want; done
[ -n "$ref" ] && ref=$(timeout 60 python3 tools/gpu/torch_ref.py 2>"$out/torch.err")
echo "torch bf16 8192^3: ${ref:-unmeasured} TFLOP/s"
summary=""
for s in ${SASS:-}; do   # this machine has no disassembler; the device machine's toolkit has one
    cuo=$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)
    # its own file beside the archive: recompressing megabytes of SASS at every save_logs would cost device time
    # only the batch-1 GEMV kernels (the whole binary's SASS could pass a returned file's 16 MiB)
    timeout 90 "$cuo" -sass "build/gpustage/$s/ernie" 2>&1 |
        awk '/Function :/ { keep = $0 ~ /qt_kernel|qgemv_kernel/ } keep' | xz -1 > "${OUT:-/tmp}/sass-$s.txt.xz"
    summary+="$s sass: $(xz -dc "${OUT:-/tmp}/sass-$s.txt.xz" | grep -c Function) functions"$'\n'
done
for s in $slots; do
    d=build/gpustage/$s
    echo "== slot $s (revision $(cat "$d/revision" 2>/dev/null))"
    if [ "${TESTS:-}" != none ] && [ ! -f "$d/only" ]; then
        timeout "$(left)" "$d/run_gpu_tests" --bin "$d/ernie" --fixtures tests/fixtures ${TESTS:-} > "$out/tests-$s.log" 2>&1
        rc=$?
        grep -E "^  FAIL" "$out/tests-$s.log" | head -20
        summary+="$s tests (rc $rc): $(tail -1 "$out/tests-$s.log")"$'\n'
        save_logs
    fi
    for b in $(benches_of "$s"); do
        case $b in
            gemv) timeout "$(left)" "$d/ernie" bench kernels --quick > "$out/gemv-$s.txt" 2> "$out/gemv-$s.err" ;;
            gemm) timeout "$(left)" "$d/ernie" bench kernels gemm --quick ${ref:+--ref-tflops $ref} \
                      > "$out/gemm-$s.txt" 2> "$out/gemm-$s.err" ;;
            gemm-small) timeout "$(left)" "$d/ernie" bench kernels gemm --reps 5 --tokens 16,64 \
                      ${ref:+--ref-tflops $ref} > "$out/gemm-small-$s.txt" 2> "$out/gemm-small-$s.err" ;;
            *) echo "run.sh: unknown benchmark '$b' in BENCHES"; continue ;;
        esac
        summary+="$s bench $b rc $?"$'\n'
        save_logs
    done
done
echo "== benchmarks (full tables in \$OUT/logs.tar.xz)"
for s in $slots; do
    for b in gemv gemm gemm-small; do
        [ -s "$out/$b-$s.txt" ] && grep -E "copy|rate" "$out/$b-$s.txt" | sed "s/^/$s $b: /"
    done
done
# Side by side: us per call of every row, one column per slot (rows keyed by the text before the numbers).
for b in gemv gemm gemm-small; do
    set -- $(for s in $slots; do [ -s "$out/$b-$s.txt" ] && echo "$s"; done)
    [ $# -gt 0 ] || continue
    echo "-- $b, us per call: $*"
    for s in "$@"; do
        awk -v b="$b" '$1 ~ /^(bf16|wint|ccq)/ && !/:/ {
            n = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+%?$/) { n = i; break }
            if (!n) next
            if (b != "gemv") { n++; while (n <= NF && $n !~ /^[0-9.]+$/) n++ }   # past T and the kernel name
            key = $1; for (i = 2; i < n; i++) key = key " " $i
            us = b == "gemv" ? $(n + 1) : $n
            print key "\t" us }' "$out/$b-$s.txt" > "$out/us-$b-$s.tsv"
    done
    awk -F'\t' 'FNR == 1 { f++ } { if (!($1 in v)) order[++k] = $1; v[$1] = v[$1] sprintf("%12s", $2) }
        END { for (i = 1; i <= k; i++) printf "%-40s%s\n", order[i], v[order[i]] }' \
        $(for s in "$@"; do echo "$out/us-$b-$s.tsv"; done)
done
echo "== summary ($((SECONDS - t0)) s)"
printf '%s' "$summary"
