# tools/gpu/torch_ref.py: torch.matmul's bf16 rate at 8192^3 on this GPU (TFLOP/s, median of 9 rounds of 5
# products, CUDA events after warm-up): the cuBLAS yardstick for `ernie bench kernels gemm --ref-tflops`.
import torch

n, reps, rounds = 8192, 5, 9
a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
b = torch.randn_like(a)
for _ in range(reps):
    a @ b
s, e, times = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True), []
for _ in range(rounds):
    s.record()
    for _ in range(reps):
        a @ b
    e.record()
    e.synchronize()
    times.append(s.elapsed_time(e) / reps)
print("%.1f" % (2 * n**3 / sorted(times)[rounds // 2] / 1e9))
