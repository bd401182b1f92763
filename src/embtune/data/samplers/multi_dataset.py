"""MultiDatasetBatchSampler: interleave the batches of several datasets, each batch from one dataset."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ...errors import EmbtuneError
from .base import BatchSampler, epoch_rng

STRATEGIES = ("round_robin", "proportional")


class MultiDatasetBatchSampler:
    """Yield ``(dataset_index, row_indices)`` batches from one sampler per dataset.

    Strategies (the semantics of sentence-transformers' RoundRobin / Proportional batch samplers):

    - ``"round_robin"``: one batch from dataset 0, 1, ..., n-1, then again, until the dataset with the
      fewest batches is exhausted. Every dataset gets the same number of batches,
      ``min(len(s) for s in samplers)``; the surplus batches of larger datasets are not used this epoch
      (their sampler reshuffles them next epoch).
    - ``"proportional"``: the dataset of each step is drawn at random, in proportion to its number of
      batches, until every batch of every dataset has been used once (a random permutation of
      ``[i] * len(samplers[i])`` for every i).

    The dataset order is a pure function of ``(seed, epoch)`` and the sub-samplers' lengths, which are
    the same on every rank, so all ranks agree on it. ``row_indices`` index into dataset
    ``dataset_index`` (no offsets are added).

    Args:
        samplers: one batch sampler per dataset (anything following ``BatchSampler``).
        strategy: ``"round_robin"`` or ``"proportional"``.
        seed: seed of the dataset order (the sub-samplers keep their own seeds).

    >>> from embtune.data.samplers import ShuffledBatchSampler
    >>> multi = MultiDatasetBatchSampler([ShuffledBatchSampler(4, 2), ShuffledBatchSampler(6, 2)])
    >>> [i for i, _ in multi], len(multi)
    ([0, 1, 0, 1], 4)
    """

    def __init__(
        self, samplers: Sequence[BatchSampler], strategy: str = "round_robin", seed: int = 0
    ) -> None:
        if strategy not in STRATEGIES:
            raise EmbtuneError(
                f"unknown multi-dataset strategy {strategy!r}; choose one of {list(STRATEGIES)}."
            )
        if not samplers:
            raise EmbtuneError("MultiDatasetBatchSampler needs at least one sampler.")
        if seed < 0:
            raise EmbtuneError(f"seed must be a non-negative integer, got {seed}.")
        self.samplers = list(samplers)
        self.strategy = strategy
        self.seed = seed
        self._epoch = 0
        self._batches_done = 0
        self._resume_at = 0
        self._order: np.ndarray | None = None
        self._select_epoch(0, force=True)

    @property
    def epoch(self) -> int:
        """The epoch the next iteration yields."""
        return self._epoch

    @property
    def batches_done(self) -> int:
        """Batches handed out in the current epoch (the position ``state_dict`` saves)."""
        return self._batches_done

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch for this sampler and every sub-sampler.

        As for the single-dataset samplers, setting the epoch already selected keeps a pending resume.
        """
        self._select_epoch(epoch, force=False)

    def _select_epoch(self, epoch: int, force: bool) -> None:
        if epoch < 0:
            raise EmbtuneError(f"epoch must be >= 0, got {epoch}.")
        if epoch != self._epoch or force:
            self._epoch = epoch
            self._batches_done = self._resume_at = 0
            self._order = None
        for sampler in self.samplers:
            sampler.set_epoch(epoch)

    def _dataset_order(self) -> np.ndarray:
        """The dataset index of every step of this epoch."""
        if self._order is None:
            lengths = np.array([len(s) for s in self.samplers], dtype=np.int64)
            if self.strategy == "round_robin":
                self._order = np.tile(np.arange(lengths.size), int(lengths.min()))
            else:
                rng = epoch_rng(self.seed, self._epoch)
                self._order = rng.permutation(np.repeat(np.arange(lengths.size), lengths))
        return self._order

    def __len__(self) -> int:
        return int(self._dataset_order().size)

    def __iter__(self) -> Iterator[tuple[int, list[int]]]:
        order = self._dataset_order()
        start, self._resume_at = self._resume_at, 0
        # Position every sub-sampler from the dataset order itself, so they always agree with it.
        done = np.bincount(order[:start], minlength=len(self.samplers)).tolist()
        iterators = []
        for sampler, k in zip(self.samplers, done, strict=True):
            sampler.load_state_dict({**sampler.state_dict(), "epoch": self._epoch, "batches_done": k})
            iterators.append(iter(sampler))
        self._batches_done = start
        for i in order[start:].tolist():
            batch = next(iterators[i])
            self._batches_done += 1
            yield i, batch

    def state_dict(self) -> dict[str, Any]:
        """``{"epoch", "batches_done", "seed", "strategy", "samplers": [sub-sampler state_dicts]}``."""
        return {
            "epoch": self._epoch,
            "batches_done": self._batches_done,
            "seed": self.seed,
            "strategy": self.strategy,
            "samplers": [s.state_dict() for s in self.samplers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at step ``state["batches_done"]`` of ``state["epoch"]`` on the next iteration.

        The sub-sampler states are loaded too (so they check their own seed and batch size); their
        positions are then re-derived from the dataset order when iteration starts.
        """
        subs = state.get("samplers", [])
        if len(subs) != len(self.samplers) or state.get("strategy", self.strategy) != self.strategy:
            raise EmbtuneError(
                f"cannot resume MultiDatasetBatchSampler: the checkpoint has {len(subs)} dataset(s) with "
                f"strategy {state.get('strategy')!r}, this run has {len(self.samplers)} with "
                f"{self.strategy!r}; "
                "use the same datasets and strategy as the checkpointed run."
            )
        if state.get("seed", self.seed) != self.seed:
            raise EmbtuneError(
                f"cannot resume MultiDatasetBatchSampler: the checkpoint has seed={state['seed']}, this run "
                f"has seed={self.seed}; use the checkpoint's seed."
            )
        for sampler, sub in zip(self.samplers, subs, strict=True):
            sampler.load_state_dict(sub)
        self._select_epoch(int(state["epoch"]), force=True)
        self._batches_done = self._resume_at = int(state["batches_done"])
