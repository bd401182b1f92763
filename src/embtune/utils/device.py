"""Device and precision helpers: pick the device, and know when bf16 is fast on it."""

from __future__ import annotations

import functools
import logging

import torch

logger = logging.getLogger(__name__)


def default_device() -> torch.device:
    """CUDA when available, else Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@functools.cache
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def fast_bf16(device: torch.device | str) -> bool:
    """True where bf16 matmuls run natively: AMX or AVX-512-bf16 CPUs, and GPUs of compute capability >= 8."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    if device.type == "cpu":
        flags = _cpu_flags()
        if {"amx_bf16", "avx512_bf16"} & flags:
            return True
        capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "")()
        return "AMX" in str(capability).upper()
    return False


@functools.cache
def warn_slow_on_this_cpu(precision: str) -> None:
    """Log once per process that ``precision`` ("bf16" or "int8") has no native instructions on this CPU."""
    if precision == "bf16":
        logger.warning("this CPU has no native bf16 (AVX512-BF16 / AMX): bf16 matmuls are emulated, ~50x slower "
                       "than fp32 on an AVX2 EPYC; use fp32 here (precision='fp32', or args.bf16 left unset: "
                       "'auto' picks fp32 on such CPUs)")
    elif precision == "int8":
        logger.warning("this CPU has no int8 dot-product instructions (VNNI / AMX): precision='int8' is not "
                       "faster than fp32 here, and its weights use 7 bits (to keep oneDNN's 16-bit sums exact); "
                       "use precision='fp32' (or 'auto') on this CPU")


def warn_if_bf16_is_emulated(device: torch.device | str) -> None:
    """``warn_slow_on_this_cpu("bf16")`` when bf16 is asked for on a CPU without native bf16."""
    if torch.device(device).type == "cpu" and not fast_bf16(device):
        warn_slow_on_this_cpu("bf16")


def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype:
    """Map 'auto' | 'bf16' | 'fp16' | 'fp32' to the compute dtype used on ``device``."""
    from ..errors import EmbtuneError

    if precision == "auto":
        return torch.bfloat16 if fast_bf16(device) else torch.float32
    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "fp32": torch.float32, "float32": torch.float32}
    if precision not in table:
        raise EmbtuneError(f"unknown precision {precision!r}; use auto, bf16, fp16, fp32 or int8 (encode)")
    if table[precision] == torch.bfloat16:
        warn_if_bf16_is_emulated(device)
    return table[precision]
