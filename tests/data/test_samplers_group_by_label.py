"""GroupByLabelBatchSampler: same-label groups, at least two labels per batch, exact stream length."""

from __future__ import annotations

import numpy as np
import pytest

from embtune.data.samplers import GroupByLabelBatchSampler


def _labels(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # One dominant label, a few medium ones, some singletons (never usable), strings as labels.
    return np.array(["big"] * 90 + [f"l{i}" for i in rng.integers(0, 6, 80)] + [f"s{i}" for i in range(5)])


def _assert_groups(batch: list[int], labels: np.ndarray, group_size: int) -> None:
    assert len(batch) % group_size == 0
    groups = np.asarray(labels[batch]).reshape(-1, group_size)
    assert (groups == groups[:, :1]).all(), "a group mixes labels"
    assert (groups[1:, 0] != groups[:-1, 0]).all(), "two consecutive groups share a label"
    _, counts = np.unique(labels[batch], return_counts=True)
    assert counts.size >= 2 and counts.min() >= group_size


@pytest.mark.parametrize("group_size", [2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_every_batch_holds_whole_groups_of_two_or_more_labels(group_size: int, drop_last: bool) -> None:
    labels = _labels()
    sampler = GroupByLabelBatchSampler(labels, 4 * group_size, drop_last=drop_last, group_size=group_size)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) > 0
        for batch in batches:
            _assert_groups(batch, labels, group_size)
        rows = [i for b in batches for i in b]
        assert len(rows) == len(set(rows))
        assert not any(labels[i].startswith("s") for i in rows)  # singletons cannot form groups


def test_stream_stops_when_one_label_is_left() -> None:
    # Label 0 has 20 pairs, label 1 has 3, label 2 has 1: dealing stops after 3 rounds, so 3 + 3 + 1 pairs.
    labels = np.array([0] * 40 + [1] * 7 + [2] * 2)
    batches = list(GroupByLabelBatchSampler(labels, 8))
    assert [len(b) for b in batches] == [8, 6]
    rows = [i for b in batches for i in b]
    assert np.bincount(labels[rows]).tolist() == [6, 6, 2]


@pytest.mark.parametrize(
    ("batch_size", "drop_last", "sizes"),
    [(6, False, [6, 6]), (4, False, [4, 4, 4]), (8, False, [8, 6]), (8, True, [8])],
)
def test_final_short_batch_is_kept_only_with_two_groups(
    batch_size: int, drop_last: bool, sizes: list[int]
) -> None:
    labels = np.array([0] * 6 + [1] * 6 + [2] * 2)  # 7 pairs in the stream
    sampler = GroupByLabelBatchSampler(labels, batch_size, drop_last=drop_last)
    assert [len(b) for b in sampler] == sizes
    assert len(sampler) == len(sizes)


def test_distributed_short_batch_gives_every_rank_two_groups() -> None:
    labels = np.array([0] * 6 + [1] * 6 + [2] * 2)  # 14 rows: global batches of 8 rows, then 6 (3 groups)
    ranks = [GroupByLabelBatchSampler(labels, 4, rank=r, world_size=2) for r in range(2)]
    assert [[len(b) for b in s] for s in ranks] == [[4], [4]]  # 3 groups < 2 per rank: dropped
    labels = np.array([0] * 8 + [1] * 8 + [2] * 4)  # 20 rows: 8 + 8 + 4 (2 groups < 4)
    ranks = [GroupByLabelBatchSampler(labels, 4, rank=r, world_size=2) for r in range(2)]
    assert [[len(b) for b in s] for s in ranks] == [[4, 4], [4, 4]]
    labels = np.array([0] * 10 + [1] * 10)  # 20 rows, global batches of 12: the last 8 rows are 4 groups
    ranks = [GroupByLabelBatchSampler(labels, 6, rank=r, world_size=2) for r in range(2)]
    per_rank = [list(s) for s in ranks]
    assert [[len(b) for b in p] for p in per_rank] == [[6, 4], [6, 4]]
    single = list(GroupByLabelBatchSampler(labels, 12))
    assert [a + b for a, b in zip(*per_rank, strict=True)] == single
    for p in per_rank:
        for b in p:
            _assert_groups(b, labels, 2)
