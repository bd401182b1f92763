"""GroupByLabelBatchSampler: batches made of same-label groups, for batch triplet-mining losses."""

from __future__ import annotations

import numpy as np

from ...errors import EmbtuneError
from .base import PlannedBatchSampler


class GroupByLabelBatchSampler(PlannedBatchSampler):
    """Batches of ``group_size`` same-label rows per group, so every row has a positive in its batch.

    Behaviour of one epoch (same semantics as sentence-transformers' sampler of this name, with
    ``group_size=2``):

    1. Labels with fewer than ``group_size`` rows are never used. Each other label's rows are shuffled
       and cut into groups of ``group_size``; the leftover rows (``count % group_size``) sit out this
       epoch (a different subset each epoch).
    2. Groups are dealt in rounds: round ``t`` holds the ``t``-th group of every label that still has
       one, in a fresh random label order. Dealing stops when fewer than two labels have groups left,
       so the largest label contributes at most as many groups as the second largest; its surplus sits
       out the epoch. If a round would start with the label that ended the previous round, its first
       two groups swap, so two consecutive groups never share a label.
    3. The stream of groups is cut into global batches of ``batch_size * world_size`` rows. Since
       ``batch_size`` is a multiple of ``group_size`` and at least two groups, every rank's batch holds
       whole groups of at least two distinct labels.
    4. The final short global batch is dropped with ``drop_last=True``; otherwise its groups are split
       over the ranks as evenly as possible, and it is dropped if it holds fewer than two groups per rank.

    So each row is used at most once per epoch, and ``len()`` is exact.

    Args:
        labels: (num_rows,) label of each row (ints or strings).
        batch_size: rows per batch per rank; a multiple of ``group_size``, at least ``2 * group_size``.
        drop_last, seed, rank, world_size: as for ``ShuffledBatchSampler``.
        group_size: rows per same-label group (2 gives anchor/positive pairs).

    Raises:
        EmbtuneError: bad ``batch_size``/``group_size``, or fewer than two labels with ``group_size`` rows.

    >>> labels = np.array([0, 0, 1, 1, 2, 2, 0, 0])
    >>> batch = next(iter(GroupByLabelBatchSampler(labels, batch_size=4)))
    >>> sorted(np.unique(labels[batch], return_counts=True)[1].tolist())
    [2, 2]
    """

    def __init__(
        self,
        labels: np.ndarray,
        batch_size: int,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        group_size: int = 2,
    ) -> None:
        if group_size < 2 or batch_size % group_size or batch_size < 2 * group_size:
            raise EmbtuneError(
                f"GroupByLabelBatchSampler needs group_size >= 2 and batch_size a multiple of group_size of "
                f"at least 2 * group_size (two labels per batch); got batch_size={batch_size}, "
                f"group_size={group_size}. Use group_size=2 with an even batch_size >= 4, e.g. 32."
            )
        super().__init__(
            batch_size,
            drop_last=drop_last,
            seed=seed,
            rank=rank,
            world_size=world_size,
            split_unit=group_size,
            min_units_per_rank=2,
        )
        labels = np.asarray(labels)
        if labels.ndim != 1:
            raise EmbtuneError(f"labels must be a 1-D array (one label per row), got shape {labels.shape}.")
        self.group_size = group_size
        self.num_rows = labels.shape[0]
        _, codes, counts = np.unique(labels, return_inverse=True, return_counts=True)
        codes = codes.reshape(-1)
        eligible = counts >= group_size
        if eligible.sum() < 2:
            raise EmbtuneError(
                f"GroupByLabelBatchSampler needs at least 2 labels with >= {group_size} rows each; "
                f"{int(eligible.sum())} label(s) qualify. Use another sampler or lower group_size."
            )
        # Prepared once: the usable rows, their label renumbered 0..L-1, and each label's group quota.
        self._rows = np.flatnonzero(eligible[codes])
        self._label = (np.cumsum(eligible) - 1)[codes[self._rows]]
        self._count = counts[eligible]
        groups = self._count // group_size
        cap = np.sort(groups)[-2]  # dealing stops once only one label has groups left
        self._quota = np.minimum(groups, cap)

    def _global_plan(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        k, g = self.group_size, self.global_batch_size
        # Rows grouped by label, shuffled within each label.
        perm = rng.permutation(self._rows.size)
        by_label = np.argsort(self._label[perm], kind="stable")
        rows, label = self._rows[perm][by_label], self._label[perm][by_label]
        label_start = np.concatenate([[0], np.cumsum(self._count)[:-1]])
        pos = np.arange(rows.size) - label_start[label]
        used = pos < self._quota[label] * k
        rows, label, pos = rows[used], label[used], pos[used]
        # Group j is rows[j*k:(j+1)*k]; deal groups by round, in random label order within a round.
        group_label, group_round = label[::k], pos[::k] // k
        order = np.lexsort((rng.random(group_label.size), group_round))
        order = _separate_round_boundaries(order, group_label, group_round)
        rows = rows.reshape(-1, k)[order].ravel()
        num_full, rest = divmod(rows.size, g)
        sizes = np.full(num_full + (rest > 0), g, dtype=np.int64)
        if rest:
            sizes[-1] = rest
        return rows, sizes


def _separate_round_boundaries(
    order: np.ndarray, group_label: np.ndarray, group_round: np.ndarray
) -> np.ndarray:
    """Swap the first two groups of a round when its first label equals the previous round's last.

    Within a round labels are distinct and every round has at least two groups, so after the swap no two
    consecutive groups share a label. Loops over rounds only (at most num_rows / 4 of them).
    """
    order = order.copy()
    starts = (np.flatnonzero(np.diff(group_round[order])) + 1).tolist()
    for s in starts:
        if group_label[order[s]] == group_label[order[s - 1]]:
            order[s], order[s + 1] = order[s + 1], order[s]
    return order
