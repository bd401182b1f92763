"""What every batch sampler shares: the protocol, epoch plans, rank slicing and resumable positions.

A sampler plans a whole epoch at once, as numpy arrays: a flat array of row indices and the sizes of the
*global* batches (``batch_size * world_size`` rows each) that cut it. Rank ``r`` then takes the contiguous
slice ``[r * batch_size, (r + 1) * batch_size)`` of every global batch, so the ranks are disjoint and their
union is exactly what one process with ``batch_size * world_size`` sees. The trainer relies on this for
DDP == single-process equivalence.

Global batches shorter than ``batch_size * world_size`` ("partial" batches) are dropped with
``drop_last=True``. Otherwise each is split as evenly as possible over the ranks (sizes differ by at most
one unit). A partial batch too small to give every rank something (fewer rows than ``world_size``, or for
label grouping fewer than two groups per rank) is dropped, so that every rank yields the same number of
batches and DDP never hangs. That is the one case where a distributed run differs from the single-process one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ...errors import EmbtuneError


@runtime_checkable
class BatchSampler(Protocol):
    """Protocol of embtune's single-dataset batch samplers (the trainer and MultiDatasetBatchSampler use it).

    ``state_dict()`` must hold at least ``{"epoch": int, "batches_done": int}``; after
    ``load_state_dict(d)`` the next iteration resumes at batch ``batches_done`` of epoch ``epoch``.
    """

    batch_size: int

    @property
    def batches_done(self) -> int:
        """Batches handed out in the current epoch: the position ``state_dict`` saves."""
        ...

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose (deterministic) order the next iteration yields."""
        ...

    def __iter__(self) -> Iterator[list[int]]: ...

    def __len__(self) -> int: ...

    def state_dict(self) -> dict[str, Any]:
        """The position to resume from: at least ``epoch`` and ``batches_done``."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at ``state["batches_done"]`` of ``state["epoch"]`` on the next iteration."""
        ...


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    """The numpy generator for one epoch: a pure function of (seed, epoch), identical in every process."""
    return np.random.default_rng([seed, epoch])


def padding_waste(batches: Iterable[Sequence[int]], lengths: np.ndarray) -> int:
    """Count the pad tokens that batching causes: sum over batches of ``max_len * len(batch) - sum(lens)``.

    Args:
        batches: row indices of each batch, e.g. ``list(sampler)``.
        lengths: (num_rows,) token length of each row.

    Returns:
        The number of padding positions a right-padded collate would add.

    >>> padding_waste([[0, 1], [2]], np.array([3, 5, 4]))
    2
    """
    lengths = np.asarray(lengths)
    waste = 0
    for batch in batches:
        lens = lengths[np.asarray(batch, dtype=np.int64)]
        if lens.size:
            waste += int(lens.max()) * lens.size - int(lens.sum())
    return waste


