"""A dataset given as many files: a folder or a glob of Parquet / JSONL / CSV shards, read as one table.

``sources.load_table`` hands such paths here. Each shard is parsed once into its own memory-mapped Arrow file
(``sources`` cache), and the shards are concatenated without copying, so a dataset larger than RAM is a list of
memory maps. A folder written by ``datasets``' ``save_to_disk`` is not a shard folder (it stays format ``disk``).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import datasets

from ..errors import EmbtuneError

SHARD_SUFFIXES = (".parquet", ".pq", ".jsonl", ".ndjson", ".csv", ".tsv", ".tab")
_SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
_GLOB_CHARS = "*?["


def shard_files(path: str | os.PathLike[str]) -> list[Path] | None:
    """The sorted data files of a glob or a shard folder; None when ``path`` is one file or a saved dataset.

    Raises:
        EmbtuneError: a glob that matches no data file.
    """
    text = str(path)
    if any(ch in text for ch in _GLOB_CHARS) and not Path(text).exists():
        files = sorted(Path(p) for p in glob.glob(text, recursive=True)
                       if Path(p).is_file() and Path(p).suffix.lower() in SHARD_SUFFIXES)
        if not files:
            raise EmbtuneError(f"{text}: the glob matches no .parquet/.jsonl/.csv/.tsv file; check the pattern")
        return files
    folder = Path(text)
    if not folder.is_dir() or any((folder / m).exists() for m in _SAVED_MARKERS):
        return None
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SHARD_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return files or None  # no data files: the 'disk' loader explains what the folder should hold


def load_shards(
    path: str | os.PathLike[str],
    files: list[Path],
    fmt: str | None,
    cache_dir: str | os.PathLike[str] | None,
    text_columns: tuple[str, ...],
) -> datasets.Dataset:
    """Every shard through ``load_table`` (each memory-mapped), concatenated in file order."""
    from .sources import load_table

    parts = [load_table(f, fmt, cache_dir=cache_dir, text_columns=text_columns) for f in files]
    first = parts[0]
    for file, part in zip(files[1:], parts[1:], strict=True):
        if part.column_names != first.column_names:
            raise EmbtuneError(
                f"{file}: columns {part.column_names} differ from {files[0].name}'s {first.column_names}; "
                f"every shard of {path} needs the same columns"
            )
    if len(parts) == 1:
        return first
    try:
        return datasets.concatenate_datasets(parts)
    except Exception as exc:  # type clashes between shards
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EmbtuneError(
            f"{path}: the shards' column types differ ({first_line}); give every shard the same types"
        ) from None


def shards_fingerprint(files: list[Path]) -> str:
    """One fingerprint of all shard files (names and each file's own fingerprint)."""
    import hashlib

    from .sources import file_fingerprint

    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.resolve()}|{file_fingerprint(f)}|".encode())
    return digest.hexdigest()
