"""ShuffledBatchSampler: the default; a fresh random order each epoch, optionally length-grouped."""

from __future__ import annotations

import numpy as np

from ...errors import EmbtuneError
from .base import PlannedBatchSampler, check_lengths, window_sort_by_length


class ShuffledBatchSampler(PlannedBatchSampler):
    """Shuffle all rows each epoch and cut them into batches; optionally group rows of similar length.

    Args:
        num_rows: number of rows in the dataset.
        batch_size: rows per batch on each rank (a global batch holds ``batch_size * world_size``).
        drop_last: drop the final global batch when it is short (otherwise split it over the ranks).
        seed: the order of epoch ``e`` is a pure function of ``(seed, e)``.
        rank, world_size: this process's slice of every global batch (see ``samplers.base``).
        lengths: (num_rows,) token length per row. When given, the shuffled rows are sorted by length
            inside consecutive windows of ``length_window`` global batches, cut into batches, and the
            order of the full batches is shuffled; the short final batch (if any) stays last. Batches
            then hold rows of similar length (less padding) while the epoch order stays random.
        length_window: window size, counted in global batches (``length_window * batch_size *
            world_size`` rows), so a distributed run batches exactly like one process would.

    >>> sampler = ShuffledBatchSampler(5, batch_size=2)
    >>> sorted(i for batch in sampler for i in batch), len(sampler)
    ([0, 1, 2, 3, 4], 3)
    """

    def __init__(
        self,
        num_rows: int,
        batch_size: int,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        lengths: np.ndarray | None = None,
        length_window: int = 50,
    ) -> None:
        super().__init__(batch_size, drop_last=drop_last, seed=seed, rank=rank, world_size=world_size)
        if num_rows < 0:
            raise EmbtuneError(f"num_rows must be >= 0, got {num_rows}.")
        self.num_rows = num_rows
        self.lengths = check_lengths(lengths, num_rows, length_window)
        self.length_window = length_window

    def _global_plan(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        g = self.global_batch_size
        rows = rng.permutation(self.num_rows)
        num_full, rest = divmod(self.num_rows, g)
        if self.lengths is not None:
            rows = window_sort_by_length(rows, self.lengths, self.length_window * g)
            full = rows[: num_full * g].reshape(num_full, g)[rng.permutation(num_full)]
            rows = np.concatenate([full.ravel(), rows[num_full * g :]])
        sizes = np.full(num_full + (rest > 0), g, dtype=np.int64)
        if rest:
            sizes[-1] = rest
        return rows, sizes
