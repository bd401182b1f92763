"""Per-row arrays as ``.npy`` files written and read a chunk at a time, with ordinary file I/O.

A prepared dataset of millions of rows keeps its per-row arrays (token counts, text hashes) on disk. Collecting
them in a list and saving at the end holds every chunk twice at the peak; reading them back through a memory map
leaves each touched page counted in the process's resident memory until the map closes. ``NpyWriter`` streams
chunks below a header written up front (the row count is known), and ``read_chunks`` reads with ``readinto``,
so memory stays one chunk whatever the number of rows. The files are plain ``.npy``: ``np.load`` reads them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


class NpyWriter:
    """Write an array of known ``shape`` and ``dtype`` to ``path`` row-chunk by row-chunk (use as a context).

    >>> import tempfile; folder = tempfile.mkdtemp()
    >>> with NpyWriter(f"{folder}/a.npy", (3, 2), np.int32) as out:
    ...     out.write(np.array([[1, 2]])); out.write(np.array([[3, 4], [5, 6]]))
    >>> np.load(f"{folder}/a.npy").tolist()
    [[1, 2], [3, 4], [5, 6]]
    """

    def __init__(self, path: str | os.PathLike[str], shape: tuple[int, ...], dtype: Any) -> None:
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed in __exit__
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self._file, header)

    def write(self, chunk: np.ndarray) -> None:
        """Append rows (cast to the writer's dtype); their trailing shape must match."""
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        if chunk.shape[1:] != self.shape[1:] or self.rows + len(chunk) > self.shape[0]:
            raise ValueError(f"{self.path}: chunk of shape {chunk.shape} does not fit an array of shape {self.shape}")
        self._file.write(chunk.tobytes())
        self.rows += len(chunk)

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._file.close()
        if exc_type is None and self.rows != self.shape[0]:
            raise ValueError(f"{self.path}: wrote {self.rows} rows of the {self.shape[0]} declared")


def read_chunks(path: str | os.PathLike[str], rows: int = 1 << 16) -> Iterator[tuple[int, np.ndarray]]:
    """``(first_row, chunk)`` for consecutive chunks of up to ``rows`` rows of a C-order ``.npy`` file.

    Each chunk is a fresh array (the caller may keep it); nothing is memory-mapped.
    """
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(handle)
        if fortran:
            raise ValueError(f"{path}: a Fortran-order array; save it in C order")
        total, trailing = (shape[0], shape[1:]) if shape else (1, ())
        for start in range(0, total, rows):
            chunk = np.empty((min(rows, total - start), *trailing), dtype=dtype)
            if handle.readinto(memoryview(chunk).cast("B")) != chunk.nbytes:
                raise ValueError(f"{path}: the file ends before row {total}; delete it to rebuild the cache")
            yield start, chunk
