"""Evaluators: callables ``evaluator(model) -> dict[str, float]`` with ``name``, ``primary_metric`` and
``greater_is_better``; metric keys match sentence-transformers' so model cards compare across libraries.

Python users import the classes; configs name them through the ``EVALUATORS`` registry:

>>> ev = build_evaluator("triplet", anchors=["a"], positives=["b"], negatives=["c"], name="dev")
>>> ev.primary_metric
'dev_max_accuracy'
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable
from typing import Any

from ..errors import EmbtuneError
from .base import Encoder, Evaluator
from .binary import BinaryClassificationEvaluator
from .retrieval import InformationRetrievalEvaluator
from .retrieval_data import RetrievalData, load_beir, load_retrieval_pairs
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
    "load_beir",
    "load_retrieval_pairs",
    "run_evaluators",
]

EVALUATORS: dict[str, type] = {
    "triplet": TripletEvaluator,
    "sts": EmbeddingSimilarityEvaluator,
    "retrieval": InformationRetrievalEvaluator,
    "binary": BinaryClassificationEvaluator,
}


def build_evaluator(kind: str, **params: Any) -> Evaluator:
    """Build a registered evaluator by its short name; params go to its constructor.

    Raises:
        EmbtuneError: for an unknown kind or parameter (with a did-you-mean suggestion) or a missing one.
    """
    if kind not in EVALUATORS:
        raise EmbtuneError(
            f"unknown evaluator {kind!r}{_suggest(kind, EVALUATORS)}; choose one of {sorted(EVALUATORS)}"
        )
    cls = EVALUATORS[kind]
    accepted = [
        p
        for p in inspect.signature(cls).parameters.values()
        if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    names = [p.name for p in accepted]
    for key in params:
        if key not in names:
            raise EmbtuneError(
                f"evaluator {kind!r} has no parameter {key!r}{_suggest(key, names)}; accepted: {names}"
            )
    if missing := [p.name for p in accepted if p.default is p.empty and p.name not in params]:
        raise EmbtuneError(f"evaluator {kind!r} needs parameter(s) {missing}; add them to its config")
    return cls(**params)


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


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
