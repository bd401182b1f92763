"""Evaluators: callables ``evaluator(model) -> dict[str, float]`` with ``name``, ``primary_metric`` and
``greater_is_better``; metric keys match sentence-transformers' so model cards compare across libraries.

Python users import the classes; configs name them through the ``EVALUATORS`` registry:

>>> ev = build_evaluator("triplet", anchors=["a"], positives=["b"], negatives=["c"], name="dev")
>>> ev.primary_metric
'dev_max_accuracy'
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import EmbtuneError
from .base import Encoder, Evaluator
from .binary import BinaryClassificationEvaluator
from .from_files import default_columns, evaluator_from_file
from .registry import EVALUATORS, build_evaluator
from .retrieval import InformationRetrievalEvaluator
from .retrieval_data import RetrievalData, load_beir, load_retrieval_pairs
from .run import evaluate
from .sts import EmbeddingSimilarityEvaluator
from .triplet import TripletEvaluator

__all__ = [
    "EVALUATORS",
    "BinaryClassificationEvaluator",
    "EmbeddingSimilarityEvaluator",
    "Encoder",
    "Evaluator",
    "InformationRetrievalEvaluator",
    "RetrievalData",
    "TripletEvaluator",
    "build_evaluator",
    "default_columns",
    "evaluate",
    "evaluator_from_file",
    "load_beir",
    "load_retrieval_pairs",
    "run_evaluators",
]


def run_evaluators(model: Encoder, evaluators: Iterable[Evaluator]) -> dict[str, float]:
    """Run each evaluator on the model and merge their metrics into one dict.

    Raises:
        EmbtuneError: when two evaluators produce the same key (give them different ``name``s).
    """
    merged: dict[str, float] = {}
    for evaluator in evaluators:
        metrics = evaluator(model)
        if clash := sorted(set(metrics) & set(merged)):
            raise EmbtuneError(
                f"evaluators produce the same metric keys {clash[:3]}; give each evaluator a distinct name"
            )
        merged |= metrics
    return merged

