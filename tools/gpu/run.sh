#!/usr/bin/env bash
# tools/gpu/run.sh: the whole GPU check in one device call, for the slots that tools/gpu/pack.sh packed:
# the device line, torch's bf16 rate (the yardstick of `bench kernels gemm --ref-tflops`), every GPU test of
# each slot, `ernie bench kernels --quick` and `ernie bench kernels gemm --quick` of each slot, on the same
# card, one after the other. Full logs go to $OUT (they come back); a short summary is printed last.
# Environment: SLOTS (default: every packed slot), TESTS (test filters, default all), BENCH=0 skips the
# benchmarks, BUDGET seconds for the whole call (default 540).
set -uo pipefail
cd "$(dirname "$0")/../.."
t0=$SECONDS
left() { echo $(( ${BUDGET:-540} - (SECONDS - t0) )); }
out=${OUT:-/tmp/gpu-out}
mkdir -p "$out"
tar xJf build/gpucarry/bin.tar.xz -C build/gpucarry || { echo "run.sh: cannot unpack build/gpucarry/bin.tar.xz"; exit 1; }
slots=${SLOTS:-$(cd build/gpucarry && ls -d */ | tr -d /)}
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,driver_version --format=csv,noheader | tee "$out/device.txt"
ref=$(timeout 60 python3 tools/gpu/torch_ref.py 2>"$out/torch.err")
echo "torch bf16 8192^3: ${ref:-unmeasured} TFLOP/s"
summary=""
for s in $slots; do
    d=build/gpucarry/$s
    echo "== slot $s (revision $(cat "$d/revision" 2>/dev/null))"
    timeout "$(left)" "$d/run_gpu_tests" --bin "$d/ernie" --fixtures tests/fixtures ${TESTS:-} > "$out/tests-$s.log" 2>&1
    rc=$?
    grep -E "^  FAIL" "$out/tests-$s.log" | head -20
    summary+="$s tests (rc $rc): $(tail -1 "$out/tests-$s.log")"$'\n'
    [ "${BENCH:-1}" = 0 ] && continue
    timeout "$(left)" "$d/ernie" bench kernels --quick > "$out/gemv-$s.txt" 2> "$out/gemv-$s.err"
    summary+="$s bench kernels rc $?"$'\n'
    timeout "$(left)" "$d/ernie" bench kernels gemm --quick ${ref:+--ref-tflops $ref} > "$out/gemm-$s.txt" 2> "$out/gemm-$s.err"
    summary+="$s bench kernels gemm rc $?"$'\n'
done
echo "== benchmarks (full tables in \$OUT)"
for s in $slots; do
    for b in gemv gemm; do
        [ -s "$out/$b-$s.txt" ] && { echo "-- $s $b"; grep -E "moe|copy|rate" "$out/$b-$s.txt" | head -40; }
    done
done
echo "== summary ($((SECONDS - t0)) s)"
printf '%s' "$summary"
