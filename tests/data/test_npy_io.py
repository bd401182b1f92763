"""npy_io: chunked .npy writing and reading give the arrays np.save / np.load give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embtune.data.npy_io import NpyWriter, read_chunks


@pytest.mark.parametrize("shape,dtype", [((10, 3), np.uint64), ((7,), np.int32), ((0, 2), np.float32)])
def test_written_in_chunks_loads_with_numpy_and_reads_back_in_chunks(tmp_path: Path, shape: tuple, dtype: type) -> None:
    array = np.arange(int(np.prod(shape)), dtype=dtype).reshape(shape)
    with NpyWriter(tmp_path / "a.npy", shape, dtype) as out:
        for start in range(0, shape[0], 4):
            out.write(array[start : start + 4])
    assert np.array_equal(np.load(tmp_path / "a.npy"), array)
    parts = list(read_chunks(tmp_path / "a.npy", rows=3))
    assert [start for start, _ in parts] == list(range(0, shape[0], 3))
    joined = np.concatenate([c for _, c in parts]) if parts else np.zeros(shape, dtype)
    assert np.array_equal(joined, array) and joined.dtype == array.dtype


def test_reads_files_written_by_np_save(tmp_path: Path) -> None:
    array = np.random.default_rng(0).integers(0, 99, size=(1000, 2)).astype(np.uint64)
    np.save(tmp_path / "b.npy", array)
    assert np.array_equal(np.concatenate([c for _, c in read_chunks(tmp_path / "b.npy", rows=333)]), array)


def test_too_few_or_too_many_rows_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="wrote 1 rows of the 2"), NpyWriter(tmp_path / "c.npy", (2,), np.int32) as out:
        out.write(np.array([1]))
    with pytest.raises(ValueError, match="does not fit"), NpyWriter(tmp_path / "d.npy", (1,), np.int32) as out:
        out.write(np.array([1, 2]))


def test_truncated_file_is_an_error(tmp_path: Path) -> None:
    np.save(tmp_path / "e.npy", np.arange(100, dtype=np.int64))
    data = (tmp_path / "e.npy").read_bytes()
    (tmp_path / "e.npy").write_bytes(data[:-8])
    with pytest.raises(ValueError, match="ends before row 100"):
        list(read_chunks(tmp_path / "e.npy"))
