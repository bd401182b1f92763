"""Hard-negative mining: rank a corpus for every anchor, drop likely false negatives, keep the hardest rest.

Steps (``mine_hard_negatives``):
1. unique anchors; the corpus is the given corpus plus all positives, exact duplicates merged;
2. embed both (normalized, fp32) and take the exact top ``range_max + max_positives`` by cosine (search.py);
3. optionally rescore those candidates and the positives with a cross-encoder;
4. drop the anchor's positives, copies of the anchor, and candidates failing the score filters
   (``margin``, ``max_score_ratio``, ``max_score``, ``min_score``; the positive-aware ones compare with the
   anchor's lowest-scoring positive);
5. rank the survivors, skip ``range_min``, keep ``num`` per anchor; write one row per negative (triplet) or
   one row per pair with negative_1..num (n-tuple; pairs without ``num`` negatives are dropped).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EmbtuneError
from .options import MineOptions
from .search import top_k


@dataclass
class MineResult:
    """Mined rows as columns (``anchor``, ``positive``, ``negative`` or ``negative_1..k``[, ``scores``]),
    and what happened: ``stats`` (counts, score means, skipped candidates per filter, seconds)."""

    columns: dict[str, list[Any]]
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def rows(self) -> list[dict[str, Any]]:
        names = list(self.columns)
        return [dict(zip(names, values, strict=True)) for values in zip(*self.columns.values(), strict=True)]


def _load(model: Any) -> Any:
    if isinstance(model, str):
        from ..models.embedding_model import EmbeddingModel

        return EmbeddingModel.load(model)
    return model


def _embed(model: Any, texts: list[str], prompt: str | None, batch_size: int) -> np.ndarray:
    return np.asarray(
        model.encode(texts, batch_size=batch_size, normalize=True, prompt=prompt, precision="fp32",
                     show_progress_bar=False),
        dtype=np.float32,
    )


def mine_hard_negatives(
    anchors: Sequence[str],
    positives: Sequence[str],
    model: Any,
    options: MineOptions | None = None,
    corpus: Sequence[str] | None = None,
) -> MineResult:
    """Mine ``options.num`` hard negatives per (anchor, positive) pair (see the module docstring).

    Args:
        anchors / positives: the pairs, same length.
        model: an EmbeddingModel or a model name/folder.
        options: MineOptions (defaults: 3 negatives, top ranks, triplets).
        corpus: candidate texts; None: the positives themselves.

    Returns:
        MineResult with the rows (in anchor order, then positive order) and statistics.
    """
    opts = options or MineOptions()
    if len(anchors) != len(positives):
        raise EmbtuneError(f"mining needs one positive per anchor; got {len(anchors)} anchors and {len(positives)} positives")
    if not anchors:
        raise EmbtuneError("mining got no (anchor, positive) pairs; the data file is empty")
    started = time.perf_counter()
    model = _load(model)
    queries = list(dict.fromkeys(anchors))
    query_index = {q: i for i, q in enumerate(queries)}
    docs = list(dict.fromkeys([*(corpus if corpus is not None else positives), *positives]))
    doc_index = {d: i for i, d in enumerate(docs)}
    pos_of: list[list[int]] = [[] for _ in queries]  # unique positives per query, in first-seen order
    rows_per_query = np.zeros(len(queries), dtype=np.int64)
    for a, p in zip(anchors, positives, strict=True):
        qi, di = query_index[a], doc_index[p]
        rows_per_query[qi] += 1
        if di not in pos_of[qi]:
            pos_of[qi].append(di)
    max_positives = int(rows_per_query.max())
    range_max = opts.resolved_range_max(max_positives)
    if range_max - opts.range_min < opts.num:
        raise EmbtuneError(f"mining: range_max {range_max} - range_min {opts.range_min} < num {opts.num}")

    q_emb = _embed(model, queries, opts.query_prompt, opts.batch_size)
    d_emb = _embed(model, docs, opts.corpus_prompt, opts.batch_size)
    embedded = time.perf_counter()
    scores, indices = top_k(q_emb, d_emb, range_max + max_positives, opts.use_faiss)
    pair_q = np.repeat(np.arange(len(queries)), [len(p) for p in pos_of])
    pair_d = np.fromiter((d for p in pos_of for d in p), dtype=np.int64, count=len(pair_q))
    pos_scores = np.einsum("ij,ij->i", q_emb[pair_q], d_emb[pair_d]).astype(np.float32)
    if opts.cross_encoder:
        scores, pos_scores = _rescore(opts, queries, docs, indices, pair_q, pair_d)

    stats: dict[str, Any] = {"queries": len(queries), "corpus": len(docs), "range_max": range_max}
    own = np.array([doc_index.get(q, -2) if opts.skip_anchor_copies else -2 for q in queries], dtype=np.int64)
    scores = _filter(scores, indices, own, pos_of, pair_q, pos_scores, opts, stats)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :range_max]
    top_scores = np.take_along_axis(scores, order, axis=1)[:, opts.range_min : opts.range_min + opts.num]
    top_docs = np.take_along_axis(indices, order, axis=1)[:, opts.range_min : opts.range_min + opts.num]

    columns = _output(opts, queries, docs, pos_of, pos_scores, top_docs, top_scores)
    result = MineResult(columns, stats)
    negatives = top_scores[np.isfinite(top_scores)]
    stats.update(
        rows=result.num_rows,
        pairs=len(pair_q),
        mean_positive_score=float(pos_scores.mean()),
        mean_negative_score=float(negatives.mean()) if negatives.size else None,
        missing_negatives=int((~np.isfinite(top_scores)).sum(axis=1)[pair_q].sum()),
        seconds_embedding=round(embedded - started, 3),
        seconds=round(time.perf_counter() - started, 3),
    )
    return result


def _rescore(opts, queries, docs, indices, pair_q, pair_d) -> tuple[np.ndarray, np.ndarray]:
    """Cross-encoder scores of every (query, candidate) and (query, positive); -inf for padding."""
    from ..models.cross_encoder import CrossEncoder

    scorer = CrossEncoder.load(opts.cross_encoder)
    valid = indices >= 0
    qs, cs = np.nonzero(valid)
    flat = scorer.predict([(queries[q], docs[indices[q, c]]) for q, c in zip(qs, cs, strict=True)], opts.batch_size)
    scores = np.full(indices.shape, -np.inf, dtype=np.float32)
    scores[qs, cs] = flat
    pos = scorer.predict([(queries[q], docs[d]) for q, d in zip(pair_q, pair_d, strict=True)], opts.batch_size)
    return scores, pos.astype(np.float32)


def _filter(scores, indices, own, pos_of, pair_q, pos_scores, opts, stats) -> np.ndarray:
    """Set the score of every rejected candidate to -inf; count the rejections per filter in ``stats``.

    ``own``: (Q,) the corpus index of each anchor's own text (-2 when absent or not skipped).
    """
    scores = scores.copy()
    scores[(indices < 0) | (indices == own[:, None])] = -np.inf
    for qi, positives in enumerate(pos_of):
        scores[qi, np.isin(indices[qi], positives)] = -np.inf
    lowest_positive = np.full(len(pos_of), np.inf, dtype=np.float32)
    np.minimum.at(lowest_positive, pair_q, pos_scores)
    low = lowest_positive[:, None]
    rules = []
    if opts.margin is not None:
        rules.append(("margin", scores + opts.margin > low))
    if opts.max_score_ratio is not None:
        rules.append(("max_score_ratio", scores > low - np.abs(low) * (1.0 - opts.max_score_ratio)))
    for name, rule in rules + [("max_score", None), ("min_score", None)]:
        if name == "max_score" and opts.max_score is not None:
            rule = scores > opts.max_score
        elif name == "min_score" and opts.min_score is not None:
            rule = scores < opts.min_score
        if rule is None:
            continue
        hit = rule & np.isfinite(scores)
        stats[f"skipped_{name}"] = int(hit.sum())
        scores[hit] = -np.inf
    return scores


def _output(opts, queries, docs, pos_of, pos_scores, top_docs, top_scores) -> dict[str, list[Any]]:
    """Rows in anchor order, then positive order: triplets or n-tuples, with scores when asked."""
    triplet = opts.output_format == "triplet"
    columns: dict[str, list[Any]] = {"anchor": [], "positive": []}
    if triplet:
        columns["negative"] = []
    else:
        columns.update({f"negative_{i}": [] for i in range(1, opts.num + 1)})
    if opts.scores:
        columns["scores"] = []
    pair = 0
    for qi, positives in enumerate(pos_of):
        finite = np.isfinite(top_scores[qi])
        for di in positives:
            if triplet:
                for neg, score in zip(top_docs[qi][finite], top_scores[qi][finite], strict=True):
                    columns["anchor"].append(queries[qi])
                    columns["positive"].append(docs[di])
                    columns["negative"].append(docs[neg])
                    if opts.scores:
                        columns["scores"].append([float(pos_scores[pair]), float(score)])
            elif finite.all():
                columns["anchor"].append(queries[qi])
                columns["positive"].append(docs[di])
                for i, neg in enumerate(top_docs[qi], start=1):
                    columns[f"negative_{i}"].append(docs[neg])
                if opts.scores:
                    columns["scores"].append([float(pos_scores[pair]), *map(float, top_scores[qi])])
            pair += 1
    return columns
