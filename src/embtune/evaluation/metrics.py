"""Metric functions on plain numpy arrays: correlations, ranking metrics and binary-classification metrics.

Definitions follow sentence-transformers' evaluators so that numbers in our model cards are comparable:

- Ranking metrics take a boolean ``hits`` matrix of shape (Q, K): ``hits[q, i]`` is True when the i-th
  ranked document for query q is relevant. Lists shorter than k count as misses (precision@k still divides
  by k). ``n_relevant`` (Q,) counts the relevant documents per query, including ones never retrieved.
  Every function returns the mean over queries.
- Binary metrics take similarity ``scores`` (N,) and 0/1 ``labels`` (N,); ``greater_is_better=False`` is for
  distances, where a pair is predicted similar when its score is at or below the threshold.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence

import numpy as np

from ..errors import EmbtuneError

# ---------------------------------------------------------------------------------------------------------
# correlations
# ---------------------------------------------------------------------------------------------------------


def pearson(x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float]) -> float:
    """Pearson correlation of two (N,) arrays, computed in float64; NaN when either input is constant.

    >>> round(pearson([1, 2, 3], [2, 4, 7]), 4)
    0.9934
    """
    x64, y64 = _pair_as_float64(x, y)
    xc, yc = x64 - x64.mean(), y64 - y64.mean()
    denom = np.linalg.norm(xc) * np.linalg.norm(yc)
    if denom == 0.0:
        return float("nan")  # scipy also returns NaN for constant input
    return float(np.clip(np.dot(xc / np.linalg.norm(xc), yc / np.linalg.norm(yc)), -1.0, 1.0))


def rankdata(x: np.ndarray | Sequence[float]) -> np.ndarray:
    """1-based ranks of an (N,) array; tied values share the average of their ranks (scipy's 'average').

    >>> rankdata([10, 20, 20, 5]).tolist()
    [2.0, 3.5, 3.5, 1.0]
    """
    values = np.asarray(x, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    # Boundaries of runs of equal values in sorted order; each run gets the mean of its 1-based positions.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]  # exclusive
    run_rank = (starts + 1 + ends) / 2.0  # mean of positions starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ranks


def spearman(x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float]) -> float:
    """Spearman rank correlation: Pearson on average ranks (ties handled like ``scipy.stats.spearmanr``).

    >>> spearman([1, 2, 3, 4], [10, 30, 20, 40])
    0.8
    """
    x64, y64 = _pair_as_float64(x, y)
    return pearson(rankdata(x64), rankdata(y64))


def _pair_as_float64(
    x: np.ndarray | Sequence[float], y: np.ndarray | Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    x64, y64 = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x64.ndim != 1 or x64.shape != y64.shape:
        raise EmbtuneError(
            f"correlation needs two 1-D arrays of equal length; got shapes {x64.shape} and {y64.shape}"
        )
    if len(x64) < 2:
        raise EmbtuneError(f"correlation needs at least 2 values; got {len(x64)}. Add more evaluation pairs.")
    return x64, y64


# ---------------------------------------------------------------------------------------------------------
# ranking
# ---------------------------------------------------------------------------------------------------------


def hit_matrix(
    ranked_ids: Sequence[Sequence[Hashable]], relevant: Sequence[Collection[Hashable]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Turn ranked id lists and relevant-id sets into (hits (Q, k) bool, n_relevant (Q,) int).

    >>> hits, n_rel = hit_matrix([["d1", "d2"]], [{"d2", "d9"}], k=3)
    >>> hits.tolist(), n_rel.tolist()
    ([[False, True, False]], [2])
    """
    if len(ranked_ids) != len(relevant):
        raise EmbtuneError(
            f"got {len(ranked_ids)} ranked lists but {len(relevant)} relevant sets; pass one per query"
        )
    hits = np.zeros((len(ranked_ids), k), dtype=bool)
    for q, (ids, rel) in enumerate(zip(ranked_ids, relevant, strict=True)):
        for i, doc_id in enumerate(ids[:k]):
            hits[q, i] = doc_id in rel
    n_relevant = np.array([len(rel) for rel in relevant], dtype=np.int64)
    return hits, n_relevant


def _top(hits: np.ndarray, k: int) -> np.ndarray:
    """The first k columns of hits, padded with misses when the lists are shorter than k."""
    if k < 1:
        raise EmbtuneError(f"k must be >= 1; got {k}")
    hits = np.asarray(hits, dtype=bool)
    if hits.ndim != 2 or hits.shape[0] == 0:
        raise EmbtuneError(f"hits must be a non-empty (queries, ranks) matrix; got shape {hits.shape}")
    if hits.shape[1] >= k:
        return hits[:, :k]
    return np.pad(hits, ((0, 0), (0, k - hits.shape[1])))


def _check_n_relevant(hits: np.ndarray, n_relevant: np.ndarray | Sequence[int]) -> np.ndarray:
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    if n_rel.shape != (np.asarray(hits).shape[0],) or (n_rel < 1).any():
        raise EmbtuneError(
            "n_relevant must hold one count >= 1 per query (row of hits); drop queries with no relevant docs"
        )
    return n_rel


def accuracy_at_k(hits: np.ndarray, k: int) -> float:
    """Share of queries with at least one relevant document in the top k.

    >>> accuracy_at_k(np.array([[0, 1], [0, 0]], dtype=bool), k=2)
    0.5
    """
    return float(_top(hits, k).any(axis=1).mean())


def precision_at_k(hits: np.ndarray, k: int) -> float:
    """Mean over queries of (relevant documents in the top k) / k.

    >>> precision_at_k(np.array([[1, 0, 1]], dtype=bool), k=2)
    0.5
    """
    return float((_top(hits, k).sum(axis=1) / k).mean())


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray | Sequence[int], k: int) -> float:
    """Mean over queries of (relevant documents in the top k) / (relevant documents for the query).

    >>> recall_at_k(np.array([[1, 0, 1]], dtype=bool), [4], k=3)
    0.5
    """
    n_rel = _check_n_relevant(hits, n_relevant)
    return float((_top(hits, k).sum(axis=1) / n_rel).mean())


