"""Encode a corpus of Parquet / JSONL / CSV shards into Parquet shards of (id, embedding), resumably.

The work is cut into *parts*: each input file, in chunks of ``chunk_rows`` rows, in sorted file order. Part
``k`` is written to ``<output>/part-<k>.parquet`` atomically (``utils.atomic``), so a part file either is
complete or does not exist: a killed run restarted with the same arguments skips every finished part and
redoes only the one it was writing. ``<output>/manifest.json`` records the model, the inputs (with size and
modification time), the columns, the embedding dimension and every finished part with its row count; a
restart with other settings or changed input files is refused (use a new output folder).

Splitting over processes: ``shard=(i, n)`` keeps parts ``k`` with ``k % n == i``; under ``torchrun`` (``RANK``
and ``WORLD_SIZE`` set) every rank further takes its own slice, no process group needed. Inputs are read
through ``data.sources`` (the one file reader) into memory-mapped Arrow; the texts of one chunk at a time are
in Python.
"""

from __future__ import annotations

import glob
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..data.sources import file_fingerprint, load_table
from ..data.validate import check_texts
from ..errors import EmbtuneError
from ..utils.atomic import atomic_file, atomic_write_text

MANIFEST = "manifest.json"
SUFFIXES = (".parquet", ".pq", ".jsonl", ".ndjson", ".json", ".csv", ".tsv")


@dataclass
class EncodeReport:
    """What ``encode_corpus`` did in this process."""

    output: Path
    parts_total: int
    parts_written: list[int] = field(default_factory=list)
    parts_skipped: list[int] = field(default_factory=list)
    rows_written: int = 0
    seconds: float = 0.0
    complete: bool = False  # every part of every shard is on disk


