"""Give the C heap's free pages back to the system after a phase that freed a lot (glibc only).

glibc's malloc serves blocks below its mmap threshold from the heap, and raises that threshold to the size of
every large block freed (up to 32 MB), so many 1-32 MB temporaries come from the heap; freed, they stay mapped
in the process (a no-grad forward of a 568M LoRA model left ~900 MB: bench/lora.py). ``malloc_trim(0)``
hands the free pages back; it is called only when the heap holds at least ``min_free`` free bytes
(``mallinfo2``). The training loop calls it once, after the data report. Not after every step: trimming there
cost full fine-tuning of the bge-m3 shape 8-10 % of its speed and did not lower the peak reliably (the peak
is reached inside a step). Elsewhere (macOS, musl, Windows) both calls are no-ops.
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
