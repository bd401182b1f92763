"""NoDuplicatesBatchSampler, hash_texts and the length-aware option (with a hypothesis property test)."""

from __future__ import annotations

import builtins
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embtune.data import hashing
from embtune.data.hashing import hash_texts
from embtune.data.samplers import NoDuplicatesBatchSampler, ShuffledBatchSampler, padding_waste


def _repeated_texts(n: int, seed: int = 0) -> tuple[list[list[str]], np.ndarray]:
    """Three text columns with heavy repetition: 'yes' on ~15% of rows, a 30-word vocabulary, and
    a unique text that sometimes equals the anchor."""
    rng = np.random.default_rng(seed)
    anchor = [f"q{i}" for i in rng.integers(0, 30, n)]
    positive = [f"p{i}" if rng.random() > 0.1 else anchor[i] for i in range(n)]
    flag = ["yes" if rng.random() < 0.15 else f"n{i}" for i in range(n)]
    columns = [anchor, positive, flag]
    return columns, np.stack([hash_texts(c) for c in columns], axis=1)


def _assert_no_shared_text(batch: list[int], columns: list[list[str]]) -> None:
    owner: dict[str, int] = {}
    for row in batch:
        for text in {c[row] for c in columns}:
            assert owner.setdefault(text, row) == row, f"{text!r} in rows {owner[text]} and {row}"


@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_no_text_twice_in_a_batch_and_every_row_once(drop_last: bool, batch_size: int) -> None:
    columns, keys = _repeated_texts(300)
    sampler = NoDuplicatesBatchSampler(keys, batch_size, drop_last=drop_last, seed=1)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        for batch in batches:
            _assert_no_shared_text(batch, columns)
        rows = [i for b in batches for i in b]
        assert len(rows) == len(set(rows))
        if drop_last:
            assert all(len(b) == batch_size for b in batches)
        else:
            assert sorted(rows) == list(range(300))


def test_full_batches_come_first_and_short_ones_only_when_texts_run_out() -> None:
    # 40 rows share one text: at most one per batch, so 40 batches; the 60 others fill the first ones.
    keys = np.array([[7 if i < 40 else 1000 + i] for i in range(100)])
    batches = list(NoDuplicatesBatchSampler(keys, 4))
    assert len(batches) == 40
    sizes = [len(b) for b in batches]
    assert sizes == sorted(sizes, reverse=True)
    assert all(sum(keys[i, 0] == 7 for i in b) == 1 for b in batches)


@pytest.mark.parametrize("world_size", [2, 3])
def test_no_duplicates_hold_across_the_whole_global_batch(world_size: int) -> None:
    columns, keys = _repeated_texts(200)
    ranks = [NoDuplicatesBatchSampler(keys, 4, rank=r, world_size=world_size) for r in range(world_size)]
    per_rank = [list(s) for s in ranks]
    for parts in zip(*per_rank, strict=True):
        _assert_no_shared_text(sum(parts, []), columns)


def test_plan_depends_only_on_key_equality() -> None:
    # xxhash vs blake2b (or any relabelling of the keys) give the same batches.
    _, keys = _repeated_texts(300)
    _, relabelled = np.unique(keys, return_inverse=True)
    a = list(NoDuplicatesBatchSampler(keys, 8, seed=5))
    b = list(NoDuplicatesBatchSampler(relabelled.reshape(keys.shape) * 7919 + 3, 8, seed=5))
    assert a == b


@pytest.mark.slow
def test_hash_texts_is_stable_across_processes() -> None:
    code = "from embtune.data.hashing import hash_texts; print(hash_texts(['hello', 'wörld', '']).tolist())"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert outputs == {f"{hash_texts(['hello', 'wörld', '']).tolist()}\n"}


def test_hash_texts_falls_back_to_blake2b_without_xxhash(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def no_xxhash(name: str, *args: object, **kwargs: object) -> object:
        if name == "xxhash":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_xxhash)
    h = hashing.hash_texts(["a", "b", "a"])
    assert h.dtype == np.uint64 and h[0] == h[2] != h[1]
    assert int(h[0]) == int.from_bytes(__import__("hashlib").blake2b(b"a", digest_size=8).digest(), "little")


def test_plan_for_100k_rows_is_fast() -> None:
    rng = np.random.default_rng(0)
    n = 100_000
    keys = np.stack([rng.integers(0, 50_000, n), np.where(rng.random(n) < 0.01, 7, np.arange(n) + 10**6)], 1)
    start = time.perf_counter()
    sampler = NoDuplicatesBatchSampler(keys, 32, lengths=rng.integers(1, 300, n))
    assert len(sampler) >= n // 32
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("kind", ["shuffled", "no_duplicates"])
def test_length_aware_batches_waste_less_padding_and_still_mix(kind: str) -> None:
    n, batch_size = 4000, 16
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 256, n)
    keys = np.stack([rng.integers(0, 500, n), np.arange(n)], axis=1)

    def build(**kwargs: object) -> ShuffledBatchSampler | NoDuplicatesBatchSampler:
        if kind == "shuffled":
            return ShuffledBatchSampler(n, batch_size, **kwargs)
        return NoDuplicatesBatchSampler(keys, batch_size, **kwargs)

    plain = list(build())
    aware = list(build(lengths=lengths, length_window=20))
    assert sorted(i for b in aware for i in b) == list(range(n))
    assert padding_waste(aware, lengths) < 0.2 * padding_waste(plain, lengths)
    # Batches hold similar lengths, but the batch order is shuffled, not sorted by length.
    max_lens = np.array([lengths[b].max() for b in aware])
    assert not (np.all(np.diff(max_lens) >= 0) or np.all(np.diff(max_lens) <= 0))
    assert abs(np.corrcoef(np.arange(max_lens.size), max_lens)[0, 1]) < 0.2
    if kind == "no_duplicates":
        for b in aware:
            assert len(set(keys[b, 0].tolist())) == len(b)


