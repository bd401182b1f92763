"""validate_table: bad texts and labels name file, data row (1-based) and column; duplicates warn."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pyarrow as pa
import pytest

from embtune.data.columns import ColumnRoles
from embtune.data.validate import (
    DataWarning,
    count_duplicate_rows,
    label_array,
    validate_table,
    warn_duplicates,
)
from embtune.errors import EmbtuneError
from embtune.roles import LabelSpec

PAIRS = ColumnRoles("a", "b")
SCORED = ColumnRoles("a", "b", label="s")


def _table(**columns: list) -> pa.Table:
    return pa.table({name: pa.array(values) for name, values in columns.items()})


def test_clean_table_passes() -> None:
    table = _table(a=["x", "y"], b=["p", "q"], s=[0.0, 1.0])
    validate_table(table, SCORED, label_spec=LabelSpec("float", 0, 1), path="d.csv", batch_size=2)


@pytest.mark.parametrize(
    ("b", "message"),
    [
        (["p", ""], r"d.csv, data row 2 \(1-based\), column 'b': positive text is empty"),
        (["p", " \t\n"], r"d.csv, data row 2 \(1-based\), column 'b': positive text is whitespace only"),
        ([None, "q"], r"d.csv, data row 1 \(1-based\), column 'b': positive text is missing"),
        ([1, 2], r"d.csv, column 'b' \(positive\): holds int64 values, not text"),
    ],
)
def test_bad_texts(b: list, message: str) -> None:
    with pytest.raises(EmbtuneError, match=message):
        validate_table(_table(a=["x", "y"], b=b), PAIRS, path="d.csv")


def test_missing_dict_record_is_an_error() -> None:
    table = pa.table({"a": ["x", "y"], "b": pa.array([{"text": "t"}, None])})
    with pytest.raises(EmbtuneError, match=r"data row 2 \(1-based\), column 'b': positive text is missing"):
        validate_table(table, PAIRS, path="d.jsonl")


@pytest.mark.parametrize(
    ("labels", "spec", "message"),
    [
        ([0.5, float("nan"), 0.1], None, r"data row 2 \(1-based\), column 's': label nan is not finite"),
        ([0.5, 0.2, float("inf")], None, r"data row 3 \(1-based\), column 's': label inf is not finite"),
        ([0.5, None, 0.1], None, r"data row 2 \(1-based\), column 's': label is missing"),
        (["high", "low", "mid"], None, r"data row 1 \(1-based\), column 's': labels must be numbers.*'high'"),
        (
            [0.5, 1.0, 5.0],
            LabelSpec("float", -1, 1),
            r"data row 3 \(1-based\), column 's': label 5 is outside",
        ),
        ([1, 0, 2], LabelSpec("binary"), r"data row 3 \(1-based\), column 's': label 2 is not 0 or 1"),
        (
            [1.0, 0.5, 2.0],
            LabelSpec("class"),
            r"data row 2 \(1-based\), column 's': label 0.5 is not an integer",
        ),
    ],
)
def test_bad_labels(labels: list, spec: LabelSpec | None, message: str) -> None:
    table = _table(a=["x", "y", "z"], b=["p", "q", "r"], s=labels)
    with pytest.raises(EmbtuneError, match="d.csv, " + message):
        validate_table(table, SCORED, label_spec=spec, path="d.csv")


def test_label_array_is_float32_and_supports_fixed_length_lists() -> None:
    table = _table(s=[1, 0, 1])
    assert label_array(table.column("s"), column="s").dtype == np.float32
    lists = label_array(pa.chunked_array([[[0.1, 0.2]], [[0.3, 0.4]]]), column="s")
    assert lists.shape == (2, 2) and lists.dtype == np.float32
    with pytest.raises(
        EmbtuneError, match=r"data row 2 \(1-based\).*list label has 1 values but row 1 has 2"
    ):
        label_array(pa.array([[0.1, 0.2], [0.3]]), column="s", path="d.jsonl")


def test_fewer_rows_than_one_batch() -> None:
    with pytest.raises(
        EmbtuneError, match=r"d.csv: has 2 rows, fewer than one batch \(8\); add data or lower"
    ):
        validate_table(_table(a=["x", "y"], b=["p", "q"]), PAIRS, path="d.csv", batch_size=8)


def test_duplicates_are_counted_and_warned() -> None:
    keys = np.array([[1, 2], [1, 2], [3, 4], [1, 2], [2, 1]], dtype=np.uint64)
    assert count_duplicate_rows(keys) == 2
    labels = np.array([0.5, 0.7, 0.1, 0.5, 0.0], dtype=np.float32)
    assert count_duplicate_rows(keys, labels) == 1  # same texts, different label: not a duplicate
    with pytest.warns(DataWarning, match="d.csv: 2 of 5 rows are exact duplicates"):
        warn_duplicates(2, 5, "d.csv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_duplicates(0, 5, "d.csv")


def test_a_million_rows_validate_in_seconds() -> None:
    n = 1_000_000
    words = np.array(["the cat", "a dog", "red car", "blue sky"], dtype=object)
    rng = np.random.default_rng(0)
    texts = pa.array(words[rng.integers(0, 4, n)], pa.string())
    table = pa.table({"a": texts, "b": texts, "s": pa.array(rng.random(n))})
    start = time.perf_counter()
    validate_table(table, SCORED, label_spec=LabelSpec("float", 0, 1), path="big.csv", batch_size=64)
    keys = rng.integers(0, 2**63, (n, 2), dtype=np.int64).astype(np.uint64)
    assert count_duplicate_rows(keys) == 0
    assert time.perf_counter() - start < 5.0
