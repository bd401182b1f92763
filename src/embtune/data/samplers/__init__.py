"""Batch samplers: which rows go together in a batch, for each rank, each epoch, resumably.

- ``ShuffledBatchSampler`` (``shuffled.py``): the default; a fresh random order each epoch.
- ``NoDuplicatesBatchSampler`` (``no_duplicates.py``): no text twice in a global batch (in-batch negatives).
- ``GroupByLabelBatchSampler`` (``group_by_label.py``): groups of same-label rows (batch triplet mining).
- ``MultiDatasetBatchSampler`` (``multi_dataset.py``): interleaves the samplers of several datasets.

All single-dataset samplers share the distributed slicing, ``set_epoch``, ``batches_done`` and
``state_dict`` behaviour described in ``base.py``.
"""

from .base import BatchSampler, PlannedBatchSampler, padding_waste
from .group_by_label import GroupByLabelBatchSampler
from .multi_dataset import MultiDatasetBatchSampler
from .no_duplicates import NoDuplicatesBatchSampler
from .shuffled import ShuffledBatchSampler

__all__ = [
    "BatchSampler",
    "GroupByLabelBatchSampler",
    "MultiDatasetBatchSampler",
    "NoDuplicatesBatchSampler",
    "PlannedBatchSampler",
    "ShuffledBatchSampler",
    "padding_waste",
]
