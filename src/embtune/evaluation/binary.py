"""BinaryClassificationEvaluator: how well one similarity threshold separates similar from dissimilar pairs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ..errors import EmbtuneError
from ..similarity import pairwise_fn
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
from .metrics import average_precision, best_accuracy_and_threshold, best_f1_and_threshold, matthews_corrcoef

DEFAULT_SIMILARITIES = ("cosine", "dot", "manhattan", "euclidean")
# Per-function metrics, in the order sentence-transformers reports them.
METRICS = ("accuracy", "accuracy_threshold", "f1", "f1_threshold", "precision", "recall", "ap", "mcc")


class BinaryClassificationEvaluator:
    """Best-threshold accuracy and F1, precision/recall at the F1 threshold, average precision and MCC.

    Keys (with ``name="quora-dev"``): ``quora-dev_{fn}_{metric}`` for fn in cosine/dot/manhattan/euclidean and
    metric in accuracy, accuracy_threshold, f1, f1_threshold, precision, recall, ap, mcc; with more than one
    function also ``quora-dev_max_{metric}`` (the max over functions, thresholds included, as
    sentence-transformers does). The primary metric is ``max_ap`` (several functions) or ``{fn}_ap``.

    As in sentence-transformers, manhattan and euclidean are scored as *distances*: a pair is predicted
    similar when its distance is at or below the threshold, and thresholds are reported in distance units.

    Args:
        sentences1: N first texts.
        sentences2: N second texts.
        labels: N labels, 1 = similar / duplicate, 0 = not; both classes must occur.
        name: prefix of every metric key.
        similarity_fn_names: functions to evaluate (aliases accepted).
        batch_size: encode batch size.
        prompt: optional prompt for both sides.

    Raises:
        EmbtuneError: on empty or mismatched inputs, labels other than 0/1, or a single class.
    """

    greater_is_better = True
    card_heading = "Binary Classification"  # the "#### Binary Classification" section of the model card (as sentence-transformers)
    # evaluator input -> default file column (evaluator_from_file, recipes, `embtune eval --columns`)
    file_columns: ClassVar[dict[str, str]] = {"sentences1": "sentence1", "sentences2": "sentence2", "labels": "label"}

    def __init__(
        self,
        sentences1: Sequence[str],
        sentences2: Sequence[str],
        labels: Sequence[int],
        name: str = "",
        similarity_fn_names: Sequence[str] = DEFAULT_SIMILARITIES,
        batch_size: int = 32,
        prompt: str | None = None,
        show_progress_bar: bool = False,
    ) -> None:
        self.sentences1 = check_texts("sentences1", sentences1)
        self.sentences2 = check_texts("sentences2", sentences2)
        check_same_length(sentences1=self.sentences1, sentences2=self.sentences2, labels=labels)
        self.labels = _check_labels(labels)
        self.name = name
        self.similarity_fn_names = check_similarity_names(similarity_fn_names)
        self.batch_size = check_batch_size(batch_size)
        self.prompt = prompt
        self.show_progress_bar = show_progress_bar
        self.primary_metric = primary_key(name, "{fn}_ap", self.similarity_fn_names)

    def __call__(self, model: Encoder) -> dict[str, float]:
        """Embed every distinct text once and return the metrics per similarity function (+ max)."""
        unique = list(dict.fromkeys(self.sentences1 + self.sentences2))
        row = {text: i for i, text in enumerate(unique)}
        emb = encode(model, unique, self.batch_size, self.prompt, self.show_progress_bar)
        e1 = emb[[row[t] for t in self.sentences1]]
        e2 = emb[[row[t] for t in self.sentences2]]
        per_fn = {fn: self._scores(fn, pairwise_fn(fn)(e1, e2).numpy()) for fn in self.similarity_fn_names}
        metrics = {f"{fn}_{m}": value for fn, values in per_fn.items() for m, value in values.items()}
        if len(per_fn) > 1:
            metrics |= {f"max_{m}": max(values[m] for values in per_fn.values()) for m in METRICS}
        return prefixed(self.name, metrics)

    def _scores(self, fn_name: str, similarity: np.ndarray) -> dict[str, float]:
        # Distances stay distances (smaller = more similar) so thresholds read like sentence-transformers'.
        is_distance = fn_name in ("manhattan", "euclidean")
        scores = -similarity if is_distance else similarity
        greater = not is_distance
        accuracy, accuracy_threshold = best_accuracy_and_threshold(scores, self.labels, greater)
        f1, precision, recall, f1_threshold = best_f1_and_threshold(scores, self.labels, greater)
        predicted = scores >= f1_threshold if greater else scores <= f1_threshold
        values = {
            "accuracy": accuracy,
            "accuracy_threshold": accuracy_threshold,
            "f1": f1,
            "f1_threshold": f1_threshold,
            "precision": precision,
            "recall": recall,
            "ap": average_precision(scores if greater else -scores, self.labels),
            "mcc": matthews_corrcoef(self.labels, predicted),
        }
        return {m: values[m] for m in METRICS}


def _check_labels(labels: Sequence[int]) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise EmbtuneError(
            "labels must be 0 (dissimilar) or 1 (similar), one per pair; map your classes to 0/1"
        )
    if y.min() == y.max():
        raise EmbtuneError(
            f"all labels are {int(y[0])}; a binary evaluation set needs both similar and dissimilar pairs"
        )
    return y.astype(np.int64)
