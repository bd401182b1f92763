"""Build an evaluator from a data file: the one place shared by recipes (``eval.evaluators``), Python and
``embtune eval``.

``columns`` maps each input of the evaluator to a column of the file; inputs left out use the defaults of the
evaluator class (its ``file_columns``, see ``default_columns``):

- ``sts``: ``sentences1``, ``sentences2``, ``scores`` <- ``sentence1``, ``sentence2``, ``score``. Scores are
  used as they are: Spearman depends only on ranks and Pearson is invariant to a linear rescaling, so STS-B's
  0-5 scores and 0-1 scores give the same metrics.
- ``triplet``: ``anchors``, ``positives``, ``negatives`` <- ``anchor``, ``positive``, ``negative``.
- ``binary``: ``sentences1``, ``sentences2``, ``labels`` <- ``sentence1``, ``sentence2``, ``label`` (0/1).
- ``retrieval``: either a BEIR folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``; the split
  is ``split=`` or a ``folder:split`` suffix, default ``test``) or a CSV/TSV/JSONL file of (query, positive)
  rows with ``query`` and ``positive`` <- ``query``, ``positive``.

>>> default_columns("sts")
{'sentences1': 'sentence1', 'sentences2': 'sentence2', 'scores': 'score'}
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..data.sources import load_table, split_path
from ..errors import EmbtuneError
from .base import Evaluator
from .file_checks import check_columns
from .registry import EVALUATORS, build_evaluator, check_kind, suggest
from .retrieval_data import RetrievalData, load_beir, load_retrieval_pairs

_FROM_DATA = {"queries", "corpus", "relevant_docs"}  # retrieval inputs that come from the file, never params


def evaluator_from_file(
    kind: str,
    path: str | os.PathLike[str],
    columns: Mapping[str, str] | None = None,
    name: str = "",
    params: Mapping[str, Any] | None = None,
    max_rows: int | None = None,
    split: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Evaluator:
    """Read an evaluation set from ``path`` and build the ``kind`` evaluator on it.

    Args:
        kind: ``sts``, ``triplet``, ``binary`` or ``retrieval``.
        path: a CSV/TSV/JSONL/Parquet file (or saved dataset folder); for retrieval a BEIR folder or a
            CSV/TSV/JSONL/Parquet pairs file.
        columns: evaluator input -> file column, overriding ``default_columns(kind)`` (see module doc).
        name: prefix of every metric key (``""``: none).
        params: other constructor arguments of the evaluator (``batch_size``, ``main_similarity``...).
        max_rows: use only the first rows of the file; for a BEIR folder, the first queries (the whole
            corpus is still searched).
        split: qrels split of a BEIR folder (default ``test``); also a saved ``DatasetDict`` split.
        cache_dir: where the parsed table is kept (as in training, ``<cache_dir>/tables/``); None parses
            it in memory.

    Raises:
        EmbtuneError: unknown kind or column key (did-you-mean), missing file, a column the file lacks
            (listing the columns it has), or bad values (from the evaluator's own checks).
    """
    check_kind(kind)
    mapping = _column_mapping(kind, columns)
    if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 1):
        raise EmbtuneError(f"max_rows must be a positive integer or None; got {max_rows!r}")
    params = dict(params or {})
    if taken := sorted(set(params) & (set(mapping) | _FROM_DATA)):
        raise EmbtuneError(
            f"evaluator {kind!r}: {taken} come from the data file, not params; map file columns with columns"
        )
    params = {"name": name, **params}
    path = str(path)
    if kind == "retrieval":
        data = _retrieval_data(path, mapping, columns, max_rows, split, cache_dir)
        params |= {"queries": data.queries, "corpus": data.corpus, "relevant_docs": data.relevant_docs}
    else:
        params |= _read_columns(kind, path, mapping, max_rows, split, cache_dir)
    return build_evaluator(kind, **params)


def default_columns(kind: str) -> dict[str, str]:
    """Evaluator input -> default file column for a registered evaluator (its class's ``file_columns``)."""
    check_kind(kind)
    return dict(getattr(EVALUATORS[kind], "file_columns", {}))


def _column_mapping(kind: str, columns: Mapping[str, str] | None) -> dict[str, str]:
    defaults = default_columns(kind)
    for key, column in (columns or {}).items():
        if key not in defaults:
            raise EmbtuneError(
                f"evaluator {kind!r} has no input {key!r}{suggest(key, defaults)}; "
                f"map these to file columns: {', '.join(defaults)}"
            )
        if not isinstance(column, str) or not column:
            raise EmbtuneError(f"evaluator {kind!r}: column for {key!r} must be a column name; got {column!r}")
    return {**defaults, **(columns or {})}


def _retrieval_data(
    path: str,
    mapping: dict[str, str],
    columns: Mapping[str, str] | None,
    max_rows: int | None,
    split: str | None,
    cache_dir: str | os.PathLike[str] | None,
) -> RetrievalData:
    folder, split = split_path(path, split)
    if not folder.is_dir():
        if split is not None:
            raise EmbtuneError(f"{path}: a split only applies to a BEIR folder; drop it for a pairs file")
        return load_retrieval_pairs(
            folder, mapping["query"], mapping["positive"], max_rows=max_rows, cache_dir=cache_dir
        )
    if columns:
        raise EmbtuneError(
            f"{folder}: a BEIR folder has fixed fields (_id, title, text); columns apply to pairs files only"
        )
    data = load_beir(folder, split=split or "test")
    if max_rows is not None:  # a subset of the queries; the whole corpus stays the search space
        data.queries = dict(list(data.queries.items())[:max_rows])
    return data


def _read_columns(
    kind: str,
    path: str,
    mapping: dict[str, str],
    max_rows: int | None,
    split: str | None,
    cache_dir: str | os.PathLike[str] | None,
) -> dict[str, list]:
    table = load_table(path, split=split, cache_dir=cache_dir)
    if max_rows is not None:
        table = table.select(range(min(max_rows, len(table))))
    for key, column in mapping.items():
        if column not in table.column_names:
            raise EmbtuneError(
                f"{Path(path)}: no column {column!r} for the {kind} evaluator's {key!r}; available columns: "
                f"{', '.join(table.column_names)}. Rename it in the file or map it (columns {key}=<column>)"
            )
    check_columns(kind, Path(path), table, mapping)  # file, 1-based row and column in every message
    return {key: table[column] for key, column in mapping.items()}
