"""The ``EVALUATORS`` registry (short name -> class) and ``build_evaluator``, which checks parameters first."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable
from typing import Any

from ..errors import EmbtuneError
from .base import Evaluator
from .binary import BinaryClassificationEvaluator
from .retrieval import InformationRetrievalEvaluator
from .sts import EmbeddingSimilarityEvaluator
from .triplet import TripletEvaluator

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
    check_kind(kind)
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
                f"evaluator {kind!r} has no parameter {key!r}{suggest(key, names)}; accepted: {names}"
            )
    if missing := [p.name for p in accepted if p.default is p.empty and p.name not in params]:
        raise EmbtuneError(f"evaluator {kind!r} needs parameter(s) {missing}; add them to its config")
    return cls(**params)


def check_kind(kind: str) -> None:
    """Raise, with a did-you-mean suggestion, when ``kind`` is not a registered evaluator name."""
    if kind not in EVALUATORS:
        raise EmbtuneError(
            f"unknown evaluator {kind!r}{suggest(kind, EVALUATORS)}; choose one of {sorted(EVALUATORS)}"
        )


def suggest(word: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
