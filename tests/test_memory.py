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
