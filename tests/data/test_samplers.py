"""Invariants of the single-dataset batch samplers: coverage, len, determinism, ranks, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embtune.data.samplers import (
    BatchSampler,
    GroupByLabelBatchSampler,
    NoDuplicatesBatchSampler,
    ShuffledBatchSampler,
)
from embtune.errors import EmbtuneError

KINDS = ["shuffled", "shuffled_lengths", "no_duplicates", "no_duplicates_lengths", "group_by_label"]


def _data(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        # Column 0 repeats a lot (20 distinct texts), column 1 is unique per row.
        "keys": np.stack([rng.integers(0, 20, n), np.arange(1000, 1000 + n)], axis=1),
        "lengths": rng.integers(1, 200, n),
        "labels": rng.integers(0, 7, n),
    }


def make(kind: str, n: int = 103, batch_size: int = 4, **kwargs: object) -> BatchSampler:
    """Build one sampler of the given kind over n rows of random data."""
    d = _data(n)
    if kind == "shuffled":
        return ShuffledBatchSampler(n, batch_size, **kwargs)
    if kind == "shuffled_lengths":
        return ShuffledBatchSampler(n, batch_size, lengths=d["lengths"], length_window=3, **kwargs)
    if kind == "no_duplicates":
        return NoDuplicatesBatchSampler(d["keys"], batch_size, **kwargs)
    if kind == "no_duplicates_lengths":
        return NoDuplicatesBatchSampler(
            d["keys"], batch_size, lengths=d["lengths"], length_window=3, **kwargs
        )
    return GroupByLabelBatchSampler(d["labels"], batch_size, **kwargs)


def run_epoch(sampler: BatchSampler, epoch: int = 0) -> list[list[int]]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("drop_last", [False, True])
def test_len_equals_batches_yielded_and_rows_used_at_most_once(kind: str, drop_last: bool) -> None:
    sampler = make(kind, drop_last=drop_last)
    for epoch in range(3):
        batches = run_epoch(sampler, epoch)
        assert len(batches) == len(sampler)
        rows = [i for b in batches for i in b]
        assert len(rows) == len(set(rows))
        assert all(batches)
        if drop_last:
            assert all(len(b) == 4 for b in batches)


@pytest.mark.parametrize("kind", ["shuffled", "shuffled_lengths", "no_duplicates", "no_duplicates_lengths"])
def test_every_row_used_exactly_once_without_drop_last(kind: str) -> None:
    for n, batch_size in [(103, 4), (100, 10), (7, 32), (1, 1), (0, 3)]:
        sampler = make(kind, n=n, batch_size=batch_size)
        for epoch in range(2):
            batches = run_epoch(sampler, epoch)
            assert sorted(i for b in batches for i in b) == list(range(n))
            assert len(batches) == len(sampler)


@pytest.mark.parametrize("kind", ["shuffled", "shuffled_lengths"])
def test_shuffled_batch_counts(kind: str) -> None:
    assert len(make(kind, n=103, batch_size=4)) == 26
    assert len(make(kind, n=103, batch_size=4, drop_last=True)) == 25
    batches = run_epoch(make(kind, n=103, batch_size=4, drop_last=True))
    assert len({i for b in batches for i in b}) == 100


@pytest.mark.parametrize("kind", KINDS)
def test_order_is_deterministic_and_changes_with_epoch_and_seed(kind: str) -> None:
    a, b = make(kind, seed=1), make(kind, seed=1)
    assert run_epoch(a, 0) == run_epoch(b, 0)
    assert run_epoch(a, 5) == run_epoch(b, 5)
    assert run_epoch(a, 0) != run_epoch(a, 1)
    assert run_epoch(a, 0) != run_epoch(make(kind, seed=2), 0)
    assert run_epoch(a, 3) == run_epoch(make(kind, seed=1), 3)  # epoch order does not depend on history


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_are_disjoint_and_their_union_is_the_single_process_global_batch(
    kind: str, world_size: int, drop_last: bool
) -> None:
    n, batch_size = 206, 4
    single = run_epoch(make(kind, n=n, batch_size=batch_size * world_size, drop_last=drop_last, seed=3), 2)
    samplers = [
        make(kind, n=n, batch_size=batch_size, drop_last=drop_last, seed=3, rank=r, world_size=world_size)
        for r in range(world_size)
    ]
    per_rank = [run_epoch(s, 2) for s in samplers]
    # A short final global batch too small to give every rank a share is skipped by the ranks.
    unit, min_units = (2, 2) if kind == "group_by_label" else (1, 1)
    expected = [b for b in single if len(b) // unit >= world_size * min_units]
    assert expected == single or not drop_last
    assert {len(p) for p in per_rank} == {len(expected)} == {len(s) for s in samplers}
    for step, global_batch in enumerate(expected):
        parts = [per_rank[r][step] for r in range(world_size)]
        assert sum(parts, []) == global_batch
        assert all(len(p) <= batch_size for p in parts)
        assert max(map(len, parts)) - min(map(len, parts)) <= unit


def test_short_final_global_batch_is_split_evenly() -> None:
    # 10 rows, 3 ranks x 2: one full global batch of 6, then 4 rows split 2/1/1.
    parts = [run_epoch(ShuffledBatchSampler(10, 2, rank=r, world_size=3)) for r in range(3)]
    assert [len(p) for p in parts] == [2, 2, 2]
    assert [len(p[1]) for p in parts] == [2, 1, 1]


def test_final_global_batch_smaller_than_world_size_is_dropped_on_every_rank() -> None:
    # 8 rows, 3 ranks x 2: the last global batch has 2 rows < 3 ranks, so every rank skips it.
    samplers = [ShuffledBatchSampler(8, 2, rank=r, world_size=3) for r in range(3)]
    parts = [run_epoch(s) for s in samplers]
    assert [len(p) for p in parts] == [1, 1, 1] == [len(s) for s in samplers]
    assert len({i for p in parts for b in p for i in b}) == 6


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("stop_after", [0, 1, 7, 25])
def test_resume_mid_epoch_yields_the_remaining_batches(kind: str, stop_after: int) -> None:
    full = run_epoch(make(kind, seed=4), 3)
    first = make(kind, seed=4)
    first.set_epoch(3)
    it = iter(first)
    stop_after = min(stop_after, len(full))
    seen = [next(it) for _ in range(stop_after)]
    state = json.loads(json.dumps(first.state_dict()))  # checkpoints store it as plain data
    assert state["epoch"] == 3 and state["batches_done"] == stop_after == first.batches_done

    resumed = make(kind, seed=4)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # the trainer's usual call does not lose the resume point
    rest = list(resumed)
    assert seen + rest == full
    assert resumed.state_dict()["batches_done"] == resumed.batches_done == len(full)
    assert list(resumed) == full  # the next pass over the same epoch starts from the beginning
    assert run_epoch(resumed, 4) == run_epoch(make(kind, seed=4), 4)


def test_resume_with_another_world_size_but_the_same_global_batch() -> None:
    single = ShuffledBatchSampler(50, 6, seed=2)
    single.set_epoch(1)
    it = iter(single)
    done = [next(it) for _ in range(3)]
    state = single.state_dict()
    ranks = [ShuffledBatchSampler(50, 3, seed=2, rank=r, world_size=2) for r in range(2)]
    for s in ranks:
        s.load_state_dict(state)
    rest = [a + b for a, b in zip(*ranks, strict=True)]
    assert done + rest == run_epoch(ShuffledBatchSampler(50, 6, seed=2), 1)


def test_resume_with_another_seed_or_batch_size_is_an_error() -> None:
    state = ShuffledBatchSampler(50, 6, seed=2).state_dict()
    with pytest.raises(EmbtuneError, match="seed"):
        ShuffledBatchSampler(50, 6, seed=3).load_state_dict(state)
    with pytest.raises(EmbtuneError, match="batch_size"):
        ShuffledBatchSampler(50, 4, seed=2).load_state_dict(state)


@pytest.mark.parametrize(
    "build",
    [
        lambda: ShuffledBatchSampler(10, 0),
        lambda: ShuffledBatchSampler(10, 2, rank=2, world_size=2),
        lambda: ShuffledBatchSampler(10, 2, seed=-1),
        lambda: ShuffledBatchSampler(10, 2, lengths=np.ones(9, dtype=int)),
        lambda: ShuffledBatchSampler(10, 2, lengths=np.ones(10, dtype=int), length_window=0),
        lambda: NoDuplicatesBatchSampler(np.zeros((3, 2), dtype=float), 2),
        lambda: GroupByLabelBatchSampler(np.array([0, 0, 1, 1]), 6, group_size=4),
        lambda: GroupByLabelBatchSampler(np.array([0, 0, 1, 1]), 5),
        lambda: GroupByLabelBatchSampler(np.array([0, 0, 0, 1]), 4),
    ],
)
def test_bad_arguments_raise_an_actionable_error(build: object) -> None:
    with pytest.raises(EmbtuneError):
        build()  # type: ignore[operator]


def test_samplers_follow_the_protocol() -> None:
    for kind in KINDS:
        assert isinstance(make(kind), BatchSampler)