def find_inputs(spec: str | os.PathLike | list) -> list[Path]:
    """A folder (its data files, recursively), a glob, one file, or a list of them -> sorted data files."""
    specs = spec if isinstance(spec, list | tuple) else [spec]
    found: list[Path] = []
    for item in specs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found += [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES]
        elif path.is_file():
            found.append(path)
        else:
            matches = [Path(p) for p in glob.glob(text, recursive=True)]
            found += [p for p in matches if p.is_file() and p.suffix.lower() in SUFFIXES]
            if not matches:
                raise EmbtuneError(f"{text}: no such file, folder or matching glob; check --input")
    files = sorted({p.resolve() for p in found})
    if not files:
        raise EmbtuneError(f"{specs}: no .parquet/.jsonl/.csv/.tsv files found; check --input")
    return files


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` (0-based i) -> (i, n); None -> (0, 1)."""
    if text is None:
        return 0, 1
    try:
        i, n = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise EmbtuneError(f"--shard {text!r}: write i/n with 0 <= i < n, e.g. 0/4") from None
    if not 0 <= i < n:
        raise EmbtuneError(f"--shard {text!r}: need 0 <= i < n, e.g. 0/4")
    return i, n


def _process_slice(shard: tuple[int, int]) -> tuple[int, int]:
    """This process's (index, count) over all parts: the manual shard, split again across torchrun ranks."""
    i, n = shard
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    return i + n * rank, n * world  # k % n == i still holds: rank r takes every world-th of them


def encode_corpus(  # noqa: C901 - one flat sequence: inputs, manifest, parts
    model: Any,
    inputs: str | os.PathLike | list,
    output: str | os.PathLike,
    *,
    text_column: str = "text",
    id_column: str = "id",
    chunk_rows: int = 50_000,
    shard: tuple[int, int] = (0, 1),
    batch_size: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    **encode_kwargs: Any,
) -> EncodeReport:
    """Encode every (id, text) row of ``inputs`` with ``model.encode``; write Parquet parts + manifest.

    Args:
        model: an ``EmbeddingModel``; ``model_name`` for the manifest is its ``source``.
        inputs: folder, glob, file, or a list of them (see ``find_inputs``).
        output: the output folder (created; reused on restart).
        text_column / id_column: which columns hold the text and the row id (any type; written as is).
        chunk_rows: rows per output part (the unit of resume).
        shard: (i, n) manual split: this call does parts ``k`` with ``k % n == i`` (and its torchrun rank's slice).
        cache_dir: where CSV/JSONL inputs are parsed to memory-mapped Arrow once; default ``<output>/.cache``.
        encode_kwargs: passed to ``model.encode`` (precision, normalize, prompt, prompt_name, truncate_dim, ...).
    """
    started = time.perf_counter()
    if chunk_rows < 1:
        raise EmbtuneError(f"chunk_rows must be >= 1, got {chunk_rows}")
    files = find_inputs(inputs)
    out = Path(output)
    if out.exists() and not out.is_dir():
        raise EmbtuneError(f"{out}: is a file; --output must be a folder")
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir else out / ".cache"
    settings = {
        "model": str(getattr(model, "source", "")),
        "text_column": text_column,
        "id_column": id_column,
        "chunk_rows": chunk_rows,
        "encode": {k: v for k, v in sorted(encode_kwargs.items())},
        "inputs": [{"path": str(p), "fingerprint": file_fingerprint(p)} for p in files],
    }
    manifest = _read_manifest(out)
    if manifest is not None and manifest["settings"] != settings:
        raise EmbtuneError(
            f"{out}: holds an encoding with other settings or input files ({_diff(manifest['settings'], settings)}); "
            "use a new --output folder, or delete this one to start over"
        )
    tables = [load_table(p, cache_dir=cache, text_columns=(text_column,)) for p in files]
    for path, table in zip(files, tables, strict=True):
        missing = [c for c in (id_column, text_column) if c not in table.column_names]
        if missing:
            raise EmbtuneError(f"{path}: no column {missing[0]!r}; available columns: {', '.join(table.column_names)}; "
                               "set --id-column / --text-column")
    parts = [(f, start) for f, t in enumerate(tables) for start in range(0, max(t.num_rows, 1), chunk_rows)]
    index, count = _process_slice(shard)
    report = EncodeReport(out, len(parts))
    for k, (f, start) in enumerate(parts):
        if k % count != index:
            continue
        target = out / f"part-{k:05d}.parquet"
        if target.is_file():
            report.parts_skipped.append(k)
            continue
        table = tables[f]
        chunk = table.data.table.slice(start, chunk_rows)
        texts_col = chunk.column(text_column)
        check_texts(texts_col, column=text_column, role="text", path=files[f], first_row=start)
        emb = model.encode(texts_col.to_pylist(), batch_size=batch_size, **encode_kwargs)
        _write_part(target, chunk.column(id_column), emb)
        report.parts_written.append(k)
        report.rows_written += chunk.num_rows
    report.complete = all((out / f"part-{k:05d}.parquet").is_file() for k in range(len(parts)))
    _write_manifest(out, settings, parts, tables, report.complete)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def _write_part(target: Path, ids: pa.ChunkedArray, emb: np.ndarray) -> None:
    """One Parquet part of (id, embedding) rows, written to a temporary name and renamed into place."""
    emb = np.ascontiguousarray(emb)
    flat = pa.array(emb.reshape(-1))
    column = pa.FixedSizeListArray.from_arrays(flat, emb.shape[1])
    table = pa.table({"id": ids.combine_chunks(), "embedding": column})
    with atomic_file(target) as tmp:  # float vectors neither compress nor dictionary-encode: skip both (2.5x faster)
        pq.write_table(table, tmp, compression="none", use_dictionary=False, write_statistics=["id"])


def _read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise EmbtuneError(f"{path}: unreadable manifest; delete the output folder to start over") from None


def _write_manifest(out: Path, settings: dict, parts: list, tables: list, complete: bool) -> None:
    done = []
    for k, (f, start) in enumerate(parts):
        path = out / f"part-{k:05d}.parquet"
        if path.is_file():
            rows = min(tables[f].num_rows - start, settings["chunk_rows"])
            done.append({"part": path.name, "input": settings["inputs"][f]["path"], "start_row": start, "rows": rows})
    dims = None
    if done:
        dims = pq.read_schema(out / done[0]["part"]).field("embedding").type.list_size
    manifest = {"settings": settings, "parts_total": len(parts), "parts": done, "embedding_dim": dims,
                "complete": complete}
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=1))


def _diff(old: dict, new: dict) -> str:
    keys = [k for k in new if old.get(k) != new.get(k)]
    return "differs in " + ", ".join(keys)


def read_embeddings(output: str | os.PathLike) -> tuple[list[Any], np.ndarray]:
    """All (ids, embeddings) of a finished output folder, in input order (for small corpora and tests)."""
    out = Path(output)
    files = sorted(out.glob("part-*.parquet"))
    if not files:
        raise EmbtuneError(f"{out}: no part-*.parquet files; run embtune encode first")
    table = pa.concat_tables(pq.read_table(p) for p in files)
    dim = table.schema.field("embedding").type.list_size
    flat = table.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return table.column("id").to_pylist(), flat.reshape(-1, dim)