def mrr_at_k(hits: np.ndarray, k: int) -> float:
    """Mean reciprocal rank of the first relevant document in the top k (0 when there is none).

    >>> mrr_at_k(np.array([[0, 1], [1, 0]], dtype=bool), k=2)
    0.75
    """
    top = _top(hits, k)
    first = top.argmax(axis=1)
    return float(np.where(top.any(axis=1), 1.0 / (first + 1), 0.0).mean())


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray | Sequence[int], k: int) -> float:
    """Binary-relevance nDCG@k: DCG of the ranking over the DCG of min(n_relevant, k) hits at the top.

    >>> round(ndcg_at_k(np.array([[0, 1]], dtype=bool), [1], k=2), 6)
    0.63093
    """
    top = _top(hits, k)
    n_rel = _check_n_relevant(hits, n_relevant)
    discounts = 1.0 / np.log2(np.arange(k) + 2.0)  # rank r (0-based) is worth 1 / log2(r + 2)
    dcg = top @ discounts
    ideal = np.cumsum(discounts)[np.minimum(n_rel, k).astype(np.int64) - 1]
    return float((dcg / ideal).mean())


def map_at_k(hits: np.ndarray, n_relevant: np.ndarray | Sequence[int], k: int) -> float:
    """Mean average precision@k: sum of precision@rank at each hit, over min(k, n_relevant).

    >>> map_at_k(np.array([[1, 0, 1]], dtype=bool), [2], k=3)
    0.8333333333333333
    """
    top = _top(hits, k)
    n_rel = _check_n_relevant(hits, n_relevant)
    precision_at_rank = np.cumsum(top, axis=1) / np.arange(1, k + 1)
    return float(((precision_at_rank * top).sum(axis=1) / np.minimum(n_rel, k)).mean())


# ---------------------------------------------------------------------------------------------------------
# binary classification
# ---------------------------------------------------------------------------------------------------------


