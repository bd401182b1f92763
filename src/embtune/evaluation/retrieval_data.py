"""Loaders for retrieval evaluation sets: BEIR folders and (query, positive) pair files (CSV/TSV/JSONL)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import EmbtuneError, where


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
    Only queries named in the qrels are kept; the whole corpus is kept.

    Raises:
        EmbtuneError: when a file is missing or a row lacks a field, naming the file and line.
    """
    folder = Path(folder)
    qrels_path = folder / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        found = (
            sorted(p.stem for p in (folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
        )
        raise EmbtuneError(f"{qrels_path} not found; available splits: {found or 'none'}. Pass split=...")
    try:
        relevant = _qrels(qrels_path)
    except UnicodeDecodeError:
        raise EmbtuneError(f"{qrels_path}: not valid UTF-8; re-save the file as UTF-8") from None
    corpus = {}
    for _, row in _jsonl(folder / "corpus.jsonl", ("_id", "text")):
        title = str(row.get("title") or "").strip()
        corpus[str(row["_id"])] = f"{title}{title_separator}{row['text']}" if title else str(row["text"])
    queries = {
        str(row["_id"]): str(row["text"]) for _, row in _jsonl(folder / "queries.jsonl", ("_id", "text"))
    }
    queries = {qid: text for qid, text in queries.items() if qid in relevant}
    if not queries:
        raise EmbtuneError(
            f"no query in {folder / 'queries.jsonl'} appears in {qrels_path}; check the split name"
        )
    return RetrievalData(queries=queries, corpus=corpus, relevant_docs=relevant)


def _qrels(qrels_path: Path) -> dict[str, set[str]]:
    relevant: dict[str, set[str]] = {}
    with qrels_path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        _require_columns(qrels_path, reader.fieldnames, ("query-id", "corpus-id", "score"))
        for line, row in enumerate(reader, start=2):
            try:
                score = float(row["score"])
            except (TypeError, ValueError):
                raise EmbtuneError(
                    f"{where(qrels_path, line, 'score')}{row['score']!r} is not a number"
                ) from None
            if score > 0:
                relevant.setdefault(str(row["query-id"]), set()).add(str(row["corpus-id"]))
    return relevant


def load_retrieval_pairs(
    path: str | Path,
    query_column: str = "query",
    positive_column: str = "positive",
    max_rows: int | None = None,
) -> RetrievalData:
    """Build a retrieval set from a CSV/TSV/JSONL file of (query, positive) rows.

    The corpus is every distinct positive text; a query repeated on several rows has all of its positives
    as relevant documents. Ids are ``q0, q1, ...`` and ``d0, d1, ...`` in first-seen order. ``max_rows``
    reads only the first rows of the file (None: all).

    Raises:
        EmbtuneError: on an unknown extension, a missing column (the message lists the columns found) or an
            empty cell.
    """
    path = Path(path)
    queries: dict[str, str] = {}  # text -> id
    corpus: dict[str, str] = {}  # text -> id
    relevant: dict[str, set[str]] = {}
    for count, (line, row) in enumerate(_rows(path, (query_column, positive_column))):
        if max_rows is not None and count >= max_rows:
            break
        query, positive = row[query_column], row[positive_column]
        for column, value in ((query_column, query), (positive_column, positive)):
            if not isinstance(value, str) or not value.strip():
                raise EmbtuneError(
                    f"{where(path, line, column)}empty or non-text value {value!r}; fix or drop the row"
                )
        qid = queries.setdefault(query, f"q{len(queries)}")
        did = corpus.setdefault(positive, f"d{len(corpus)}")
        relevant.setdefault(qid, set()).add(did)
    if not queries:
        raise EmbtuneError(f"{path} has no rows; add (query, positive) pairs")
    return RetrievalData(
        queries={qid: text for text, qid in queries.items()},
        corpus={did: text for text, did in corpus.items()},
        relevant_docs=relevant,
    )


def _rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    """(1-based data row, row dict) from a table file, after checking the columns exist and hold text.

    The file goes through ``data.sources.load_table``, the one reader of data files (encodings, delimiters,
    ragged rows, FIFOs...), and each column through ``check_texts``: numbers, NUL bytes, empty cells.
    """
    from ..data.sources import load_table
    from ..data.validate import check_texts

    table = load_table(path)
    _require_columns(path, table.column_names, columns)
    for column in columns:
        check_texts(table.data.table.column(column), column=column, role=column, path=path)
    number = 0
    for batch in table.select_columns(list(columns)).iter(batch_size=4096):  # dict: column -> list
        for values in zip(*(batch[c] for c in columns), strict=True):
            number += 1
            yield number, dict(zip(columns, values, strict=True))


def _jsonl(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict]]:
    if not path.is_file():
        raise EmbtuneError(f"{path} not found; check the path")
    with path.open("rb") as f:
        for line, raw in enumerate(f, start=1):
            try:
                text = raw.decode("utf-8-sig" if line == 1 else "utf-8")
            except UnicodeDecodeError:
                raise EmbtuneError(f"{where(path, line)}not valid UTF-8; re-save the file as UTF-8") from None
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as err:
                raise EmbtuneError(f"{where(path, line)}invalid JSON ({err.msg}); fix that line") from None
            if not isinstance(row, dict):
                raise EmbtuneError(
                    f"{where(path, line)}expected a JSON object per line; got {type(row).__name__}"
                )
            _require_columns(path, list(row), columns, line)
            yield line, row


def _require_columns(
    path: Path, found: list[str] | None, needed: tuple[str, ...], line: int | None = None
) -> None:
    if missing := [c for c in needed if c not in (found or [])]:
        raise EmbtuneError(
            f"{where(path, line)}missing column(s) {missing}; columns found: {list(found or [])}. "
            "Rename the columns in the file, or name the ones to use (e.g. query_column=...)"
        )
