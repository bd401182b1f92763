"""EmbeddingSimilarityEvaluator: correlation between embedding similarities and gold similarity scores (STS)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ..errors import EmbtuneError
from ..similarity import canonical_name, pairwise_fn
from .base import (
    Encoder,
    check_batch_size,
    check_same_length,
    check_similarity_names,
    check_texts,
    encode,
    prefixed,
    primary_key,
)
from .metrics import pearson, spearman

DEFAULT_SIMILARITIES = ("cosine", "dot", "euclidean", "manhattan")


class EmbeddingSimilarityEvaluator:
    """Pearson and Spearman correlation of ``sim(sentences1[i], sentences2[i])`` with ``scores[i]``.

    Keys (with ``name="sts-dev"``), named as sentence-transformers v3+ does: ``sts-dev_pearson_cosine``,
    ``sts-dev_spearman_cosine``, and likewise ``_dot``, ``_euclidean``, ``_manhattan``; with more than one
    function also ``sts-dev_pearson_max`` and ``sts-dev_spearman_max``. The gold scale does not matter
    (0-5 or 0-1): correlations are scale-free.

    Args:
        sentences1: N first texts of each pair.
        sentences2: N second texts.
        scores: N gold similarity scores.
        name: prefix of every metric key.
        similarity_fn_names: functions to evaluate, among cosine/dot/euclidean/manhattan (aliases accepted).
        main_similarity: makes ``spearman_{main}`` the primary metric; default: ``spearman_max`` when several
            functions are evaluated (sentence-transformers' rule), else the single function's Spearman.
        batch_size: encode batch size.
        prompt: optional prompt for both sides.

    Raises:
        EmbtuneError: on empty or mismatched inputs, fewer than 2 pairs, constant or non-finite gold scores.
    """

    greater_is_better = True
    card_heading = "Semantic Similarity"  # the "#### Semantic Similarity" section of the model card (as sentence-transformers)
    # evaluator input -> default file column (evaluator_from_file, recipes, `embtune eval --columns`)
    file_columns: ClassVar[dict[str, str]] = {"sentences1": "sentence1", "sentences2": "sentence2", "scores": "score"}

    def __init__(
        self,
        sentences1: Sequence[str],
        sentences2: Sequence[str],
        scores: Sequence[float],
        name: str = "",
        similarity_fn_names: Sequence[str] = DEFAULT_SIMILARITIES,
        main_similarity: str | None = None,
        batch_size: int = 32,
        prompt: str | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        self.sentences1 = check_texts("sentences1", sentences1)
        self.sentences2 = check_texts("sentences2", sentences2)
        check_same_length(sentences1=self.sentences1, sentences2=self.sentences2, scores=scores)
        self.scores = _check_gold(scores)
        self.name = name
        self.similarity_fn_names = check_similarity_names(similarity_fn_names)
        self.main_similarity = canonical_name(main_similarity) if main_similarity else None
        self.batch_size = check_batch_size(batch_size)
        self.prompt = prompt
        self.show_progress_bar = show_progress_bar
        self.primary_metric = primary_key(name, "spearman_{fn}", self.similarity_fn_names, self.main_similarity)

    def __call__(self, model: Encoder) -> dict[str, float]:
        """Embed both sides and return Pearson/Spearman per similarity function (+ max)."""
        e1 = encode(model, self.sentences1, self.batch_size, self.prompt, self.show_progress_bar)
        e2 = encode(model, self.sentences2, self.batch_size, self.prompt, self.show_progress_bar)
        metrics: dict[str, float] = {}
        for fn_name in self.similarity_fn_names:
            predicted = pairwise_fn(fn_name)(e1, e2).numpy()
            metrics[f"pearson_{fn_name}"] = pearson(self.scores, predicted)
            metrics[f"spearman_{fn_name}"] = spearman(self.scores, predicted)
        if len(self.similarity_fn_names) > 1:
            metrics["pearson_max"] = max(metrics[f"pearson_{fn}"] for fn in self.similarity_fn_names)
            metrics["spearman_max"] = max(metrics[f"spearman_{fn}"] for fn in self.similarity_fn_names)
        return prefixed(self.name, metrics)


def _check_gold(scores: Sequence[float]) -> np.ndarray:
    try:
        gold = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError):
        raise EmbtuneError(
            "scores must be numbers (one gold similarity per pair); convert the label column"
        ) from None
    if gold.ndim != 1 or len(gold) < 2:
        raise EmbtuneError(f"need at least 2 scored pairs to compute a correlation; got {gold.size}")
    if not np.isfinite(gold).all():
        bad = int(np.flatnonzero(~np.isfinite(gold))[0])
        raise EmbtuneError(f"scores[{bad}] is {gold[bad]}; drop or fix pairs without a numeric score")
    if gold.min() == gold.max():
        raise EmbtuneError(
            "all gold scores are equal, so correlation is undefined; use pairs with varied scores"
        )
    return gold
