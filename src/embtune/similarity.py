"""Similarity functions between embeddings, by the names sentence-transformers configs use.

Matrix forms take (N, D) and (M, D) and return (N, M); pairwise forms take two (N, D) and return (N,).
Distances are negated so that "larger is more similar" holds for every function.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .errors import EmbtuneError


def _normalize(x: Tensor) -> Tensor:
    return torch.nn.functional.normalize(x, p=2, dim=-1)


def cos_sim(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity matrix: (N, D), (M, D) -> (N, M)."""
    return _normalize(a) @ _normalize(b).transpose(0, 1)


def dot_score(a: Tensor, b: Tensor) -> Tensor:
    """Dot-product matrix: (N, D), (M, D) -> (N, M)."""
    return a @ b.transpose(0, 1)


def euclidean_sim(a: Tensor, b: Tensor) -> Tensor:
    """Negative euclidean distance matrix: (N, D), (M, D) -> (N, M)."""
    return -torch.cdist(a, b, p=2.0)


def manhattan_sim(a: Tensor, b: Tensor) -> Tensor:
    """Negative manhattan (L1) distance matrix: (N, D), (M, D) -> (N, M)."""
    return -torch.cdist(a, b, p=1.0)


def pairwise_cos_sim(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise cosine similarity: (N, D), (N, D) -> (N,)."""
    return (_normalize(a) * _normalize(b)).sum(dim=-1)


def pairwise_dot_score(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dot product: (N, D), (N, D) -> (N,)."""
    return (a * b).sum(dim=-1)


def pairwise_euclidean_sim(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise negative euclidean distance: (N, D), (N, D) -> (N,)."""
    return -torch.linalg.vector_norm(a - b, ord=2, dim=-1)


def pairwise_manhattan_sim(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise negative manhattan distance: (N, D), (N, D) -> (N,)."""
    return -(a - b).abs().sum(dim=-1)


# Names as written in config_sentence_transformers.json ("similarity_fn_name") and in ST loss configs.
SIMILARITIES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cosine": cos_sim,
    "dot": dot_score,
    "euclidean": euclidean_sim,
    "manhattan": manhattan_sim,
}
PAIRWISE: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cosine": pairwise_cos_sim,
    "dot": pairwise_dot_score,
    "euclidean": pairwise_euclidean_sim,
    "manhattan": pairwise_manhattan_sim,
}
# Aliases used by sentence-transformers' loss configs (e.g. "similarity_fct": "cos_sim").
ALIASES = {
    "cos_sim": "cosine",
    "cosine": "cosine",
    "pairwise_cos_sim": "cosine",
    "dot": "dot",
    "dot_score": "dot",
    "dot_product": "dot",
    "pairwise_dot_score": "dot",
    "euclidean": "euclidean",
    "euclidean_sim": "euclidean",
    "pairwise_euclidean_sim": "euclidean",
    "manhattan": "manhattan",
    "manhattan_sim": "manhattan",
    "pairwise_manhattan_sim": "manhattan",
}


def canonical_name(name: str) -> str:
    """Map any accepted alias ('cos_sim', 'dot_score', ...) to one of cosine/dot/euclidean/manhattan."""
    try:
        return ALIASES[name]
    except KeyError:
        raise EmbtuneError(
            f"unknown similarity function {name!r}; use one of: cosine, dot, euclidean, manhattan"
        ) from None


def similarity_fn(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The (N, D), (M, D) -> (N, M) function for a name or alias."""
    return SIMILARITIES[canonical_name(name)]


def pairwise_fn(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """The (N, D), (N, D) -> (N,) function for a name or alias."""
    return PAIRWISE[canonical_name(name)]
