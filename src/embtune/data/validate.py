"""Check a table before any training step, vectorised with pyarrow.compute / numpy (1M rows in seconds).

Errors (EmbtuneError) name the file, the data row (1-based, header not counted) and the column. Things
that are suspicious but trainable are warnings (``DataWarning``): duplicate rows, truncated texts.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import EmbtuneError
from ..roles import LabelSpec, first_bad_label
from .columns import ColumnRoles
from .render import column_kind


class DataWarning(UserWarning):
    """Trainable but suspicious data: duplicate rows, texts truncated to max_seq_length."""


def validate_table(
    table: pa.Table,
    roles: ColumnRoles,
    *,
    label_spec: LabelSpec | None = None,
    path: object = None,
    batch_size: int | None = None,
    batches: Iterable[pa.RecordBatch] | None = None,
    labels: np.ndarray | None = None,
) -> None:
    """Raise EmbtuneError on the first problem that would break or silently spoil training.

    Checks: at least ``batch_size`` rows; every text cell present, a string (or a dict record) and not
    empty/whitespace-only; labels numeric, present, finite and accepted by ``label_spec``.

    Args:
        table: the source table (only the mapped columns are read).
        roles: the column roles (columns must exist: run ``check_columns`` first).
        label_spec: the loss's LabelSpec; None skips the range check.
        path: the source file, for messages.
        batch_size: the training batch size, or None to skip the row-count check.
        batches: the table's record batches in order, checked one at a time (``sources.stream_batches``:
            a large table is never held whole); None checks ``table.to_batches()``; ``()`` skips the text
            checks (a cached table that passed them before).
        labels: the labels already parsed by ``label_array`` (from the cache); None parses the label column.
    """
    if batch_size is not None and table.num_rows < batch_size:
        raise EmbtuneError(
            f"{path}: has {table.num_rows} rows, fewer than one batch ({batch_size}); add data or lower batch_size"
        )
    for role, column in roles.text_roles.items():  # the type check needs no rows
        _check_text_type(table.schema.field(column).type, column=column, role=role, path=path)
    first_row = 0
    for batch in table.to_batches() if batches is None else batches:
        for role, column in roles.text_roles.items():
            check_texts(batch.column(column), column=column, role=role, path=path, first_row=first_row)
        first_row += batch.num_rows
    if roles.label is not None:
        if labels is None:
            labels = label_array(table.column(roles.label), column=roles.label, path=path)
        if label_spec is not None:
            bad = first_bad_label(label_spec, labels)
            if bad is not None:
                row, reason = bad
                raise EmbtuneError(
                    f"{_at(path, row, roles.label)}{reason}; the loss accepts {label_spec.describe()}, so fix or "
                    "rescale the labels"
                )


def _check_text_type(value_type: pa.DataType, *, column: str, role: str, path: object) -> None:
    if column_kind(value_type) not in ("string", "dict"):
        raise EmbtuneError(
            f"{path}, column {column!r} ({role}): holds {value_type} values, not text; map a column of texts "
            f"to {role}"
        )


def check_texts(
    values: pa.Array | pa.ChunkedArray, *, column: str, role: str, path: object = None, first_row: int = 0
) -> None:
    """Raise EmbtuneError at the first missing, non-string, empty or whitespace-only text.

    Dict (record) columns are only checked for missing records here; call this again on the rendered texts.
    """
    kind = column_kind(values.type)
    _check_text_type(values.type, column=column, role=role, path=path)
    missing = _first(values.is_null())
    if missing is not None:
        raise EmbtuneError(
            f"{_at(path, first_row + missing, column)}{role} text is missing (null); fill it in or drop the row"
        )
    if kind == "string":
        row = _first(pc.match_substring(values, "\x00"))
        if row is not None:
            raise EmbtuneError(
                f"{_at(path, first_row + row, column)}{role} text contains a NUL byte (\\x00), which tokenizers "
                "drop silently; it is binary data or a UTF-16 file: remove it or re-save the file as UTF-8"
            )
        blank = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(values)), 0)
        row = _first(blank)
        if row is not None:
            what = "empty" if values[row].as_py() == "" else "whitespace only"
            raise EmbtuneError(
                f"{_at(path, first_row + row, column)}{role} text is {what}; fill it in or drop the row"
            )


def label_array(values: pa.Array | pa.ChunkedArray, *, column: str, path: object = None) -> np.ndarray:
    """Labels as float32, shape (num_rows,) or (num_rows, k) for fixed-length list labels.

    Raises:
        EmbtuneError: text labels, missing labels, NaN/inf, or list labels of differing lengths.
    """
    kind = column_kind(values.type)
    missing = _first(values.is_null())
    if missing is not None:
        raise EmbtuneError(
            f"{_at(path, missing, column)}label is missing (an empty cell, or text such as NaN / NA / null that "
            "CSV readers treat as missing); fill in a number or drop the row"
        )
    if kind in ("int", "float", "bool"):
        array = _combined(values).to_numpy(zero_copy_only=False).astype(np.float64)
    elif kind == "list":
        array = _list_labels(values, column, path)
    else:
        row = _first_non_number(values) if kind == "string" else 0
        example = values[row].as_py()
        hint = " (the labels may have been saved as text: write them unquoted)" if kind == "string" else ""
        raise EmbtuneError(
            f"{_at(path, row, column)}labels must be numbers, but the column holds {values.type} values such as "
            f"{str(example)[:40]!r}{hint}; fix that value or map label to a numeric column"
        )
    finite = np.isfinite(array).reshape(len(array), -1).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise EmbtuneError(
            f"{_at(path, row, column)}label {array[row]} is not finite (NaN or inf); fix the label"
        )
    return array.astype(np.float32)


def count_duplicate_rows(row_keys: np.ndarray, labels: np.ndarray | None = None) -> int:
    """How many rows repeat an earlier row exactly (same texts in every role, same label).

    Args:
        row_keys: (num_rows, n_roles) uint64 text hashes.
        labels: (num_rows,) or (num_rows, k) labels, or None.
    """
    if len(row_keys) == 0:
        return 0
    parts = [np.ascontiguousarray(row_keys, dtype=np.uint64).reshape(len(row_keys), -1)]
    if labels is not None:
        bits = np.ascontiguousarray(labels, dtype=np.float32).reshape(len(labels), -1).view(np.uint32)
        parts.append(bits.astype(np.uint64))
    keys = np.concatenate(parts, axis=1)
    # fold the columns into one 64-bit key per row (odd multipliers mix; collisions are ~n²/2⁶⁴)
    folded = np.zeros(len(keys), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(keys.shape[1]):
            folded = (folded ^ keys[:, j]) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(2 * j + 1)
    return int(len(folded) - np.unique(folded).size)


def warn_duplicates(count: int, num_rows: int, path: object = None) -> None:
    """Emit a DataWarning when ``count`` > 0."""
    if count:
        warnings.warn(
            f"{path}: {count} of {num_rows} rows are exact duplicates of an earlier row; they weigh those "
            "examples more (and in-batch losses may see the same text as a negative). Deduplicate if unintended",
            DataWarning,
            stacklevel=3,
        )


def warn_truncated(count: int, total: int, max_seq_length: int, path: object = None) -> None:
    """Emit a DataWarning when ``count`` texts were cut to ``max_seq_length`` tokens."""
    if count:
        warnings.warn(
            f"{path}: {count} of {total} texts are longer than max_seq_length={max_seq_length} tokens and were "
            "truncated; raise max_seq_length if their ends matter",
            DataWarning,
            stacklevel=3,
        )


def _at(path: object, row: int, column: str) -> str:
    """'data.csv, data row 3 (1-based), column 'x': ' from a 0-based row index."""
    return f"{path}, data row {row + 1} (1-based), column {column!r}: "


def _first(mask: pa.Array | pa.ChunkedArray) -> int | None:
    index = pc.index(mask.fill_null(True), True).as_py()
    return None if index < 0 else int(index)


def _first_non_number(values: pa.Array | pa.ChunkedArray) -> int:
    """Row of the first text label that does not parse as a number (0 when all do: quoted numbers)."""
    for row, text in enumerate(_combined(values).to_pylist()):
        try:
            float(text)
        except (TypeError, ValueError):
            return row
    return 0


def _combined(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _list_labels(values: pa.Array | pa.ChunkedArray, column: str, path: object) -> np.ndarray:
    combined = _combined(values)
    lengths = pc.list_value_length(combined).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths != lengths[0]).any():
        row = int(np.flatnonzero(lengths != lengths[0])[0])
        raise EmbtuneError(
            f"{_at(path, row, column)}list label has {lengths[row]} values but row 1 has {lengths[0]}; "
            "give every row the same number of values"
        )
    flat = pc.list_flatten(combined)
    if column_kind(flat.type) not in ("int", "float", "bool") or flat.null_count:
        raise EmbtuneError(f"{path}, column {column!r}: list labels must hold numbers only; fix the labels")
    return flat.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(combined), -1)
