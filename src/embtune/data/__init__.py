"""Training data: load a table, map columns to roles, validate, tokenize once (cached), collate batches.

Samplers live in ``embtune.data.samplers``.
"""

from .collate import Batch, collate
from .columns import ColumnRoles
from .prepare import DatasetSpec, PreparedDataset, prepare_dataset
from .sources import load_table
from .validate import DataWarning

__all__ = [
    "Batch",
    "ColumnRoles",
    "DataWarning",
    "DatasetSpec",
    "PreparedDataset",
    "collate",
    "load_table",
    "prepare_dataset",
]
