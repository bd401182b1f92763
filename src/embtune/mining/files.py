"""Read (anchor, positive) pairs and a corpus from data files; write mined rows as jsonl, csv or parquet."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..errors import EmbtuneError
from ..utils.atomic import atomic_write_bytes

WRITABLE = (".jsonl", ".csv", ".parquet")


def _strings(table: Any, column: str, path: object) -> list[str]:
    if column not in table.column_names:
        raise EmbtuneError(
            f"{path}: no column {column!r}; the file has {', '.join(table.column_names)}; "
            "name the right one (--anchor/--positive/--corpus-column, or columns.anchor/positive in the recipe)"
        )
    values = table[column]
    for row, value in enumerate(values):
        if not isinstance(value, str):
            raise EmbtuneError(
                f"{path}: row {row + 1}, column {column!r}: mining needs text, got {type(value).__name__} "
                f"{str(value)[:40]!r}; fix the value or pick a text column"
            )
    return list(values)


def read_pairs(path: str | os.PathLike[str], anchor: str, positive: str, max_rows: int | None = None,
               cache_dir: str | os.PathLike[str] | None = None) -> tuple[list[str], list[str]]:
    """The anchor and positive texts of a csv/tsv/jsonl/parquet file (first ``max_rows`` rows)."""
    from ..data.sources import load_table

    table = load_table(path, cache_dir=cache_dir)
    if max_rows is not None:
        table = table.select(range(min(max_rows, len(table))))
    return _strings(table, anchor, path), _strings(table, positive, path)


def read_corpus(path: str | os.PathLike[str], column: str = "text") -> list[str]:
    """Candidate texts: a .txt file (one per line) or a table file's ``column``."""
    path = Path(path)
    if path.suffix == ".txt":
        if not path.is_file():
            raise EmbtuneError(f"{path}: file not found; check the --corpus path")
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    from ..data.sources import load_table

    return _strings(load_table(path), column, path)


def write_rows(path: str | os.PathLike[str], columns: dict[str, list[Any]]) -> Path:
    """Write the mined columns to ``path`` (format from the extension), atomically."""
    path = Path(path)
    if path.suffix not in WRITABLE:
        raise EmbtuneError(f"{path}: cannot write {path.suffix or 'files without extension'}; use {', '.join(WRITABLE)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        names = list(columns)
        lines = (json.dumps(dict(zip(names, values, strict=True)), ensure_ascii=False)
                 for values in zip(*columns.values(), strict=True))
        atomic_write_bytes(path, "".join(line + "\n" for line in lines).encode("utf-8"))
        return path
    table = pa.table(columns)
    buffer = io.BytesIO()
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, buffer)
    else:
        if "scores" in columns:
            table = table.set_column(table.column_names.index("scores"), "scores",
                                     pa.array([json.dumps(s) for s in columns["scores"]]))
        import pyarrow.csv as pcsv

        pcsv.write_csv(table, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return path
