"""NoDuplicatesBatchSampler: batches in which no text appears twice, for in-batch-negative losses.

With in-batch negatives (MNRL and friends) a text repeated inside a batch is a false negative: the loss
pushes a text away from itself. The data module hashes every text once (``data.hashing.hash_texts``);
this sampler only compares the hashes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np

from ...errors import EmbtuneError
from ..hashing import shared_key_rows
from .base import PlannedBatchSampler, check_lengths, window_sort_by_length


def _pack_without_duplicates(
    order: np.ndarray, row_keys: np.ndarray, shared: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Greedily cut ``order`` into batches of ``size`` rows with no key shared by two rows of a batch.

    A row that clashes with the batch being filled waits in a queue filed under the key it clashed on
    and gets first claim on the next batches, so it is delayed, never dropped. Every row in the queue
    of key ``k`` contains ``k``: once one of them enters a batch the rest of that queue is skipped in one
    step, which keeps heavily repeated texts cheap. Rows of the same batch may repeat a key among their
    own columns (anchor == positive); only keys of different rows are compared.

    Only the rows in ``shared`` (those sharing a key with another row, ``hashing.shared_key_rows``) can
    ever clash, so only their keys are read; runs of other rows are copied a batch at a time. The plan is
    the one a row-by-row greedy pass over every key gives.

    Returns:
        ``(rows, sizes)``: the full batches first (in the order they were filled), then the short ones.
    """
    n = order.size
    risky = np.zeros(len(row_keys), dtype=bool)
    risky[shared] = True
    risky_at = np.flatnonzero(risky[order])  # positions in ``order`` of the rows that may clash
    del risky
    full = np.empty(n, dtype=np.int64)
    filled = 0
    short: list[int] = []
    short_sizes: list[int] = []
    waiting: dict[int, deque[int]] = {}
    cached: dict[int, tuple[int, ...]] = {}

    def keys(row: int) -> tuple[int, ...]:
        if row not in cached:
            cached[row] = tuple(dict.fromkeys(np.asarray(row_keys[row]).reshape(-1).tolist()))
        return cached[row]

    pos = nxt = 0  # stream position; index into risky_at of the next row that may clash
    while True:
        next_risky = int(risky_at[nxt]) if nxt < len(risky_at) else n
        if not waiting:  # whole batches before the next row that may clash: copied as they are
            whole = (next_risky - pos) // size * size
            full[filled : filled + whole] = order[pos : pos + whole]
            filled, pos = filled + whole, pos + whole
        batch: list[int] = []
        seen: set[int] = set()
        _take_waiting(waiting, keys, batch, seen, size)
        while len(batch) < size and pos < n:
            next_risky = int(risky_at[nxt]) if nxt < len(risky_at) else n
            if pos < next_risky:  # rows that cannot clash: take as many as fit
                take = min(size - len(batch), next_risky - pos)
                batch.extend(order[pos : pos + take].tolist())
                pos += take
                continue
            row = int(order[pos])
            pos, nxt = pos + 1, nxt + 1
            if seen.isdisjoint(keys(row)):
                batch.append(row)
                seen.update(keys(row))
            else:
                waiting.setdefault(next(k for k in keys(row) if k in seen), deque()).append(row)
        if len(batch) == size:
            full[filled : filled + size] = batch
            filled += size
            continue
        if batch:  # the stream is exhausted and the waiting rows cannot fill a batch
            short.extend(batch)
            short_sizes.append(len(batch))
        if not waiting:
            rows = np.concatenate([full[:filled], np.asarray(short, dtype=np.int64)])
            return rows, np.asarray([size] * (filled // size) + short_sizes, dtype=np.int64)


def _take_waiting(
    waiting: dict[int, deque[int]], keys: Callable[[int], tuple[int, ...]], batch: list[int], seen: set[int], size: int
) -> None:
    """Fill ``batch`` from the waiting queues first (oldest key first); rows blocked again are re-filed."""
    for key in list(waiting):
        queue = waiting.get(key)
        while queue and len(batch) < size and key not in seen:
            row = queue.popleft()
            if seen.isdisjoint(keys(row)):
                batch.append(row)
                seen.update(keys(row))
            else:  # blocked by another key this time: file it there
                waiting.setdefault(next(k for k in keys(row) if k in seen), deque()).append(row)
        if queue is not None and not queue:
            del waiting[key]
        if len(batch) == size:
            break


class NoDuplicatesBatchSampler(PlannedBatchSampler):
    """Shuffled batches in which no text hash is shared by two rows of the same global batch.

    The guarantee holds over all text columns and across ranks (a global batch is
    ``batch_size * world_size`` rows), which is what a loss that gathers embeddings across ranks needs.
    Every row is used exactly once per epoch: a row that clashes with the batch being filled is
    deferred to a later batch, never dropped. Data with many repeats of one text (e.g. a column that is
    "yes" on 10% of rows) cannot fill every batch; the rows left over at the end form short batches,
    placed after all full batches. ``drop_last=True`` drops those short batches (and their rows).

    The epoch's batch plan is computed eagerly at the first ``len()`` or iteration of an epoch (one
    greedy pass that reads only the keys of rows sharing a text with another row), so ``len()`` is exact.

    Args:
        row_keys: (num_rows, num_text_columns) integer hashes, e.g. ``np.stack([hash_texts(col) for col
            in columns], axis=1)``. Only equality of keys matters.
        batch_size, drop_last, seed, rank, world_size: as for ``ShuffledBatchSampler``.
        lengths: (num_rows,) token lengths; when given, the shuffled rows are sorted by length inside
            windows of ``length_window`` global batches before packing, and the full batches are then
            shuffled. The no-duplicates guarantee still holds (packing happens after the sort).
        length_window: window size in global batches (``length_window * batch_size * world_size`` rows).
        shared_rows: the rows that share a key with another row (``hashing.shared_key_rows``; a prepared
            dataset stores them); None computes them from ``row_keys``.

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
        shared_rows: np.ndarray | None = None,
    ) -> None:
        super().__init__(batch_size, drop_last=drop_last, seed=seed, rank=rank, world_size=world_size)
        row_keys = np.asarray(row_keys)  # a view of a memory-mapped array, not a copy
        if row_keys.ndim == 1:
            row_keys = row_keys[:, None]
        if row_keys.ndim != 2 or not np.issubdtype(row_keys.dtype, np.integer):
            raise EmbtuneError(
                "row_keys must be an integer array of shape (num_rows, num_text_columns), e.g. "
                f"np.stack([hash_texts(c) for c in columns], axis=1); got {row_keys.dtype} {row_keys.shape}."
            )
        self.num_rows = row_keys.shape[0]
        self._keys = row_keys  # may be memory-mapped: only the rows that share a key are ever read
        if shared_rows is None:
            step = 1 << 16
            shared_rows = shared_key_rows(
                lambda: ((s, row_keys[s : s + step]) for s in range(0, self.num_rows, step)), self.num_rows
            )
        self._shared = np.asarray(shared_rows, dtype=np.int64)
        self.lengths = check_lengths(lengths, self.num_rows, length_window)
        self.length_window = length_window

    def _global_plan(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        g = self.global_batch_size
        order = rng.permutation(self.num_rows)
        if self.lengths is not None:
            order = window_sort_by_length(order, self.lengths, self.length_window * g)
        rows, sizes = _pack_without_duplicates(order, self._keys, self._shared, g)
        if self.lengths is not None:
            num_full = int((sizes == g).sum())
            full = rows[: num_full * g].reshape(num_full, g)[rng.permutation(num_full)]
            rows = np.concatenate([full.ravel(), rows[num_full * g :]])
        return rows, sizes
