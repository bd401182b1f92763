"""Random access to rows of a prepared dataset's token ids that keeps resident only what it returns.

Two ways of reading rows out of the memory-mapped ``tokens.arrow`` cost memory that grows with the file:
``pyarrow.Table.take`` on a table of many record batches reads every batch it is given (on 5M rows one
training batch's gather read the whole 1 GB file), and even slicing single rows out of the map leaves the
kernel's fault-around (64 KB per page fault) mapped in the process, ~250 KB of resident memory per random row,
until most of the file is resident after a few dozen steps. ``TokenRows`` learns where each record batch's
offsets and values lie in the file once (from the stream's metadata, map closed again) and reads each row's
ids with ``os.pread`` from the page cache: resident memory stays the rows returned.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa


class TokenRows:
    """Per column, the token ids of any rows of an Arrow IPC stream file of ``list<int32>`` columns.

    >>> import tempfile; path = f"{tempfile.mkdtemp()}/t.arrow"
    >>> table = pa.table({"anchor": pa.array([[1, 2], [3], [4, 5, 6]], pa.list_(pa.int32()))})
    >>> with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
    ...     writer.write_table(table)
    >>> [r.tolist() for r in TokenRows(path).rows("anchor", np.array([2, 0]))]
    [[4, 5, 6], [1, 2]]
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = open(self.path, "rb", buffering=0)  # noqa: SIM115 - lives as long as this object
        mapped = pa.memory_map(str(self.path))
        whole = mapped.read_buffer()  # zero-copy: buffer addresses minus its address are file offsets
        base = whole.address
        table = pa.ipc.open_stream(whole).read_all()
        self._columns: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for name in table.column_names:
            chunks = [c for c in table.column(name).chunks if len(c)]
            if any(c.type != pa.list_(pa.int32()) for c in chunks):
                raise ValueError(f"{self.path}: column {name!r} is not list<int32>; delete the cache entry")
            starts = np.cumsum([0] + [len(c) for c in chunks], dtype=np.int64)
            offsets_at = np.array([c.offsets.buffers()[1].address - base + 4 * c.offsets.offset for c in chunks],
                                  dtype=np.int64)
            values_at = np.array([c.values.buffers()[1].address - base + 4 * c.values.offset for c in chunks],
                                 dtype=np.int64)
            self._columns[name] = (starts, offsets_at, values_at)
        del table, whole
        mapped.close()

    def rows(self, column: str, index: np.ndarray) -> list[np.ndarray]:
        """The int32 id arrays of rows ``index`` (0-based, in that order) of ``column``."""
        starts, offsets_at, values_at = self._columns[column]
        index = np.asarray(index, dtype=np.int64)
        which = np.searchsorted(starts, index, side="right") - 1
        local = index - starts[which]
        fd = self._file.fileno()
        out = []
        for c, i in zip(which.tolist(), local.tolist(), strict=True):
            first, end = np.frombuffer(os.pread(fd, 8, int(offsets_at[c]) + 4 * i), dtype=np.int32).tolist()
            out.append(np.frombuffer(os.pread(fd, 4 * (end - first), int(values_at[c]) + 4 * first), dtype=np.int32))
        return out
