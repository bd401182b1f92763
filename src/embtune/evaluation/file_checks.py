"""Check an evaluation table column by column, so every error names the file, the 1-based data row and the
column (the evaluators' own checks only see Python lists and can only name a 0-based index).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.validate import check_texts, label_array
from ..errors import EmbtuneError

LABEL_INPUTS = {"scores", "labels"}  # the inputs of sts / binary that are numbers, not texts


def check_columns(kind: str, path: Path, table, mapping: dict[str, str]) -> None:
    """Raise on the first bad cell: non-text or empty texts, NUL bytes, non-numeric or non-finite labels,
    and binary labels other than 0/1."""
    for key, column in mapping.items():
        values = table.data.table.column(column)
        if key not in LABEL_INPUTS:
            check_texts(values, column=column, role=key, path=path)
            continue
        labels = label_array(values, column=column, path=path)
        if kind == "binary":
            bad = np.flatnonzero((labels != 0) & (labels != 1))
            if bad.size:
                row = int(bad[0])
                raise EmbtuneError(
                    f"{path}, data row {row + 1} (1-based), column {column!r}: label {labels[row]:g} is not 0 "
                    "or 1; the binary evaluator needs 0 (dissimilar) or 1 (similar): map your classes to 0/1"
                )
