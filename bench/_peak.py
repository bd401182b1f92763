"""Peak matmul throughput of this machine, measured in the benchmark's own run (the MFU denominator).

``matmul_peak("bf16")`` times square bf16 matmuls large enough to reach the AMX / AVX-512 kernels' steady state
with torch's current thread count, and returns the best of a few repeats in FLOP/s (2 n^3 per matmul).
``matmul_peak("int8")`` does the same with ``torch._int_mm`` (int8 x int8 -> int32) where torch has it.
"""

from __future__ import annotations

import time

import torch


def matmul_peak(dtype: str = "bf16", n: int = 2048, seconds: float = 1.5, repeats: int = 3) -> float:
    """Best observed FLOP/s of (n x n) @ (n x n) matmuls in ``dtype`` ("bf16", "fp32" or "int8")."""
    if dtype == "int8":
        a = torch.randint(-64, 64, (n, n), dtype=torch.int8)
        b = torch.randint(-64, 64, (n, n), dtype=torch.int8)
        mm = torch._int_mm  # int8 GEMM with int32 accumulation (oneDNN / VNNI / AMX-int8 on CPU)
    else:
        torch_dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
        a, b = torch.randn(n, n, dtype=torch_dtype), torch.randn(n, n, dtype=torch_dtype)
        mm = torch.mm
    mm(a, b)  # warm-up: kernel selection and packing
    best = 0.0
    for _ in range(repeats):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds / repeats:
            mm(a, b)
            count += 1
        best = max(best, 2.0 * n**3 * count / (time.perf_counter() - start))
    return best


if __name__ == "__main__":
    for kind in ("bf16", "fp32", "int8"):
        try:
            print(f"{kind}: {matmul_peak(kind) / 1e9:.0f} GFLOP/s (threads {torch.get_num_threads()})")
        except RuntimeError as exc:  # _int_mm is missing on some builds
            print(f"{kind}: not available ({exc})")
