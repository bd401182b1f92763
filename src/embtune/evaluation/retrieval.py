"""InformationRetrievalEvaluator: rank a corpus for each query and score the ranking against relevance labels.

The corpus is embedded once, in chunks of ``corpus_chunk_size`` texts; each chunk is scored against all
queries and only the top k per query survive (``torch.topk``), so memory stays at
queries x chunk, not queries x corpus. Ties are broken by ascending corpus id, as sentence-transformers
does, so the metrics do not depend on the chunk size.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from ..errors import EmbtuneError
from ..similarity import canonical_name, similarity_fn
from . import metrics as M
from .base import (
    Encoder,
    check_batch_size,
    check_similarity_names,
    check_texts,
    encode,
    prefixed,
    primary_key,
)
from .retrieval_data import RetrievalData, load_beir, load_retrieval_pairs

__all__ = ["InformationRetrievalEvaluator", "RetrievalData", "load_beir", "load_retrieval_pairs"]


class InformationRetrievalEvaluator:
    """Accuracy@k, precision@k, recall@k, MRR@k, nDCG@k and MAP@k of each query's ranking over the corpus.

    Keys (with ``name="norquad-test"`` and cosine): ``norquad-test_cosine_accuracy@1`` (and @3, @5, @10),
    ``..._cosine_precision@1``, ``..._cosine_recall@1`` (same ks), ``..._cosine_ndcg@10``,
    ``..._cosine_mrr@10``, ``..._cosine_map@100``, the same names as sentence-transformers. The primary
    metric is ``{main_similarity}_ndcg@{max ndcg k}``; main_similarity defaults to the first function.

    Queries with no relevant document are left out (as in sentence-transformers). A document id is compared
    with ``in relevant_docs[qid]``, so ids must have the same type in corpus and relevant_docs.

    Args:
        queries: query id -> query text.
        corpus: document id -> document text.
        relevant_docs: query id -> set of relevant document ids.
        name: prefix of every metric key.
        similarity_fn_names: functions to rank with (cosine/dot/euclidean/manhattan, aliases accepted).
        main_similarity: function whose nDCG is the primary metric; default the first of similarity_fn_names.
        accuracy_at_k / precision_recall_at_k / mrr_at_k / ndcg_at_k / map_at_k: cut-offs per metric.
        corpus_chunk_size: corpus texts embedded and scored at a time.
        batch_size: encode batch size.
        query_prompt / corpus_prompt: optional prompts for queries / documents.

    Raises:
        EmbtuneError: when no query has a relevant document, texts are empty, or a k is below 1.
    """

    greater_is_better = True
    card_heading = "Information Retrieval"  # the "#### Information Retrieval" section of the model card (as sentence-transformers)
    # evaluator input -> default file column (evaluator_from_file, recipes, `embtune eval --columns`)
    file_columns: ClassVar[dict[str, str]] = {"query": "query", "positive": "positive"}

    def __init__(
        self,
        queries: Mapping[Hashable, str],
        corpus: Mapping[Hashable, str],
        relevant_docs: Mapping[Hashable, Collection[Hashable]],
        name: str = "",
        similarity_fn_names: Sequence[str] = ("cosine",),
        main_similarity: str | None = None,
        accuracy_at_k: Sequence[int] = (1, 3, 5, 10),
        precision_recall_at_k: Sequence[int] = (1, 3, 5, 10),
        mrr_at_k: Sequence[int] = (10,),
        ndcg_at_k: Sequence[int] = (10,),
        map_at_k: Sequence[int] = (100,),
        corpus_chunk_size: int = 50_000,
        batch_size: int = 32,
        query_prompt: str | None = None,
        corpus_prompt: str | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        self.query_ids = [qid for qid in queries if relevant_docs.get(qid)]
        if not self.query_ids:
            raise EmbtuneError(
                f"none of the {len(queries)} queries has a relevant document; check that relevant_docs uses the "
                "same query ids (and id types) as queries"
            )
        self.queries = check_texts("queries", [queries[qid] for qid in self.query_ids])
        self.corpus_ids = list(corpus)
        self.corpus = check_texts("corpus", [corpus[cid] for cid in self.corpus_ids])
        self.relevant_docs = {qid: set(relevant_docs[qid]) for qid in self.query_ids}
        self.name = name
        self.similarity_fn_names = check_similarity_names(similarity_fn_names)
        self.main_similarity = (
            canonical_name(main_similarity) if main_similarity else self.similarity_fn_names[0]
        )
        self.ks = {
            "accuracy": _check_ks("accuracy_at_k", accuracy_at_k),
            "precision": _check_ks("precision_recall_at_k", precision_recall_at_k),
            "ndcg": _check_ks("ndcg_at_k", ndcg_at_k),
            "mrr": _check_ks("mrr_at_k", mrr_at_k),
            "map": _check_ks("map_at_k", map_at_k),
        }
        self.max_k = max(max(ks) for ks in self.ks.values())
        if not isinstance(corpus_chunk_size, int) or corpus_chunk_size < 1:
            raise EmbtuneError(f"corpus_chunk_size must be a positive integer; got {corpus_chunk_size!r}")
        self.corpus_chunk_size = corpus_chunk_size
        self.batch_size = check_batch_size(batch_size)
        self.query_prompt = query_prompt
        self.corpus_prompt = corpus_prompt
        self.show_progress_bar = show_progress_bar
        self._id_rank = torch.as_tensor(_sort_ranks(self.corpus_ids), dtype=torch.long)
        self.primary_metric = primary_key(name, "{fn}_ndcg@" + str(max(self.ks["ndcg"])), [], self.main_similarity)

    @classmethod
    def from_data(cls, data: RetrievalData, **kwargs: object) -> InformationRetrievalEvaluator:
        """Build from :func:`load_beir` / :func:`load_retrieval_pairs` output; kwargs go to the constructor."""
        return cls(data.queries, data.corpus, data.relevant_docs, **kwargs)  # type: ignore[arg-type]

    def __call__(self, model: Encoder) -> dict[str, float]:
        """Embed queries and corpus, rank, and return every metric for every similarity function."""
        ranked = self.rank(model)
        metrics: dict[str, float] = {}
        for fn_name, top_idx in ranked.items():
            ranked_ids = [[self.corpus_ids[i] for i in row] for row in top_idx.tolist()]
            metrics |= {f"{fn_name}_{key}": value for key, value in self.score_rankings(ranked_ids).items()}
        return prefixed(self.name, metrics)

    def rank(self, model: Encoder) -> dict[str, Tensor]:
        """Top-k corpus positions per query: {similarity name: (Q, min(max_k, corpus size)) long tensor}."""
        q_emb = encode(model, self.queries, self.batch_size, self.query_prompt, self.show_progress_bar)
        # Running best per similarity: scores (Q, <=k) and corpus positions (Q, <=k), best first.
        best = {
            fn: (q_emb.new_empty(len(q_emb), 0), torch.empty(len(q_emb), 0, dtype=torch.long))
            for fn in self.similarity_fn_names
        }
        for start in range(0, len(self.corpus), self.corpus_chunk_size):
            chunk = self.corpus[start : start + self.corpus_chunk_size]
            c_emb = encode(model, chunk, self.batch_size, self.corpus_prompt, self.show_progress_bar)
            for fn_name in self.similarity_fn_names:
                scores = similarity_fn(fn_name)(q_emb, c_emb)  # (Q, chunk)
                top_scores, top_idx = self._chunk_top_k(scores, start)
                best[fn_name] = self._merge(*best[fn_name], top_scores, top_idx + start)
        return {fn: idx for fn, (_, idx) in best.items()}

    def _chunk_top_k(self, scores: Tensor, start: int) -> tuple[Tensor, Tensor]:
        """Top k of one chunk under the (-score, corpus id) order: torch.topk, then an exact redo for the
        rare rows whose k-th score is tied with a score left out (topk picks among ties arbitrarily)."""
        k = min(self.max_k, scores.shape[1])
        top_scores, top_idx = torch.topk(scores, k, dim=1)
        kth = top_scores[:, -1:]
        tied_rows = ((scores >= kth).sum(dim=1) > k).nonzero().flatten().tolist()
        id_rank = self._id_rank[start : start + scores.shape[1]].numpy()
        for row in tied_rows:
            candidates = (scores[row] >= kth[row]).nonzero().flatten().numpy()
            cand_scores = scores[row, candidates].numpy()
            order = np.lexsort((id_rank[candidates], -cand_scores))[:k]  # last key is the primary one
            top_idx[row] = torch.as_tensor(candidates[order])
            top_scores[row] = scores[row, top_idx[row]]
        return top_scores, top_idx

    def _merge(self, s1: Tensor, i1: Tensor, s2: Tensor, i2: Tensor) -> tuple[Tensor, Tensor]:
        """Merge two (Q, *) candidate lists into the best max_k under (-score, corpus id), best first."""
        scores, idx = torch.cat([s1, s2], dim=1), torch.cat([i1, i2], dim=1)
        # Two stable sorts give a lexicographic order: by id rank first, then by score (the primary key).
        by_id = torch.argsort(self._id_rank[idx], dim=1, stable=True)
        scores, idx = scores.gather(1, by_id), idx.gather(1, by_id)
        by_score = torch.argsort(scores, dim=1, descending=True, stable=True)[:, : self.max_k]
        return scores.gather(1, by_score), idx.gather(1, by_score)

    def score_rankings(self, ranked_ids: Sequence[Sequence[Hashable]]) -> dict[str, float]:
        """Metrics for ranked document-id lists, one per query in ``self.query_ids`` order."""
        relevant = [self.relevant_docs[qid] for qid in self.query_ids]
        hits, n_rel = M.hit_matrix(ranked_ids, relevant, self.max_k)
        out: dict[str, float] = {}
        out |= {f"accuracy@{k}": M.accuracy_at_k(hits, k) for k in self.ks["accuracy"]}
        out |= {f"precision@{k}": M.precision_at_k(hits, k) for k in self.ks["precision"]}
        out |= {f"recall@{k}": M.recall_at_k(hits, n_rel, k) for k in self.ks["precision"]}
        out |= {f"ndcg@{k}": M.ndcg_at_k(hits, n_rel, k) for k in self.ks["ndcg"]}
        out |= {f"mrr@{k}": M.mrr_at_k(hits, k) for k in self.ks["mrr"]}
        out |= {f"map@{k}": M.map_at_k(hits, n_rel, k) for k in self.ks["map"]}
        return out


def _check_ks(param: str, ks: Sequence[int]) -> list[int]:
    ks = [ks] if isinstance(ks, int) else list(ks)
    if not ks or any(not isinstance(k, int) or k < 1 for k in ks):
        raise EmbtuneError(f"{param} must be a non-empty list of integers >= 1; got {ks!r}")
    return ks


def _sort_ranks(ids: Sequence[Hashable]) -> list[int]:
    """Position of each id in ascending id order (the tie-break order); str() order when ids don't compare."""
    try:
        order = sorted(range(len(ids)), key=ids.__getitem__)
    except TypeError:
        order = sorted(range(len(ids)), key=lambda i: str(ids[i]))
    ranks = [0] * len(ids)
    for rank, i in enumerate(order):
        ranks[i] = rank
    return ranks
