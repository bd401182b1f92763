"""TripletEvaluator: how often an anchor is closer to its positive than to its negative."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

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

# Order as in sentence-transformers' model cards: cosine, dot, manhattan, euclidean, then max.
DEFAULT_SIMILARITIES = ("cosine", "dot", "manhattan", "euclidean")


class TripletEvaluator:
    """Accuracy of ``sim(anchor, positive) > sim(anchor, negative) + margin`` for each similarity function.

    Keys (with ``name="nli-dev"``): ``nli-dev_cosine_accuracy``, ``nli-dev_dot_accuracy``,
    ``nli-dev_manhattan_accuracy``, ``nli-dev_euclidean_accuracy`` and, when more than one function is
    evaluated, ``nli-dev_max_accuracy``. Distances are negated, so "greater is more similar" holds for all.

    Args:
        anchors: N anchor texts (embedded with ``query_prompt``).
        positives: N texts that should be closer to their anchor (embedded with ``document_prompt``).
        negatives: N texts that should be further away (embedded with ``document_prompt``).
        name: prefix of every metric key; "" gives bare keys.
        similarity_fn_names: functions to evaluate, among cosine/dot/manhattan/euclidean (aliases accepted).
        main_similarity: makes ``{main}_accuracy`` the primary metric; default: ``max_accuracy`` when several
            functions are evaluated (sentence-transformers' rule), else the single function's accuracy.
        margin: required gap, one float for all functions or a dict per function name (missing = 0).
        batch_size: encode batch size.
        query_prompt / document_prompt: optional prompts for anchors / for positives and negatives.

    Raises:
        EmbtuneError: on empty inputs, different lengths, unknown similarity names or margin keys.
    """

    greater_is_better = True
    card_heading = "Triplet"  # the "#### Triplet" section of the model card (as sentence-transformers)
    # evaluator input -> default file column (evaluator_from_file, recipes, `embtune eval --columns`)
    file_columns: ClassVar[dict[str, str]] = {"anchors": "anchor", "positives": "positive", "negatives": "negative"}

    def __init__(
        self,
        anchors: Sequence[str],
        positives: Sequence[str],
        negatives: Sequence[str],
        name: str = "",
        similarity_fn_names: Sequence[str] = DEFAULT_SIMILARITIES,
        main_similarity: str | None = None,
        margin: float | dict[str, float] = 0.0,
        batch_size: int = 32,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        self.anchors = check_texts("anchors", anchors)
        self.positives = check_texts("positives", positives)
        self.negatives = check_texts("negatives", negatives)
        check_same_length(anchors=self.anchors, positives=self.positives, negatives=self.negatives)
        self.name = name
        self.similarity_fn_names = check_similarity_names(similarity_fn_names)
        self.main_similarity = canonical_name(main_similarity) if main_similarity else None
        self.margin = _margins(margin, self.similarity_fn_names)
        self.batch_size = check_batch_size(batch_size)
        self.query_prompt = query_prompt
        self.document_prompt = document_prompt
        self.show_progress_bar = show_progress_bar
        self.primary_metric = primary_key(name, "{fn}_accuracy", self.similarity_fn_names, self.main_similarity)

    def __call__(self, model: Encoder) -> dict[str, float]:
        """Embed the three roles and return the accuracy per similarity function (+ max)."""
        a = encode(model, self.anchors, self.batch_size, self.query_prompt, self.show_progress_bar)
        p = encode(model, self.positives, self.batch_size, self.document_prompt, self.show_progress_bar)
        n = encode(model, self.negatives, self.batch_size, self.document_prompt, self.show_progress_bar)
        metrics: dict[str, float] = {}
        for fn_name in self.similarity_fn_names:
            sim = pairwise_fn(fn_name)
            correct = sim(a, p) > sim(a, n) + self.margin[fn_name]
            metrics[f"{fn_name}_accuracy"] = correct.float().mean().item()
        if len(self.similarity_fn_names) > 1:
            metrics["max_accuracy"] = max(metrics.values())
        return prefixed(self.name, metrics)


def _margins(margin: float | dict[str, float], names: list[str]) -> dict[str, float]:
    if isinstance(margin, dict):
        per_fn = {canonical_name(key): float(value) for key, value in margin.items()}
        if unused := sorted(set(per_fn) - set(names)):
            raise EmbtuneError(
                f"margin given for {unused}, which are not in similarity_fn_names={names}; remove them"
            )
        return {fn: per_fn.get(fn, 0.0) for fn in names}
    if isinstance(margin, bool) or not isinstance(margin, (int, float)):
        raise EmbtuneError(f"margin must be a number or a dict of numbers per similarity; got {margin!r}")
    return {fn: float(margin) for fn in names}
