"""The CPU's measured matmul peak, for MFU figures: bf16 and int8 probes run in the same process as the bench.

    from _peak import measure_peaks   # bench/train.py and bench/encode.py
    peaks = measure_peaks()           # {"bf16_gflops": ..., "int8_gops": ..., "fp32_gflops": ...}

Each probe times a square product large enough to keep the matrix units busy (AMX bf16 / int8 on this kind of
CPU) with torch's own kernels (oneDNN), at the current torch thread count, and keeps the best of a few runs.
MFU = achieved FLOP/s of the workload (from its shapes and real token counts) / this peak.
"""

from __future__ import annotations

import time

import torch


def _best_rate(fn, flops: float, repeats: int) -> float:
    fn()  # warm-up: kernel selection, weight reorders, page faults
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def measure_peaks(n: int = 2048, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of an (n x n) @ (n x n) product in bf16 and fp32, and GOP/s of int8 x int8 -> int32."""
    torch.manual_seed(0)
    flops = 2.0 * n**3
    a, b = torch.randn(n, n), torch.randn(n, n)
    a16, b16 = a.bfloat16(), b.bfloat16()
    a8 = torch.randint(-127, 128, (n, n), dtype=torch.int8)
    b8 = torch.randint(-127, 128, (n, n), dtype=torch.int8).t().contiguous().t()  # the fast (column-major) layout
    with torch.inference_mode():
        peaks = {
            "bf16_gflops": _best_rate(lambda: torch.mm(a16, b16), flops, repeats),
            "int8_gops": _best_rate(lambda: torch._int_mm(a8, b8), flops, repeats),
            "fp32_gflops": _best_rate(lambda: torch.mm(a, b), flops, max(2, repeats // 2)),
        }
    return {k: round(v, 1) for k, v in peaks.items()} | {"threads": torch.get_num_threads(), "n": n}


def encoder_flops_per_token(layers: int, hidden: int, intermediate: int, seq_len: float) -> float:
    """Forward FLOPs per real token of a BERT-style encoder: 2 x (4 h^2 + 2 h i) per layer for the
    projections and FFN, plus 2 x 2 x seq_len x h for the attention products (scores and weighted sum)."""
    return layers * (2.0 * (4 * hidden * hidden + 2 * hidden * intermediate) + 4.0 * seq_len * hidden)


if __name__ == "__main__":
    print(measure_peaks())
