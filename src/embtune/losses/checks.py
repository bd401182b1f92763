"""Checks and parsers shared by the losses: option values (similarity / distance names, positive numbers)
and inputs (the roles a batch must hold, label shape), each failing with a message that names the loss.

YAML-friendly options (plain strings) become functions, and functions become model-card names again.

Losses accept both our short spellings (``"cosine"``, ``"euclidean"``) and the spellings that
sentence-transformers model cards show (``"cos_sim"``, ``"TripletDistanceMetric.EUCLIDEAN"``), so a
config copied from a card works unchanged.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import TypeVar

import torch
from torch import Tensor

from ..errors import EmbtuneError
from ..similarity import pairwise_fn, similarity_fn

T = TypeVar("T")
SimilarityFn = Callable[[Tensor, Tensor], Tensor]


def callable_name(fn: Callable[..., object]) -> str:
    """The short name a model card shows for a function or callable object ("cos_sim", "MyScore")."""
    return getattr(fn, "__name__", type(fn).__name__)


def resolve_similarity(value: str | SimilarityFn, *, pairwise: bool, loss: str) -> tuple[SimilarityFn, str]:
    """A similarity option -> (function, name for config()).

    Strings go through ``embtune.similarity`` ("cos_sim", "cosine", "dot_score", ...); the name returned
    is the function's own name, which matches sentence-transformers' ("cos_sim", "pairwise_cos_sim").
    Callables are used as given: (N, D), (M, D) -> (N, M), or (N, D), (N, D) -> (N,) when ``pairwise``.
    """
    if callable(value):
        return value, callable_name(value)
    if not isinstance(value, str):
        raise EmbtuneError(
            f"{loss}: similarity_fct must be a name such as 'cos_sim' or a callable, got {value!r}"
        )
    try:
        fn = pairwise_fn(value) if pairwise else similarity_fn(value)
    except EmbtuneError as err:
        raise EmbtuneError(f"{loss}: {err}") from None
    return fn, fn.__name__


def parse_choice(
    value: object, choices: Mapping[str, T], *, enum: str, param: str, loss: str
) -> tuple[str, T]:
    """Look ``value`` up in ``choices`` (lower-case keys), accepting ``"Enum.MEMBER"`` spellings.

    Returns (canonical key, value). ``enum`` is the sentence-transformers enum name whose prefix is
    stripped, e.g. "TripletDistanceMetric" so that "TripletDistanceMetric.EUCLIDEAN" means "euclidean".
    """
    if not isinstance(value, str):
        raise EmbtuneError(f"{loss}: {param} must be one of {', '.join(choices)}; got {value!r}")
    key = value.strip()
    if key.startswith(enum + "."):
        key = key[len(enum) + 1 :]
    key = key.lower()
    if key not in choices:
        close = difflib.get_close_matches(key, list(choices), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EmbtuneError(f"{loss}: unknown {param} {value!r}{hint}; use one of: {', '.join(choices)}")
    return key, choices[key]


def check_positive(value: float, *, param: str, loss: str) -> None:
    """Raise unless ``value`` is a number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise EmbtuneError(f"{loss}: {param} must be a number > 0, got {value!r}")


def check_batch(embeddings: dict[str, Tensor], roles: list[str], loss: str) -> int:
    """Check that every role holds a (B, D) tensor with the same B and D; return B."""
    shapes = {role: tuple(embeddings[role].shape) for role in roles}
    first = shapes[roles[0]]
    if len(first) != 2 or any(shape != first for shape in shapes.values()):
        raise EmbtuneError(
            f"{loss}: every role must hold a (batch, dim) tensor of the same shape; got {shapes}. "
            "Embed all roles of a batch with the same model and batch size."
        )
    return first[0]


def check_labels(labels: Tensor | None, batch_size: int, loss: str, expected: str) -> Tensor:
    """Labels as a flat (B,) tensor; raise if absent or of the wrong size."""
    if labels is None:
        raise EmbtuneError(
            f"{loss} needs a label per pair ({expected}); map a column to `label` in datasets[].columns"
        )
    if labels.numel() != batch_size:
        raise EmbtuneError(
            f"{loss} needs one label per pair: got {labels.numel()} labels (shape {tuple(labels.shape)}) "
            f"for a batch of {batch_size}"
        )
    return labels.reshape(-1)


def at_least_fp32(x: Tensor) -> Tensor:
    """Upcast fp16/bf16 scores to fp32 before exp/log (autocast); float32/float64 pass through."""
    return x.to(torch.promote_types(x.dtype, torch.float32))
