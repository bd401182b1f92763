"""NoDuplicatesBatchSampler: batches in which no text appears twice, for in-batch-negative losses.

With in-batch negatives (MNRL and friends) a text repeated inside a batch is a false negative: the loss
pushes a text away from itself. The data module hashes every text once (``data.hashing.hash_texts``);
this sampler only compares the hashes.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from ...errors import EmbtuneError
from .base import PlannedBatchSampler, check_lengths, window_sort_by_length


def _pack_without_duplicates(
    order: list[int], keys: list[list[int]], size: int
) -> tuple[list[int], list[int]]:
    """Greedily cut ``order`` into batches of ``size`` rows with no key shared by two rows of a batch.

    A row that clashes with the batch being filled waits in a queue filed under the key it clashed on
    and gets first claim on the next batches, so it is delayed, never dropped. Every row in the queue
    of key ``k`` contains ``k``: once one of them enters a batch the rest of that queue is skipped in one
    step, which keeps heavily repeated texts cheap. Rows of the same batch may repeat a key among their
    own columns (anchor == positive); only keys of different rows are compared.

    Returns:
        ``(rows, sizes)``: the full batches first (in the order they were filled), then the short ones.
    """
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
                else:  # blocked by another key this time: file it there
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
        if batch:  # the stream is exhausted and the waiting rows cannot fill a batch
            short.extend(batch)
            short_sizes.append(len(batch))
        if not waiting:
            return full + short, [size] * (len(full) // size) + short_sizes


class NoDuplicatesBatchSampler(PlannedBatchSampler):
    """Shuffled batches in which no text hash is shared by two rows of the same global batch.

    The guarantee holds over all text columns and across ranks (a global batch is
    ``batch_size * world_size`` rows), which is what a loss that gathers embeddings across ranks needs.
    Every row is used exactly once per epoch: a row that clashes with the batch being filled is
    deferred to a later batch, never dropped. Data with many repeats of one text (e.g. a column that is
    "yes" on 10% of rows) cannot fill every batch; the rows left over at the end form short batches,
    placed after all full batches. ``drop_last=True`` drops those short batches (and their rows).

    The epoch's batch plan is computed eagerly at the first ``len()`` or iteration of an epoch (one
    greedy pass in Python, about 0.1-0.2 s per 100k rows), so ``len()`` is exact.

    Args:
        row_keys: (num_rows, num_text_columns) integer hashes, e.g. ``np.stack([hash_texts(col) for col
            in columns], axis=1)``. Only equality of keys matters.
        batch_size, drop_last, seed, rank, world_size: as for ``ShuffledBatchSampler``.
        lengths: (num_rows,) token lengths; when given, the shuffled rows are sorted by length inside
            windows of ``length_window`` global batches before packing, and the full batches are then
            shuffled. The no-duplicates guarantee still holds (packing happens after the sort).
        length_window: window size in global batches (``length_window * batch_size * world_size`` rows).

    >>> keys = np.array([[1, 10], [1, 11], [2, 12], [3, 13]])  # rows 0 and 1 share the text hashed to 1
    >>> batches = list(NoDuplicatesBatchSampler(keys, batch_size=2))
    >>> any({0, 1} <= set(b) for b in batches), sorted(i for b in batches for i in b)
    (False, [0, 1, 2, 3])
    """

    def __init__(
        self,
        row_keys: np.ndarray,
        batch_size: int,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        lengths: np.ndarray | None = None,
        length_window: int = 50,
    ) -> None:
        super().__init__(batch_size, drop_last=drop_last, seed=seed, rank=rank, world_size=world_size)
        row_keys = np.asarray(row_keys)
        if row_keys.ndim == 1:
            row_keys = row_keys[:, None]
        if row_keys.ndim != 2 or not np.issubdtype(row_keys.dtype, np.integer):
            raise EmbtuneError(
                "row_keys must be an integer array of shape (num_rows, num_text_columns), e.g. "
                f"np.stack([hash_texts(c) for c in columns], axis=1); got {row_keys.dtype} {row_keys.shape}."
            )
        self.num_rows = row_keys.shape[0]
        self._keys: list[list[int]] = row_keys.tolist()  # Python ints: the packing loop hashes them
        self.lengths = check_lengths(lengths, self.num_rows, length_window)
        self.length_window = length_window

    def _global_plan(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        g = self.global_batch_size
        order = rng.permutation(self.num_rows)
        if self.lengths is not None:
            order = window_sort_by_length(order, self.lengths, self.length_window * g)
        rows_list, sizes_list = _pack_without_duplicates(order.tolist(), self._keys, g)
        rows = np.asarray(rows_list, dtype=np.int64)
        sizes = np.asarray(sizes_list, dtype=np.int64)
        if self.lengths is not None:
            num_full = int((sizes == g).sum())
            full = rows[: num_full * g].reshape(num_full, g)[rng.permutation(num_full)]
            rows = np.concatenate([full.ravel(), rows[num_full * g :]])
        return rows, sizes
