"""The CPU's measured matmul peak, for MFU figures: bf16 and int8 probes run in the same process as the bench.

    from _peak import measure_peaks   # bench/train.py and bench/encode.py
    peaks = measure_peaks()           # {"bf16_gflops": ..., "int8_gops": ..., "fp32_gflops": ...}

Each probe times a square product large enough to keep the matrix units busy (AMX bf16 / int8 on this kind of
CPU) with torch's own kernels (oneDNN), at the current torch thread count, and keeps the best of a few runs.
MFU = achieved FLOP/s of the workload (from its shapes and real token counts) / this peak. On CPUs without
native bf16 the bf16 probe is a 512-square (emulated, ~50x slower than fp32); without int8 dot products (AVX2)
the int8 probe is oneDNN's int8 matmul with 7-bit weights, the product embtune's int8 runs there.
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
    from embtune.models.int8 import HAS_INT8_DOT
    from embtune.utils.device import fast_bf16

    torch.manual_seed(0)

    def square(size: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, float]:
        if dtype == torch.int8:
            a = torch.randint(-127, 128, (size, size), dtype=torch.int8)
            return a, torch.randint(-127, 128, (size, size), dtype=torch.int8).t().contiguous().t(), 2.0 * size**3
        return torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype), 2.0 * size**3

    # on CPUs without native bf16 / int8 dot products those products are emulated, 20-50x slower than fp32:
    # a smaller square keeps their probe to a second or two (the rate is the same)
    small = 512
    a16, b16, f16 = square(n if fast_bf16("cpu") else small, torch.bfloat16)
    a8, b8, f8 = square(n, torch.int8)
    int8_mm = lambda: torch._int_mm(a8, b8)  # noqa: E731
    if not HAS_INT8_DOT:  # what embtune's int8 runs there: oneDNN with 7-bit weights (models/int8.py)
        packed = torch.ops.onednn.qlinear_prepack(b8.t().clamp(-63, 63).contiguous(), None)
        ones, zeros = torch.ones(n), torch.zeros(n, dtype=torch.int64)
        int8_mm = lambda: torch.ops.onednn.qlinear_pointwise(a8, 1.0, 0, packed, ones, zeros, None, 1.0, 0,  # noqa: E731
                                                             torch.float32, "none", [], "")
    a, b, f32 = square(n, torch.float32)
    with torch.inference_mode():
        peaks = {
            "bf16_gflops": _best_rate(lambda: torch.mm(a16, b16), f16, repeats),
            "int8_gops": _best_rate(int8_mm, f8, repeats),
            "fp32_gflops": _best_rate(lambda: torch.mm(a, b), f32, max(2, repeats // 2)),
        }
    return {k: round(v, 1) for k, v in peaks.items()} | {"threads": torch.get_num_threads(), "n": n}


def encoder_flops_per_token(layers: int, hidden: int, intermediate: int, seq_len: float) -> float:
    """Forward FLOPs per real token of a BERT-style encoder: 2 x (4 h^2 + 2 h i) per layer for the
    projections and FFN, plus 2 x 2 x seq_len x h for the attention products (scores and weighted sum)."""
    return layers * (2.0 * (4 * hidden * hidden + 2 * hidden * intermediate) + 4.0 * seq_len * hidden)


if __name__ == "__main__":
    print(measure_peaks())
