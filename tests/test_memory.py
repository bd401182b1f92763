"""utils.memory: freed C heap pages go back to the system, and only when enough of them are free."""

from __future__ import annotations

import ctypes

import pytest

from embtune.utils import memory


def _rss_anon_mib() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) // 1024 for line in fh if line.startswith("RssAnon"))


@pytest.mark.skipif(memory._libc() is None, reason="glibc only (malloc_trim, mallinfo2)")
def test_freed_heap_blocks_are_given_back_only_above_the_threshold() -> None:
    libc = memory._libc()
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(64 << 10) for _ in range(3200)]  # 200 MB of 64 KB blocks: heap, not mmap
    for block in blocks:
        ctypes.memset(block, 1, 64 << 10)  # touch them: resident
    keep = libc.malloc(64 << 10)  # a live block above them (from the top) keeps the heap from shrinking itself
    for block in blocks:
        libc.free(block)
    try:
        assert memory.free_heap_bytes() >= 150 << 20
        assert not memory.release_free_heap(min_free=1 << 40)  # below the threshold: nothing done
        before = _rss_anon_mib()
        assert memory.release_free_heap(min_free=64 << 20)
        assert _rss_anon_mib() <= before - 100
    finally:
        libc.free(keep)


def test_without_glibc_both_calls_are_no_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_libc", lambda: None)
    assert memory.free_heap_bytes() == 0
    assert memory.release_free_heap(min_free=0) is False


def test_trim_between_layers_hooks_the_layer_list_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch
    from torch import nn

    if memory._libc() is None:
        pytest.skip("glibc only (malloc_trim)")

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.heads = nn.ModuleList([nn.Linear(4, 4)])  # a shorter list: not the layers
            self.layers = nn.ModuleList([nn.Linear(4, 4) for _ in range(8)])

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return self.heads[0](x)

    calls: list[int] = []
    monkeypatch.setattr(memory, "release_free_heap", lambda min_free: calls.append(min_free) or False)
    encoder = Encoder()
    assert memory.trim_between_layers(encoder) == 8
    assert memory.trim_between_layers(encoder) == 8  # a second call (LoRA + checkpointing) adds no hooks
    encoder(torch.zeros(2, 4))
    assert calls == [memory.TRIM_MIN_FREE] * (8 // memory.TRIM_EVERY_LAYERS)


_FAULTS_SCRIPT = """
import ctypes, resource, sys
from embtune.utils import memory
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
reused = memory.reuse_freed_blocks() if sys.argv[1] == "reuse" else False
size = 48 << 20  # above glibc's dynamic mmap threshold (at most 32 MB): a fresh mmap each time by default
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(int(reused), faults[1] + faults[2])
"""


def _faults(mode: str, env: dict | None = None) -> tuple[bool, int]:
    import os
    import subprocess
    import sys

    run_env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "EMBTUNE_REUSE_HEAP"}
    run_env.update(env or {})
    out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT, mode], capture_output=True, text=True, check=True,
                         env=run_env, timeout=60).stdout.split()
    return bool(int(out[0])), int(out[1])


@pytest.mark.skipif(memory._libc() is None, reason="glibc only (mallopt)")
def test_reuse_freed_blocks_serves_a_freed_large_block_again_without_page_faults() -> None:
    pages = (48 << 20) // 4096
    reused, faults = _faults("reuse")
    assert reused and faults < pages // 10  # the second and third 48 MB blocks reuse the first one's pages
    reused, faults = _faults("default")
    assert not reused and faults > pages  # glibc's default: each one is a fresh mmap, every page faulted in
    reused, faults = _faults("reuse", {"EMBTUNE_REUSE_HEAP": "0"})
    assert not reused and faults > pages
    reused, faults = _faults("reuse", {"MALLOC_TRIM_THRESHOLD_": str(1 << 20)})  # the user's own settings win
    assert not reused


def test_reuse_freed_blocks_is_off_once_a_lora_run_trims_for_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    class Libc:
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 1

    monkeypatch.setattr(memory, "_libc", lambda: Libc())
    monkeypatch.setattr(memory, "_heap", {"reused": False, "memory_first": True})
    assert memory.reuse_freed_blocks() is False and calls == []
    monkeypatch.setattr(memory, "_heap", {"reused": False, "memory_first": False})
    assert memory.reuse_freed_blocks() is True
    assert calls == [(-3, memory.REUSE_MMAP_THRESHOLD), (-1, memory.REUSE_TRIM_THRESHOLD)]  # mmap first
    assert memory.reuse_freed_blocks() is True and len(calls) == 2  # once per process


def test_reuse_freed_blocks_sets_no_trim_threshold_when_the_mmap_threshold_is_refused(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    class Libc:  # a glibc that refuses every mmap threshold: a trim threshold alone would make steps 2x slower
        def mallopt(self, param: int, value: int) -> int:
            calls.append((param, value))
            return 0 if param == -3 else 1

    monkeypatch.setattr(memory, "_libc", lambda: Libc())
    monkeypatch.setattr(memory, "_heap", {"reused": False, "memory_first": False})
    assert memory.reuse_freed_blocks() is False
    assert calls == [(-3, memory.REUSE_MMAP_THRESHOLD), (-3, 32 << 20)]
