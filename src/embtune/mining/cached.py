"""The recipe form: ``negatives: {mine: {...}}`` on a dataset mines once, into the cache, and reuses the file.

The mined file is keyed by the source file's fingerprint, the columns, ``max_rows``, the options and the
mining model's identity; a later run (or epoch, or DDP rank) reads the same file instead of mining again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .files import read_pairs, write_rows
from .mine import mine_hard_negatives
from .options import MineOptions


def _model_identity(name: str) -> list[Any]:
    folder = Path(name)
    files = []
    if folder.is_dir():
        for path in sorted(folder.rglob("*.safetensors")):
            stat = path.stat()
            files.append([str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns])
    return [name, files]


def mined_file(
    path: str,
    anchor: str,
    positive: str,
    options: MineOptions,
    model: Any,
    cache_dir: str | os.PathLike[str],
    max_rows: int | None = None,
    model_name: str | None = None,
) -> tuple[Path, dict[str, Any] | None]:
    """The cached mined file for this dataset (mining it first when absent) and the stats of a fresh mine.

    ``model`` is a name or a loaded EmbeddingModel; ``model_name`` names a loaded one for the cache key.

    Returns (path of a .jsonl with anchor, positive, negative(s)[, scores]; stats or None on a cache hit).
    """
    from ..data.sources import file_fingerprint, split_path

    key = json.dumps([file_fingerprint(split_path(path)[0]), str(path), anchor, positive, max_rows,
                      dataclasses.asdict(options), _model_identity(model_name or str(model))], default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    target = Path(cache_dir) / "mined" / f"{split_path(path)[0].stem}-{digest}.jsonl"
    if target.is_file():
        return target, None
    anchors, positives = read_pairs(path, anchor, positive, max_rows, cache_dir=cache_dir)
    result = mine_hard_negatives(anchors, positives, model, options)
    names = {"anchor": anchor, "positive": positive}  # keep the source's column names, as the recipe maps them
    write_rows(target, {names.get(key, key): values for key, values in result.columns.items()})
    return target, result.stats


def mined_columns(options: MineOptions) -> list[str]:
    """The negative column names a mined file has."""
    if options.output_format == "triplet":
        return ["negative"]
    return [f"negative_{i}" for i in range(1, options.num + 1)]