def window_sort_by_length(order: np.ndarray, lengths: np.ndarray, window_rows: int) -> np.ndarray:
    """Sort ``order`` by ``lengths`` inside consecutive windows of ``window_rows`` rows (stable).

    Rows never leave their window, so the result stays as random as ``order`` at the window scale.
    """
    out = np.empty_like(order)
    step = window_rows * max(1, (1 << 16) // window_rows)  # whole windows at a time: bounded temporaries
    for start in range(0, order.size, step):
        part = order[start : start + step]
        out[start : start + step] = part[np.lexsort((lengths[part], np.arange(part.size) // window_rows))]
    return out


def check_lengths(lengths: np.ndarray | None, num_rows: int, length_window: int) -> np.ndarray | None:
    """Validate the length-aware options and return ``lengths`` as an int64 array (or None)."""
    if length_window < 1:
        raise EmbtuneError(f"length_window must be >= 1 (in global batches), got {length_window}.")
    if lengths is None:
        return None
    lengths = np.asarray(lengths)
    if lengths.shape != (num_rows,) or not np.issubdtype(lengths.dtype, np.integer):
        raise EmbtuneError(
            f"lengths must be an integer array of shape ({num_rows},), one token count per row; "
            f"got dtype {lengths.dtype} and shape {lengths.shape}."
        )
    return lengths  # any integer dtype: only compared and sorted, never summed


class PlannedBatchSampler:
    """Base of the single-dataset samplers: turns a global epoch plan into this rank's resumable batches.

    Subclasses implement ``_global_plan(rng)``, returning ``(rows, sizes)``: every row index of the epoch
    in order, and the size of each consecutive global batch. A size equal to ``global_batch_size`` is a
    full batch; anything smaller is partial (see the module docstring for how those are handled).
    ``split_unit`` rows are never split between ranks (2 for label pairs), and a partial batch is kept
    only if every rank gets at least ``min_units_per_rank`` units.

    Position tracking: ``batches_done`` counts the batches this sampler has handed out in the current
    epoch (counted before each yield, so a batch in the consumer's hands is already counted). A
    DataLoader with workers fetches indices ahead of the training step; a trainer that checkpoints then
    should overwrite ``state["batches_done"]`` with the number of batches it actually consumed.
    """

    def __init__(
        self,
        batch_size: int,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        split_unit: int = 1,
        min_units_per_rank: int = 1,
    ) -> None:
        if batch_size < 1:
            raise EmbtuneError(f"batch_size must be >= 1, got {batch_size}.")
        if world_size < 1 or not 0 <= rank < world_size:
            raise EmbtuneError(
                "rank must be in [0, world_size) and world_size >= 1; "
                f"got rank={rank}, world_size={world_size}."
            )
        if seed < 0:
            raise EmbtuneError(f"seed must be a non-negative integer, got {seed}.")
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self._split_unit = split_unit
        self._min_units_per_rank = min_units_per_rank
        self._epoch = 0
        self._batches_done = 0
        self._resume_at = 0
        self._plan: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def global_batch_size(self) -> int:
        """Rows per global batch: ``batch_size * world_size``."""
        return self.batch_size * self.world_size

    @property
    def epoch(self) -> int:
        """The epoch the next iteration yields."""
        return self._epoch

    @property
    def batches_done(self) -> int:
        """Batches handed out in the current epoch (counted before each yield)."""
        return self._batches_done

    def _global_plan(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate; its order is a pure function of (seed, epoch).

        Setting the epoch already selected keeps a pending resume from ``load_state_dict``, so the usual
        ``load_state_dict(...)`` then ``set_epoch(saved_epoch)`` sequence resumes mid-epoch.
        """
        if epoch < 0:
            raise EmbtuneError(f"epoch must be >= 0, got {epoch}.")
        if epoch != self._epoch:
            self._epoch = epoch
            self._batches_done = 0
            self._resume_at = 0
            self._plan = None

    def _local_plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This rank's epoch as ``(rows, starts, sizes)``; batch i is ``rows[starts[i]:][:sizes[i]]``."""
        if self._plan is None:
            rows, sizes = self._global_plan(epoch_rng(self.seed, self._epoch))
            self._plan = (rows, *self._rank_slices(np.asarray(sizes, dtype=np.int64)))
        return self._plan

    def _rank_slices(self, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start and size of this rank's slice of each kept global batch (vectorised over batches)."""
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        full = sizes == self.global_batch_size
        units = sizes // self._split_unit
        if self.drop_last:
            keep = full
        else:
            keep = full | ((sizes > 0) & (units >= self.world_size * self._min_units_per_rank))
        starts, units = starts[keep], units[keep]
        # Split each global batch's units as evenly as possible: the first `extra` ranks get one more.
        base, extra = units // self.world_size, units % self.world_size
        r = self.rank
        local_start = starts + (r * base + np.minimum(r, extra)) * self._split_unit
        local_size = (base + (r < extra)) * self._split_unit
        return local_start, local_size

    def __len__(self) -> int:
        return int(self._local_plan()[1].size)

    def __iter__(self) -> Iterator[list[int]]:
        rows, starts, sizes = self._local_plan()
        start, self._resume_at = self._resume_at, 0
        self._batches_done = start
        for s, n in zip(starts[start:].tolist(), sizes[start:].tolist(), strict=True):
            self._batches_done += 1
            yield rows[s : s + n].tolist()

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "batches_done", "seed", "global_batch_size"}``; plain ints, JSON-safe."""
        return {
            "epoch": self._epoch,
            "batches_done": self._batches_done,
            "seed": self.seed,
            "global_batch_size": self.global_batch_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at batch ``state["batches_done"]`` of ``state["epoch"]`` on the next iteration.

        The world size may change between save and load as long as ``batch_size * world_size`` stays
        the same: positions count global batches, which are identical for every world size.
        """
        for key in ("seed", "global_batch_size"):
            mine = self.seed if key == "seed" else self.global_batch_size
            if key in state and state[key] != mine:
                raise EmbtuneError(
                    f"cannot resume {type(self).__name__}: the checkpoint has {key}={state[key]} but this "
                    f"sampler has {key}={mine}; use the checkpoint's seed and batch_size * world_size."
                )
        self.set_epoch(int(state["epoch"]))
        self._batches_done = self._resume_at = int(state["batches_done"])
