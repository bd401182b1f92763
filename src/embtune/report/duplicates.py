"""Exact and near duplicates within a dataset, and leakage of evaluation texts into training data.

Texts are compared after normalisation (NFKC, case-folded, whitespace collapsed, punctuation dropped).
Near duplicates use MinHash over word 3-gram shingles (character 5-grams for texts under 6 words) with LSH
(datasketch, extra ``embtune[data]``); without datasketch only exact duplicates are reported.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

_PUNCT = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE = re.compile(r"\s+")
NUM_PERM = 64


def normalize(text: str) -> str:
    """The form duplicates are compared in: NFKC, case-folded, no punctuation, single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def exact_duplicate_count(keys: Sequence[object]) -> int:
    """How many items repeat an earlier item."""
    return len(keys) - len(set(keys))


def _shingles(text: str) -> set[bytes]:
    words = text.split()
    if len(words) >= 6:
        return {" ".join(words[i : i + 3]).encode() for i in range(len(words) - 2)}
    return {text[i : i + 5].encode() for i in range(max(1, len(text) - 4))}


def minhash_available() -> bool:
    try:
        import datasketch  # noqa: F401
    except ImportError:
        return False
    return True


_MINHASH_CHUNK = 2048  # texts hashed per MinHash.bulk call: shingles live for one chunk only


def _minhashes(texts: Iterable[str]) -> Iterator[Any]:
    """MinHash of each text, computed a chunk at a time (lazily: the caller keeps what it needs)."""
    from datasketch import MinHash

    iterator = iter(texts)
    while chunk := [list(_shingles(t)) for t in itertools.islice(iterator, _MINHASH_CHUNK)]:
        yield from MinHash.bulk(chunk, num_perm=NUM_PERM)


def near_duplicate_rows(texts: Sequence[str], threshold: float = 0.9) -> list[int] | None:
    """Rows whose normalized text is a near (Jaccard >= ``threshold``) but not exact copy of an earlier row.

    None when datasketch is not installed.
    """
    if not minhash_available():
        return None
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    seen: dict[str, int] = {}
    rows = []
    unique = [(i, t) for i, t in enumerate(texts) if t and seen.setdefault(t, i) == i]
    for (i, _), mh in zip(unique, _minhashes(t for _, t in unique), strict=True):
        if lsh.query(mh):
            rows.append(i)
        lsh.insert(str(i), mh)
    return rows


def leaked(eval_texts: Sequence[str], train_texts: Sequence[str], threshold: float | None = 0.9) -> tuple[int, int | None]:
    """(unique eval texts found exactly in the training texts, further ones found nearly; None: not checked)."""
    train = set(train_texts)
    unique = [t for t in dict.fromkeys(eval_texts) if t]
    exact = [t for t in unique if t in train]
    if threshold is None or not minhash_available():
        return len(exact), None
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
    train_unique = [t for t in train if t]
    with lsh.insertion_session() as session:
        for i, mh in enumerate(_minhashes(train_unique)):
            session.insert(str(i), mh)
    rest = [t for t in unique if t not in train]
    near = sum(1 for mh in _minhashes(rest) if lsh.query(mh)) if rest else 0
    return len(exact), near


def expected_false_negative_share(positives: Sequence[str], candidates: Counter, batch_size: int) -> float:
    """Under random batches: the share of rows whose batch holds a copy of their positive as a candidate.

    ``candidates`` counts every candidate text (positives and negatives) over the N rows; for a positive
    occurring c times, each of the other B - 1 rows of its batch holds a copy with probability about
    (c - 1) / (N - 1).
    """
    n = len(positives)
    if n < 2 or batch_size < 2:
        return 0.0
    total = sum(1.0 - (1.0 - (candidates[p] - 1) / (n - 1)) ** (batch_size - 1) for p in positives)
    return total / n
