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

The opposite case is speed: glibc's defaults give freed pages back as it goes (blocks above the dynamic mmap
threshold are unmapped when freed, a free top of the heap above 128 KB-64 MB is trimmed), and every page of the
next block of that size is then a page fault that the kernel zero-fills. A bf16 training step of the bundled
model on SNLI pairs took ~5,500 page faults (~22 MB of fresh pages) and an STS-B encode of 3,000 texts
~20,000-30,000. ``reuse_freed_blocks`` fixes the thresholds (blocks up to 64 MB from the heap, up to 256 MB
free at its top kept), which takes them to ~0: 4-7 % off that training step and 3-10 % off that encode, for
as much resident memory as the largest working set held before (a freed block is reused, not returned). The
training loop and encode call it once per process, unless a LoRA run trims its heap for memory
(``trim_between_layers``), the user set glibc's ``MALLOC_*`` variables, or ``EMBTUNE_REUSE_HEAP=0``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

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
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
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


REUSE_MMAP_THRESHOLD = 64 << 20  # blocks up to this size come from the heap (glibc's dynamic maximum: 32 MB)
REUSE_TRIM_THRESHOLD = 256 << 20  # the heap's top is trimmed only when this much of it is free
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
_heap = {"reused": False, "memory_first": False}


def reuse_freed_blocks() -> bool:
    """Fix glibc's thresholds so that freed blocks of up to 64 MB are reused instead of unmapped or trimmed
    (see the module docstring); once per process. False (nothing changed) where it does not apply: not glibc,
    a LoRA run that trims for memory, ``MALLOC_*`` variables set by the user, or ``EMBTUNE_REUSE_HEAP=0``."""
    if _heap["reused"]:
        return True
    if _heap["memory_first"] or os.environ.get("EMBTUNE_REUSE_HEAP", "1") == "0":
        return False
    if any(name in os.environ for name in _USER_SETTINGS) or "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    libc = _libc()
    if libc is None:
        return False
    # The mmap threshold first, and the trim threshold only when it took: either one turns glibc's dynamic
    # thresholds off, and a trim threshold alone would leave every block above 128 KB a fresh mmap (2x slower
    # steps). Some glibc versions refuse a mmap threshold above 32 MB.
    done = any(libc.mallopt(_M_MMAP_THRESHOLD, size) == 1 for size in (REUSE_MMAP_THRESHOLD, 32 << 20))
    done = done and libc.mallopt(_M_TRIM_THRESHOLD, REUSE_TRIM_THRESHOLD) == 1
    _heap["reused"] = done
    return done


TRIM_EVERY_LAYERS = 4
TRIM_MIN_FREE = 64 << 20


def trim_between_layers(encoder, every: int = TRIM_EVERY_LAYERS, min_free: int = TRIM_MIN_FREE) -> int:
    """Register forward hooks on the layers of ``encoder`` (its longest ``nn.ModuleList``) that call
    ``release_free_heap(min_free)`` after every ``every``-th layer forward; return the number of hooked layers
    (0 where malloc_trim is unavailable or no layer list is found)."""
    from torch import nn

    if _libc() is None:
        return 0
    _heap["memory_first"] = True  # and no reuse_freed_blocks from now on
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
