"""Margin triplet loss on (anchor, positive, negative) triplets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from ..similarity import pairwise_cos_sim, pairwise_euclidean_sim, pairwise_manhattan_sim
from .base import LabelSpec, check_roles, negative_roles
from .checks import check_batch, parse_choice

CITATION = """@misc{hermans2017defense,
    title={In Defense of the Triplet Loss for Person Re-Identification},
    author={Alexander Hermans and Lucas Beyer and Bastian Leibe},
    year={2017},
    eprint={1703.07737},
    archivePrefix={arXiv},
    primaryClass={cs.CV}
}"""

Distance = Callable[[Tensor, Tensor], Tensor]

# Row-wise distances (N, D), (N, D) -> (N,), keyed by our names; the card shows the upper-case enum name.
DISTANCES: dict[str, Distance] = {
    "euclidean": lambda a, b: -pairwise_euclidean_sim(a, b),
    "cosine": lambda a, b: 1 - pairwise_cos_sim(a, b),
    "manhattan": lambda a, b: -pairwise_manhattan_sim(a, b),
}


class TripletLoss:
    """Hinge on distances: ``mean(relu(d(anchor, positive) - d(anchor, negative) + triplet_margin))``.

    Requirements: roles ``anchor``, ``positive`` and ``negative_1`` (exactly one negative); no labels.

    Relations: ``MultipleNegativesRankingLoss`` also takes (anchor, positive, negative) triplets and
    uses every other text of the batch as a negative too; it usually trains better retrieval models.

    Args:
        distance_metric: "euclidean" (default), "cosine" (1 - cosine similarity) or "manhattan";
            "TripletDistanceMetric.EUCLIDEAN" style names are accepted as well.
        triplet_margin: how much farther than the positive the negative must be. 5 suits
            euclidean distances of unnormalised embeddings; for "cosine" use something like 0.1-0.5.
    """

    name: ClassVar[str] = "TripletLoss"
    required_roles: ClassVar[tuple[str, ...]] = ("anchor", "positive", "negative_1")
    max_negatives: ClassVar[int | None] = 1
    label: ClassVar[LabelSpec | None] = None
    citation: ClassVar[str] = CITATION

    def __init__(self, distance_metric: str = "euclidean", triplet_margin: float = 5) -> None:
        self.metric, self.distance = parse_choice(
            distance_metric, DISTANCES, enum="TripletDistanceMetric", param="distance_metric", loss=self.name
        )
        self.triplet_margin = triplet_margin

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None = None) -> Tensor:
        """``embeddings``: anchor, positive, negative_1 -> (B, D). Returns the scalar mean hinge."""
        check_roles(self, embeddings, len(negative_roles(embeddings)))
        check_batch(embeddings, ["anchor", "positive", "negative_1"], self.name)
        anchor = embeddings["anchor"]
        to_positive = self.distance(anchor, embeddings["positive"])  # (B,)
        to_negative = self.distance(anchor, embeddings["negative_1"])  # (B,)
        return F.relu(to_positive - to_negative + self.triplet_margin).mean()

    def config(self) -> dict[str, Any]:
        return {
            "distance_metric": f"TripletDistanceMetric.{self.metric.upper()}",
            "triplet_margin": self.triplet_margin,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"