@settings(max_examples=60, deadline=None)
@given(
    vocab=st.integers(1, 12),
    n=st.integers(0, 80),
    batch_size=st.integers(1, 6),
    world_size=st.integers(1, 3),
    drop_last=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
    use_lengths=st.booleans(),
)
def test_property_no_duplicates_coverage_and_len(
    vocab: int, n: int, batch_size: int, world_size: int, drop_last: bool, seed: int, use_lengths: bool
) -> None:
    rng = np.random.default_rng(seed)
    keys = np.stack([rng.integers(0, vocab, n), rng.integers(0, 3 * vocab, n) + 100], axis=1)
    lengths = rng.integers(1, 50, n) if use_lengths else None
    common = dict(drop_last=drop_last, seed=seed, world_size=world_size, lengths=lengths, length_window=2)
    single = list(
        NoDuplicatesBatchSampler(
            keys, batch_size * world_size, drop_last=drop_last, seed=seed, lengths=lengths, length_window=2
        )
    )
    ranks = [NoDuplicatesBatchSampler(keys, batch_size, rank=r, **common) for r in range(world_size)]
    per_rank = [list(s) for s in ranks]
    assert len({len(p) for p in per_rank} | {len(s) for s in ranks}) == 1
    global_batches = [sum(parts, []) for parts in zip(*per_rank, strict=True)]
    # Ranks see the single-process global batches, minus those with fewer rows than ranks.
    assert global_batches == [b for b in single if len(b) >= world_size]
    for b in single:
        row_sets = [set(keys[i].tolist()) for i in b]
        assert sum(len(s) for s in row_sets) == len(set().union(*row_sets))
    used = sorted(i for b in single for i in b)
    assert len(used) == len(set(used))
    if not drop_last:
        assert used == list(range(n))
    else:
        assert all(len(b) == batch_size * world_size for b in single)


def _greedy_reference(order: list[int], keys: list[list[int]], size: int) -> tuple[list[int], list[int]]:
    """The plain row-by-row greedy packing over every row's keys (what the sampler's fast packer must equal)."""
    from collections import deque

    full: list[int] = []
    short: list[int] = []
    short_sizes: list[int] = []
    waiting: dict[int, deque[int]] = {}
    stream = iter(order)
    while True:
        batch: list[int] = []
        seen: set[int] = set()
        for key in list(waiting):
            queue = waiting.get(key)
            while queue and len(batch) < size and key not in seen:
                row = queue.popleft()
                if seen.isdisjoint(keys[row]):
                    batch.append(row)
                    seen.update(keys[row])
                else:
                    waiting.setdefault(next(k for k in keys[row] if k in seen), deque()).append(row)
            if queue is not None and not queue:
                del waiting[key]
            if len(batch) == size:
                break
        if len(batch) < size:
            for row in stream:
                if seen.isdisjoint(keys[row]):
                    batch.append(row)
                    seen.update(keys[row])
                    if len(batch) == size:
                        break
                else:
                    waiting.setdefault(next(k for k in keys[row] if k in seen), deque()).append(row)
        if len(batch) == size:
            full.extend(batch)
            continue
        if batch:
            short.extend(batch)
            short_sizes.append(len(batch))
        if not waiting:
            return full + short, [size] * (len(full) // size) + short_sizes


@pytest.mark.parametrize("share", [0.0, 0.01, 0.3, 1.0])
@pytest.mark.parametrize("batch_size", [1, 3, 32])
def test_packer_equals_the_row_by_row_greedy_pass(share: float, batch_size: int) -> None:
    """Copying runs of rows that cannot clash gives exactly the plan of checking every row's keys."""
    from embtune.data.samplers.no_duplicates import _pack_without_duplicates

    rng = np.random.default_rng(int(share * 100) + batch_size)
    n = 3000
    keys = np.stack([np.arange(n) + 10**6, np.arange(n) + 2 * 10**6], axis=1).astype(np.uint64)
    dup = rng.random(n) < share
    keys[dup, 0] = rng.integers(0, 40, int(dup.sum()))  # repeated anchors
    keys[rng.random(n) < share / 3, 1] = 7  # one very common positive
    keys[:5, 1] = keys[:5, 0]  # anchor == positive inside a row never counts
    order = rng.permutation(n)
    shared = hashing.shared_key_rows(lambda: [(0, keys)], n)
    rows, sizes = _pack_without_duplicates(order, keys, shared, batch_size)
    want_rows, want_sizes = _greedy_reference(order.tolist(), keys.tolist(), batch_size)
    assert rows.tolist() == want_rows and sizes.tolist() == want_sizes


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 25), min_size=1, max_size=3), min_size=0, max_size=60),
       st.integers(1, 7))
def test_shared_key_rows_matches_brute_force(rows: list[list[int]], chunk: int) -> None:
    width = max((len(r) for r in rows), default=1)
    keys = np.array([r + [10**9 + i] * (width - len(r)) for i, r in enumerate(rows)], dtype=np.uint64)
    keys = keys.reshape(len(rows), width)
    owners: dict[int, set[int]] = {}
    for i, r in enumerate(keys.tolist()):
        for k in r:
            owners.setdefault(k, set()).add(i)
    want = sorted({i for rows_of in owners.values() if len(rows_of) > 1 for i in rows_of})
    got = hashing.shared_key_rows(lambda: [(s, keys[s : s + chunk]) for s in range(0, len(keys), chunk)], len(keys))
    assert got.tolist() == want
