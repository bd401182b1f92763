"""Give the C heap's free pages back to the system after a phase that freed a lot (glibc only).

glibc's malloc serves blocks below its mmap threshold from the heap, and raises that threshold to the size of
every large block freed (up to 32 MB), so many 1-32 MB temporaries come from the heap; freed, they stay mapped
in the process (a no-grad forward of a 568M LoRA model left ~900 MB: bench/lora.py). ``malloc_trim(0)``
hands the free pages back; it is called only when the heap holds at least ``min_free`` free bytes
(``mallinfo2``). The training loop calls it once, after the data report. Not after every step: trimming there
cost full fine-tuning of the bge-m3 shape 8-10 % of its speed and did not lower the peak reliably (the peak
is reached inside a step). LoRA runs, whose point is memory, trim inside the step instead: every few encoder
layers of each forward (and of each recomputation under gradient checkpointing), ``trim_between_layers``;
on the bge-m3 shape that lowers the peak from ~2.3-2.5 to ~1.95 GB for 2-8 % of the step time (a fixed
``M_MMAP_THRESHOLD`` of 64 KB-1 MB reaches ~1.5 GB but makes steps 1.7x slower: every large tensor is then a
fresh mmap). Elsewhere (macOS, musl, Windows) these calls are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

DEFAULT_MIN_FREE = 256 << 20  # trim when at least this much of the heap is free


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):  # not glibc (or glibc < 2.33 without mallinfo2)
        return None
    return libc


def free_heap_bytes() -> int:
    """Bytes the C heap holds free (glibc's ``mallinfo2().fordblks``); 0 where unknown."""
    libc = _libc()
    return int(libc.mallinfo2().fordblks) if libc is not None else 0


def release_free_heap(min_free: int = DEFAULT_MIN_FREE) -> bool:
    """``malloc_trim(0)`` when at least ``min_free`` bytes of the heap are free; True when it trimmed."""
    libc = _libc()
    if libc is None or free_heap_bytes() < min_free:
        return False
    libc.malloc_trim(0)
    return True


TRIM_EVERY_LAYERS = 4
TRIM_MIN_FREE = 64 << 20


def trim_between_layers(encoder, every: int = TRIM_EVERY_LAYERS, min_free: int = TRIM_MIN_FREE) -> int:
    """Register forward hooks on the layers of ``encoder`` (its longest ``nn.ModuleList``) that call
    ``release_free_heap(min_free)`` after every ``every``-th layer forward; return the number of hooked layers
    (0 where malloc_trim is unavailable or no layer list is found)."""
    from torch import nn

    if _libc() is None:
        return 0
    lists = [m for m in encoder.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        return 0
    layers = max(lists, key=len)
    if getattr(layers, "_embtune_heap_trim", False):  # hooked already (a LoRA run with checkpointing)
        return len(layers)
    layers._embtune_heap_trim = True
    calls = [0]

    def after_layer(*_args) -> None:
        calls[0] += 1
        if calls[0] % every == 0:
            release_free_heap(min_free)

    for layer in layers:
        layer.register_forward_hook(after_layer)
    return len(layers)
