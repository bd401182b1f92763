"""Random access to rows of a prepared dataset's memory-mapped token ids, touching only those rows.

``pyarrow.Table.take`` on a table of thousands of record batches reads every batch it is given: on 5M rows,
one training batch's gather read the whole 1 GB token file and kept ~700 MB of it in memory. ``TokenRows``
views each batch's offsets and values as numpy arrays once (zero-copy, nothing read) and slices the
requested rows out of them, so a gather costs the rows it returns.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


class TokenRows:
    """Per role, the token ids of any rows of a table of ``list<int32>`` columns.

    >>> table = pa.table({"anchor": pa.array([[1, 2], [3], [4, 5, 6]], pa.list_(pa.int32()))})
    >>> [r.tolist() for r in TokenRows(table).rows("anchor", np.array([2, 0]))]
    [[4, 5, 6], [1, 2]]
    """

    def __init__(self, table: pa.Table) -> None:
        self._columns: dict[str, tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]] = {}
        for name in table.column_names:
            chunks = [c for c in table.column(name).chunks if len(c)]
            starts = np.cumsum([0] + [len(c) for c in chunks], dtype=np.int64)
            offsets = [c.offsets.to_numpy() for c in chunks]  # absolute positions into c.values, slices included
            values = [c.values.to_numpy() for c in chunks]
            self._columns[name] = (starts, offsets, values)

    def rows(self, column: str, index: np.ndarray) -> list[np.ndarray]:
        """The id arrays of rows ``index`` (0-based, in that order) of ``column``; views into the map."""
        starts, offsets, values = self._columns[column]
        which = np.searchsorted(starts, index, side="right") - 1
        local = index - starts[which]
        out = []
        for c, i in zip(which.tolist(), local.tolist(), strict=True):
            offs = offsets[c]
            out.append(values[c][offs[i] : offs[i + 1]])
        return out
