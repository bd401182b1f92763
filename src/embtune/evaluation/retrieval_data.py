"""Retrieval evaluation sets: BEIR folders and (query, positive) pair files, read by ``data.sources``.

Every file goes through ``load_table``, the reader ``embtune train`` uses, so a BOM, a ragged row or a file
that is not UTF-8 gives the same answer (and the same one-line error) in ``embtune eval`` as in training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from ..data.sources import load_table
from ..data.validate import check_texts
from ..errors import EmbtuneError


@dataclass
class RetrievalData:
    """Queries, corpus and relevance labels, in the shape InformationRetrievalEvaluator takes."""

    queries: dict[str, str]  # query id -> text
    corpus: dict[str, str]  # document id -> text
    relevant_docs: dict[str, set[str]]  # query id -> relevant document ids


def load_beir(folder: str | Path, split: str = "test", title_separator: str = " ") -> RetrievalData:
    """Load a BEIR-layout folder: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/{split}.tsv``.

    Corpus rows are ``{"_id", "title", "text"}``; a non-empty title is joined to the text with
    ``title_separator``. Query rows are ``{"_id", "text"}``. The qrels file has a header line
    ``query-id corpus-id score`` (tab-separated); rows with score <= 0 are not relevant (BEIR's convention).
    Only queries named in the qrels are kept; the whole corpus is kept. Ids are read as text (``007``
    stays ``007``).

    Raises:
        EmbtuneError: when a file is missing or a row lacks a field, naming the file, row and column.
    """
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        found = (
            sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        )
        raise EmbtuneError(f"{qrels_path} not found; available splits: {found or 'none'}. Pass split=...")
    qrels = _columns(qrels_path, ("query-id", "corpus-id", "score"), ids=("query-id", "corpus-id"))
    scores = qrels["score"]
    if not (pa.types.is_integer(scores.type) or pa.types.is_floating(scores.type)) or scores.null_count:
        row = _first_bad_number(scores)
        raise EmbtuneError(
            f"{qrels_path}, data row {row + 1} (1-based), column 'score': {scores[row].as_py()!r} is not a number"
        )
    relevant: dict[str, set[str]] = {}
    for qid, did, score in zip(
        qrels["query-id"].to_pylist(), qrels["corpus-id"].to_pylist(), scores.to_pylist(), strict=True
    ):
        if score > 0:
            relevant.setdefault(qid, set()).add(did)
    rows = _columns(folder / "corpus.jsonl", ("_id", "text"), ids=("_id",), optional=("title",))
    titles = rows["title"].to_pylist() if "title" in rows else [None] * len(rows["_id"])
    corpus = {}
    for did, title, text in zip(rows["_id"].to_pylist(), titles, rows["text"].to_pylist(), strict=True):
        title = str(title or "").strip()
        corpus[did] = f"{title}{title_separator}{text}" if title else str(text)
    rows = _columns(folder / "queries.jsonl", ("_id", "text"), ids=("_id",))
    queries = {
        qid: str(text)
        for qid, text in zip(rows["_id"].to_pylist(), rows["text"].to_pylist(), strict=True)
        if qid in relevant
    }
    if not queries:
        raise EmbtuneError(
            f"no query in {folder / 'queries.jsonl'} appears in {qrels_path}; check the split name"
        )
    return RetrievalData(queries=queries, corpus=corpus, relevant_docs=relevant)


def load_retrieval_pairs(
    path: str | Path,
    query_column: str = "query",
    positive_column: str = "positive",
    max_rows: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> RetrievalData:
    """Build a retrieval set from a table file (CSV/TSV/JSONL/Parquet) of (query, positive) rows.

    The corpus is every distinct positive text; a query repeated on several rows has all of its positives
    as relevant documents. Ids are ``q0, q1, ...`` and ``d0, d1, ...`` in first-seen order. ``max_rows``
    reads only the first rows of the file (None: all); ``cache_dir`` as in ``load_table``.

    Raises:
        EmbtuneError: anything ``load_table`` rejects, a missing column (the message lists the columns
            found), or a missing, empty or non-text cell (the same checks as training data).
    """
    path = Path(path)
    table = load_table(path, cache_dir=cache_dir).data.table
    _require_columns(path, table.column_names, (query_column, positive_column))
    if max_rows is not None:
        table = table.slice(0, max_rows)
    for role, column in (("query", query_column), ("positive", positive_column)):
        check_texts(table.column(column), column=column, role=role, path=path)
    queries: dict[str, str] = {}  # text -> id
    corpus: dict[str, str] = {}  # text -> id
    relevant: dict[str, set[str]] = {}
    for query, positive in zip(
        table.column(query_column).to_pylist(), table.column(positive_column).to_pylist(), strict=True
    ):
        qid = queries.setdefault(query, f"q{len(queries)}")
        did = corpus.setdefault(positive, f"d{len(corpus)}")
        relevant.setdefault(qid, set()).add(did)
    return RetrievalData(
        queries={qid: text for text, qid in queries.items()},
        corpus={did: text for text, did in corpus.items()},
        relevant_docs=relevant,
    )


def _columns(
    path: Path, needed: tuple[str, ...], ids: tuple[str, ...] = (), optional: tuple[str, ...] = ()
) -> dict[str, pa.ChunkedArray]:
    """The ``needed`` (and present ``optional``) columns of a BEIR file; ids as text, none missing."""
    if not path.is_file():
        raise EmbtuneError(f"{path} not found; check the path")
    table = load_table(path, text_columns=ids).data.table
    _require_columns(path, table.column_names, needed)
    for column in needed:
        values = table.column(column)
        if values.null_count:
            row = values.is_null().to_pylist().index(True)
            raise EmbtuneError(
                f"{path}, data row {row + 1} (1-based), column {column!r}: missing; fill it in or drop the row"
            )
    return {c: table.column(c) for c in (*needed, *optional) if c in table.column_names}


def _first_bad_number(values: pa.ChunkedArray) -> int:
    for row, value in enumerate(values.to_pylist()):
        try:
            float(value)
        except (TypeError, ValueError):
            return row
    return 0


def _require_columns(path: Path, found: list[str], needed: tuple[str, ...]) -> None:
    if missing := [c for c in needed if c not in found]:
        raise EmbtuneError(
            f"{path}: missing column(s) {missing}; columns found: {list(found)}. "
            "Rename the columns in the file, or name the ones to use (e.g. query_column=...)"
        )
