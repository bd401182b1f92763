"""Matryoshka wrapper: apply an inner loss to truncated prefixes of the embeddings."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from ..errors import EmbtuneError
from .base import LabelSpec, Loss, ModelLoss

CITATION = """@misc{kusupati2024matryoshka,
    title={Matryoshka Representation Learning},
    author={Aditya Kusupati and Gantavya Bhatt and Aniket Rege and Matthew Wallingford and Aditya Sinha and Vivek Ramanujan and William Howard-Snyder and Kaifeng Chen and Sham Kakade and Prateek Jain and Ali Farhadi},
    year={2024},
    eprint={2205.13147},
    archivePrefix={arXiv},
    primaryClass={cs.LG}
}"""


def truncate(embeddings: Tensor, dim: int) -> Tensor:
    """The first ``dim`` features, L2-normalised: (B, D) -> (B, dim)."""
    return F.normalize(embeddings[..., :dim], p=2, dim=-1)


class MatryoshkaLoss:
    """Sum of ``weight_d * inner_loss(embeddings truncated to d)`` over the Matryoshka dims d.

    Every role's embeddings are cut to their first ``d`` features and L2-normalised (as
    sentence-transformers does; a no-op for cosine-based inner losses, a change for dot/euclidean
    ones, even at the full dimension), then passed to the inner loss with the same labels. The model
    thus learns embeddings whose prefixes are useful on their own, so users can truncate them.

    Requirements: those of the inner loss (roles, negatives and labels are taken from it); every
    dim must be <= the embedding size. Include the full size in the dims to keep training it.

    Relations: wraps any plain loss (``MultipleNegativesRankingLoss``, ``CoSENTLoss`` ...). Wrapping
    ``CachedMultipleNegativesRankingLoss`` is not supported yet.

    Args:
        loss: the inner loss object. ``build_loss("matryoshka", loss={"name": "mnrl", ...}, ...)``
            builds it from a name or a dict for YAML.
        matryoshka_dims: e.g. [768, 512, 256, 128, 64]; stored sorted from largest to smallest.
        matryoshka_weights: one weight per dim, default 1 each.
        n_dims_per_step: -1 uses all dims every step; k > 0 samples k of them per call (Python's
            ``random``, so seed it for reproducibility).
    """

    name: ClassVar[str] = "MatryoshkaLoss"
    citation: ClassVar[str] = CITATION
    # Overwritten per instance from the inner loss.
    required_roles: ClassVar[tuple[str, ...]] = ("anchor",)
    max_negatives: ClassVar[int | None] = None
    label: ClassVar[LabelSpec | None] = None

    def __init__(
        self,
        loss: Loss,
        matryoshka_dims: Sequence[int],
        matryoshka_weights: Sequence[float] | None = None,
        n_dims_per_step: int = -1,
    ) -> None:
        if isinstance(loss, ModelLoss):
            raise EmbtuneError(
                f"MatryoshkaLoss cannot wrap {loss.name} yet (it runs the model itself); "
                "wrap MultipleNegativesRankingLoss instead"
            )
        if not isinstance(loss, Loss):
            raise EmbtuneError(
                f"MatryoshkaLoss: `loss` must be a loss object such as MultipleNegativesRankingLoss(), got {loss!r}"
            )
        dims = list(matryoshka_dims)
        if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in dims):
            raise EmbtuneError(
                f"MatryoshkaLoss: matryoshka_dims must be positive integers, e.g. [768, 256, 64]; got {dims}"
            )
        weights = [1] * len(dims) if matryoshka_weights is None else list(matryoshka_weights)
        if len(weights) != len(dims):
            raise EmbtuneError(
                f"MatryoshkaLoss: {len(weights)} matryoshka_weights for {len(dims)} matryoshka_dims; give one weight per dim"
            )
        if n_dims_per_step != -1 and not (isinstance(n_dims_per_step, int) and n_dims_per_step > 0):
            raise EmbtuneError(
                f"MatryoshkaLoss: n_dims_per_step must be -1 (all dims) or > 0, got {n_dims_per_step!r}"
            )
        pairs = sorted(zip(dims, weights, strict=True), key=lambda pair: pair[0], reverse=True)
        self.loss = loss
        self.matryoshka_dims = [d for d, _ in pairs]
        self.matryoshka_weights = [w for _, w in pairs]
        self.n_dims_per_step = n_dims_per_step
        self.required_roles = loss.required_roles  # type: ignore[misc]
        self.max_negatives = loss.max_negatives  # type: ignore[misc]
        self.label = loss.label  # type: ignore[misc]

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: role -> (B, D) with D >= max(matryoshka_dims). Returns the weighted sum."""
        size = min(e.shape[-1] for e in embeddings.values())
        if self.matryoshka_dims[0] > size:
            raise EmbtuneError(
                f"MatryoshkaLoss: dim {self.matryoshka_dims[0]} exceeds the embedding size {size}; "
                f"use matryoshka_dims <= {size}"
            )
        indices = list(range(len(self.matryoshka_dims)))
        if 0 < self.n_dims_per_step < len(indices):
            indices = sorted(random.sample(indices, self.n_dims_per_step))
        terms = []
        for i in indices:
            dim, weight = self.matryoshka_dims[i], self.matryoshka_weights[i]
            truncated = {role: truncate(e, dim) for role, e in embeddings.items()}
            terms.append(weight * self.loss(truncated, labels))
        return sum(terms[1:], terms[0])

    def config(self) -> dict[str, Any]:
        return {
            "loss": self.loss.name,
            "matryoshka_dims": list(self.matryoshka_dims),
            "matryoshka_weights": list(self.matryoshka_weights),
            "n_dims_per_step": self.n_dims_per_step,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"
