"""What an evaluator and the model it evaluates look like, plus the small helpers every evaluator shares.

An evaluator is any callable ``evaluator(model) -> dict[str, float]`` with three attributes: ``name`` (prefix
of every key, e.g. ``"sts-dev"``), ``primary_metric`` (the full key used to pick the best checkpoint) and
``greater_is_better``; optionally ``card_heading``, the model card's section for its metrics (e.g. ``"Triplet"``;
default: the class name). Keys follow sentence-transformers' naming (``{name}_{metric}``) so that model cards
written by either library read the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from ..errors import EmbtuneError
from ..similarity import canonical_name


@runtime_checkable
class Encoder(Protocol):
    """Anything that embeds texts: embtune's EmbeddingModel, or a 5-line adapter around another library."""

    def encode(
        self,
        texts: list[str],
        batch_size: int = 32,
        prompt: str | None = None,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Embed texts: list of N strings -> float32 array (N, D)."""
        ...


@runtime_checkable
class Evaluator(Protocol):
    """Callable as ``evaluator(model) -> dict[str, float]``; ``primary_metric`` is one of the returned keys."""

    name: str
    primary_metric: str
    greater_is_better: bool

    def __call__(self, model: Encoder) -> dict[str, float]:
        """Evaluate the model and return metrics keyed ``{name}_{metric}``."""
        ...


def encode(
    model: Encoder,
    texts: Sequence[str],
    batch_size: int,
    prompt: str | None = None,
    show_progress_bar: bool = False,
) -> Tensor:
    """Embed texts with the model and return a float32 CPU tensor (N, D)."""
    out = model.encode(list(texts), batch_size=batch_size, prompt=prompt, show_progress_bar=show_progress_bar)
    emb = torch.as_tensor(np.asarray(out), dtype=torch.float32)
    if emb.ndim != 2 or emb.shape[0] != len(texts):
        raise EmbtuneError(
            f"model.encode returned shape {tuple(emb.shape)} for {len(texts)} texts; it must return (N, D) embeddings"
        )
    return emb


def prefixed(name: str, metrics: dict[str, float]) -> dict[str, float]:
    """Prefix every key with ``{name}_`` (no prefix when name is empty), as sentence-transformers does."""
    return {(f"{name}_{key}" if name else key): float(value) for key, value in metrics.items()}


def primary_key(name: str, metric: str, similarity_fn_names: Sequence[str], main: str | None = None) -> str:
    """Full key of an evaluator's primary metric: ``metric`` (e.g. ``"spearman_{fn}"``) for the main similarity,
    else ``max`` when several similarities are computed, else the only one; prefixed like ``prefixed``."""
    fn = main or ("max" if len(similarity_fn_names) > 1 else similarity_fn_names[0])
    key = metric.format(fn=fn)
    return f"{name}_{key}" if name else key


def check_texts(role: str, texts: Sequence[str]) -> list[str]:
    """Validate a list of input texts (non-empty, all strings) and return it as a list."""
    if isinstance(texts, str):
        raise EmbtuneError(f"{role} must be a list of texts, not one string; wrap it in a list")
    texts = list(texts)
    if not texts:
        raise EmbtuneError(f"{role} is empty; pass at least one text")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise EmbtuneError(f"{role}[{i}] is {type(text).__name__}, not str; convert or drop that row")
    return texts


def check_same_length(**columns: Sequence[object]) -> None:
    """Raise when the named columns differ in length (e.g. sentences1 vs labels)."""
    lengths = {role: len(values) for role, values in columns.items()}
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{role}={n}" for role, n in lengths.items())
        raise EmbtuneError(
            f"inputs must have one entry per example but lengths differ ({listing}); align them"
        )


def check_similarity_names(names: Sequence[str]) -> list[str]:
    """Canonical, de-duplicated similarity names (cosine/dot/euclidean/manhattan) in the given order."""
    if isinstance(names, str):
        names = [names]
    canonical = list(dict.fromkeys(canonical_name(n) for n in names))
    if not canonical:
        raise EmbtuneError("similarity_fn_names is empty; pass e.g. ['cosine']")
    return canonical


def check_batch_size(batch_size: int) -> int:
    """Validate the encode batch size."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise EmbtuneError(f"batch_size must be a positive integer; got {batch_size!r}")
    return batch_size
