"""MultiDatasetBatchSampler: round-robin / proportional counts, determinism, epochs and resume."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embtune.data.samplers import (
    GroupByLabelBatchSampler,
    MultiDatasetBatchSampler,
    NoDuplicatesBatchSampler,
    ShuffledBatchSampler,
)
from embtune.errors import EmbtuneError


def build(strategy: str, seed: int = 0, rank: int = 0, world_size: int = 1) -> MultiDatasetBatchSampler:
    rng = np.random.default_rng(0)
    keys = np.stack([rng.integers(0, 10, 60), np.arange(60)], axis=1)
    subs = [
        ShuffledBatchSampler(30, 2, seed=1, rank=rank, world_size=world_size),  # 8 global batches of 4
        NoDuplicatesBatchSampler(keys, 2, seed=2, rank=rank, world_size=world_size),
        GroupByLabelBatchSampler(np.arange(40) % 4, 4, seed=3, rank=rank, world_size=world_size),
    ]
    return MultiDatasetBatchSampler(subs, strategy=strategy, seed=seed)


def run_epoch(multi: MultiDatasetBatchSampler, epoch: int = 0) -> list[tuple[int, list[int]]]:
    multi.set_epoch(epoch)
    return list(multi)


def test_round_robin_cycles_until_the_smallest_dataset_is_exhausted() -> None:
    multi = build("round_robin")
    smallest = min(len(s) for s in multi.samplers)
    steps = run_epoch(multi)
    assert len(steps) == len(multi) == 3 * smallest
    assert [i for i, _ in steps] == [0, 1, 2] * smallest
    for i, sampler in enumerate(multi.samplers):
        assert [b for j, b in steps if j == i] == list(sampler)[:smallest]


def test_proportional_uses_every_batch_of_every_dataset_once() -> None:
    multi = build("proportional")
    for epoch in range(2):
        steps = run_epoch(multi, epoch)
        assert len(steps) == len(multi) == sum(len(s) for s in multi.samplers)
        order = [i for i, _ in steps]
        assert order != sorted(order)  # datasets are interleaved
        for i, sampler in enumerate(multi.samplers):
            assert [b for j, b in steps if j == i] == list(sampler)


@pytest.mark.parametrize("strategy", ["round_robin", "proportional"])
def test_deterministic_per_seed_and_epoch_and_epochs_propagate(strategy: str) -> None:
    a, b = build(strategy), build(strategy)
    assert run_epoch(a, 2) == run_epoch(b, 2)
    assert all(s.epoch == 2 for s in a.samplers)
    assert run_epoch(a, 0) != run_epoch(a, 1)
    if strategy == "proportional":
        orders = [[i for i, _ in run_epoch(build(strategy, seed=s), 0)] for s in (0, 1)]
        assert orders[0] != orders[1]


@pytest.mark.parametrize("strategy", ["round_robin", "proportional"])
@pytest.mark.parametrize("stop_after", [0, 1, 5, 17])
def test_resume_mid_epoch_yields_the_remaining_batches(strategy: str, stop_after: int) -> None:
    full = run_epoch(build(strategy), 1)
    first = build(strategy)
    first.set_epoch(1)
    it = iter(first)
    stop_after = min(stop_after, len(full))
    seen = [next(it) for _ in range(stop_after)]
    state = json.loads(json.dumps(first.state_dict()))
    assert state["batches_done"] == stop_after == first.batches_done and len(state["samplers"]) == 3
    assert sum(s["batches_done"] for s in state["samplers"]) == stop_after

    resumed = build(strategy)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)
    assert seen + list(resumed) == full
    assert run_epoch(resumed, 2) == run_epoch(build(strategy), 2)


@pytest.mark.parametrize("strategy", ["round_robin", "proportional"])
def test_ranks_agree_on_dataset_order_and_split_each_global_batch(strategy: str) -> None:
    ranks = [build(strategy, rank=r, world_size=2) for r in range(2)]
    per_rank = [run_epoch(m) for m in ranks]
    assert len(per_rank[0]) == len(per_rank[1]) == len(ranks[0])
    for (i0, b0), (i1, b1) in zip(*per_rank, strict=True):
        assert i0 == i1 and not set(b0) & set(b1)


def test_bad_strategy_or_mismatched_state_is_an_error() -> None:
    with pytest.raises(EmbtuneError, match="round_robin"):
        MultiDatasetBatchSampler([ShuffledBatchSampler(4, 2)], strategy="random")
    state = build("round_robin").state_dict()
    with pytest.raises(EmbtuneError, match="strategy"):
        build("proportional").load_state_dict(state)
    with pytest.raises(EmbtuneError, match="seed"):
        build("round_robin", seed=9).load_state_dict(state)