def _sorted_groups(
    scores: np.ndarray | Sequence[float], labels: np.ndarray | Sequence[int], greater_is_better: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores sorted best-first, labels in the same order, and a mask marking the last row of each tie group."""
    s = np.asarray(scores)
    y = np.asarray(labels)
    if s.ndim != 1 or s.shape != y.shape or len(s) == 0:
        raise EmbtuneError(
            f"scores and labels must be non-empty 1-D arrays of equal length; got {s.shape} and {y.shape}"
        )
    if not np.isin(y, (0, 1)).all():
        raise EmbtuneError("binary labels must be 0 or 1; map your classes to 0 (dissimilar) and 1 (similar)")
    order = np.argsort(-s if greater_is_better else s, kind="stable")
    s, y = s[order], y[order].astype(np.int64)
    group_end = np.r_[s[1:] != s[:-1], True]
    return s, y, group_end


def _threshold_after(s: np.ndarray, i: int) -> np.floating:
    """Threshold between sorted scores i and i+1: their midpoint, in the scores' own dtype."""
    if i == len(s) - 1:
        return s[i]
    mid = (s[i] + s[i + 1]) / 2
    return s[i] if mid == s[i + 1] else mid  # a rounded midpoint must not swallow the next group


def best_accuracy_and_threshold(
    scores: np.ndarray | Sequence[float], labels: np.ndarray | Sequence[int], greater_is_better: bool = True
) -> tuple[float, float]:
    """Best accuracy over all thresholds, and the threshold reaching it first (best-first order).

    Predicting everything dissimilar is the starting point; its threshold is just beyond the best score.

    >>> best_accuracy_and_threshold(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 1, 0, 0]))
    (1.0, 0.55)
    """
    s, y, group_end = _sorted_groups(scores, labels, greater_is_better)
    n = len(y)
    score_dtype = np.result_type(s.dtype, np.float16)
    best_acc = float((y == 0).sum() / n)
    best_threshold = np.nextafter(s[0], np.inf if greater_is_better else -np.inf, dtype=score_dtype)
    # Predicting the first i+1 rows similar: correct = positives so far + negatives after.
    correct = np.cumsum(y) + ((y == 0).sum() - np.cumsum(y == 0))
    for i in np.flatnonzero(group_end):
        acc = correct[i] / n
        if acc > best_acc:
            best_acc, best_threshold = float(acc), _threshold_after(s, i)
    return best_acc, float(best_threshold)


def best_f1_and_threshold(
    scores: np.ndarray | Sequence[float], labels: np.ndarray | Sequence[int], greater_is_better: bool = True
) -> tuple[float, float, float, float]:
    """Best F1 over all thresholds: (f1, precision, recall, threshold); all 0 when there is no positive.

    >>> best_f1_and_threshold(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0]))
    (0.8, 0.6666666666666666, 1.0, 0.2)
    """
    s, y, group_end = _sorted_groups(scores, labels, greater_is_better)
    true_pos = np.cumsum(y)
    n_pos = int(y.sum())
    best = (0.0, 0.0, 0.0, 0.0)
    for i in np.flatnonzero(group_end):
        if true_pos[i] == 0:
            continue
        precision = true_pos[i] / (i + 1)
        recall = true_pos[i] / n_pos
        f1 = 2 * precision * recall / (precision + recall)
        if f1 > best[0]:
            best = (float(f1), float(precision), float(recall), float(_threshold_after(s, i)))
    return best


def average_precision(scores: np.ndarray | Sequence[float], labels: np.ndarray | Sequence[int]) -> float:
    """Average precision (higher score = more likely positive): sum over distinct thresholds of
    (recall gain) x precision, as ``sklearn.metrics.average_precision_score``. Needs at least one positive.

    >>> round(average_precision(np.array([0.9, 0.8, 0.3, 0.1]), np.array([1, 0, 1, 0])), 6)
    0.833333
    """
    s, y, group_end = _sorted_groups(scores, labels, greater_is_better=True)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise EmbtuneError("average precision needs at least one positive label (1); add similar pairs")
    true_pos = np.cumsum(y)[group_end]
    retrieved = (np.arange(1, len(y) + 1))[group_end]
    precision = true_pos / retrieved
    recall_gain = np.diff(np.r_[0, true_pos]) / n_pos
    return float((recall_gain * precision).sum())


def matthews_corrcoef(labels: np.ndarray | Sequence[int], predicted: np.ndarray | Sequence[int]) -> float:
    """Matthews correlation between 0/1 labels and 0/1 predictions; 0 when undefined (a constant side).

    >>> matthews_corrcoef([1, 1, 0, 0], [1, 0, 0, 0])
    0.5773502691896258
    """
    y = np.asarray(labels).astype(bool)
    p = np.asarray(predicted).astype(bool)
    tp, tn = float((y & p).sum()), float((~y & ~p).sum())
    fp, fn = float((~y & p).sum()), float((y & ~p).sum())
    denom = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denom) if denom > 0 else 0.0
