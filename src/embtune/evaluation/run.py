"""``evaluate(model, data, evaluator=...)``: one evaluator built from a data file, run on one model.

This is what ``embtune eval`` calls; in a training run the loop builds evaluators from the recipe instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import EmbtuneError
from .base import Encoder
from .from_files import evaluator_from_file


def evaluate(
    model: Encoder | str | os.PathLike[str],
    data: str | os.PathLike[str],
    evaluator: str = "sts",
    *,
    columns: Mapping[str, str] | None = None,
    name: str = "",
    params: Mapping[str, Any] | None = None,
    batch_size: int | None = None,
    precision: str = "auto",
    max_rows: int | None = None,
    split: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    device: str | None = None,
    trust_remote_code: bool = False,
    allow_pickle: bool = False,
) -> dict[str, float]:
    """Evaluate a model on an evaluation file and return the metrics (keys as sentence-transformers names them).

    Args:
        model: an ``EmbeddingModel`` (or any ``Encoder``), or what ``EmbeddingModel.load`` accepts: a model
            folder, a Hub id, ``bundled:all-MiniLM-L6-v2``.
        data: the evaluation file or BEIR folder (see ``evaluator_from_file``).
        evaluator: ``sts``, ``triplet``, ``binary`` or ``retrieval``.
        columns / name / params / max_rows / split / cache_dir: as in ``evaluator_from_file``.
        batch_size: encode batch size; None keeps the evaluator's default.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` for the forward passes (embtune models only).
        device / trust_remote_code / allow_pickle: for loading a model given by name.

    Raises:
        EmbtuneError: bad data (checked before the model is loaded), or a path that is not a model.

    >>> evaluate("bundled:all-MiniLM-L6-v2", "stsb/test.csv", "sts")["spearman_cosine"]  # doctest: +SKIP
    0.8203...
    """
    params = dict(params or {})
    if batch_size is not None:
        params["batch_size"] = batch_size
    built = evaluator_from_file(
        evaluator, data, columns=columns, name=name, params=params, max_rows=max_rows, split=split,
        cache_dir=cache_dir,
    )
    if isinstance(model, (str, os.PathLike)):
        from ..models.embedding_model import EmbeddingModel

        model = EmbeddingModel.load(
            model, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, device=device
        )
    if precision != "auto":
        model = _WithPrecision(model, precision)
    return built(model)


class _WithPrecision:
    """Passes a fixed ``precision`` to ``EmbeddingModel.encode``; evaluators only pass the Encoder arguments."""

    def __init__(self, model: Encoder, precision: str) -> None:
        from ..models.embedding_model import EmbeddingModel

        if not isinstance(model, EmbeddingModel):
            raise EmbtuneError(
                f"precision={precision!r} applies to embtune EmbeddingModel only; got {type(model).__name__}. "
                "Use precision='auto' and set the precision in your own encoder"
            )
        self.model = model
        self.precision = precision

    def encode(
        self,
        texts: list[str],
        batch_size: int = 32,
        prompt: str | None = None,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=batch_size,
            prompt=prompt,
            precision=self.precision,
            show_progress_bar=show_progress_bar,
        )
