"""Contrastive (siamese) losses on pairs labelled similar (1) or dissimilar (0)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor

from .base import LabelSpec, check_roles, negative_roles
from .checks import check_batch, check_labels, parse_choice

CITATION = """@inproceedings{hadsell2006dimensionality,
    author={Hadsell, R. and Chopra, S. and LeCun, Y.},
    booktitle={2006 IEEE Computer Society Conference on Computer Vision and Pattern Recognition (CVPR'06)},
    title={Dimensionality Reduction by Learning an Invariant Mapping},
    year={2006},
    volume={2},
    number={},
    pages={1735-1742},
    doi={10.1109/CVPR.2006.100}
}"""

Distance = Callable[[Tensor, Tensor], Tensor]

# Row-wise distances (N, D), (N, D) -> (N,). pairwise_distance adds eps=1e-6 to the difference, which
# keeps the gradient finite when two embeddings coincide.
DISTANCES: dict[str, Distance] = {
    "euclidean": lambda a, b: F.pairwise_distance(a, b, p=2),
    "manhattan": lambda a, b: F.pairwise_distance(a, b, p=1),
    "cosine_distance": lambda a, b: 1 - F.cosine_similarity(a, b, dim=-1),
}
_ALIASES = {"cosine": "cosine_distance"}
_ENUM = "SiameseDistanceMetric"


def _parse_metric(value: str, loss: str) -> tuple[str, Distance]:
    if isinstance(value, str):
        value = _ALIASES.get(value.strip().lower(), value)
    return parse_choice(value, DISTANCES, enum=_ENUM, param="distance_metric", loss=loss)


def _pair_distances(
    loss: ContrastiveLoss | OnlineContrastiveLoss, embeddings: dict[str, Tensor], labels: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Validate and return (distances (B,), labels (B,))."""
    check_roles(loss, embeddings, len(negative_roles(embeddings)))
    batch = check_batch(embeddings, ["anchor", "positive"], loss.name)
    labels = check_labels(labels, batch, loss.name, "0 or 1")
    return loss.distance(embeddings["anchor"], embeddings["positive"]), labels


class ContrastiveLoss:
    """Pulls label-1 pairs together and pushes label-0 pairs at least ``margin`` apart.

    Per pair, with distance d: ``0.5 * (y * d**2 + (1 - y) * relu(margin - d)**2)``; the loss is the
    mean over the batch (``size_average=True``) or the sum.

    Requirements: roles ``anchor`` and ``positive`` (the two texts of a pair); no negatives; a
    binary label per pair, 1 = similar, 0 = dissimilar.

    Relations: ``OnlineContrastiveLoss`` uses only the hard pairs of the batch and often does better;
    ``CosineSimilarityLoss``/``CoSENTLoss`` take graded scores instead of 0/1; with (anchor,
    positive) pairs only, ``MultipleNegativesRankingLoss`` is usually the better choice.

    Args:
        distance_metric: "cosine_distance" (default; 1 - cosine, alias "cosine"), "euclidean" or
            "manhattan"; "SiameseDistanceMetric.COSINE_DISTANCE" style names are accepted as well.
        margin: minimum distance wanted between dissimilar pairs (0.5 suits the cosine distance).
        size_average: mean over the batch (True) or sum (False).
    """

    name: ClassVar[str] = "ContrastiveLoss"
    required_roles: ClassVar[tuple[str, ...]] = ("anchor", "positive")
    max_negatives: ClassVar[int | None] = 0
    label: ClassVar[LabelSpec | None] = LabelSpec("binary")
    citation: ClassVar[str] = CITATION

    def __init__(
        self, distance_metric: str = "cosine_distance", margin: float = 0.5, size_average: bool = True
    ) -> None:
        self.metric, self.distance = _parse_metric(distance_metric, self.name)
        self.margin = margin
        self.size_average = size_average

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: anchor, positive -> (B, D); ``labels``: (B,) 0/1. Returns a scalar."""
        distances, labels = _pair_distances(self, embeddings, labels)
        y = labels.to(distances.dtype)
        per_pair = 0.5 * (y * distances.pow(2) + (1 - y) * F.relu(self.margin - distances).pow(2))
        return per_pair.mean() if self.size_average else per_pair.sum()

    def config(self) -> dict[str, Any]:
        return {
            "distance_metric": f"{_ENUM}.{self.metric.upper()}",
            "margin": self.margin,
            "size_average": self.size_average,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"


class OnlineContrastiveLoss:
    """Contrastive loss on the hard pairs of the batch only, summed (not averaged).

    Hard positives: label-1 pairs farther apart than the closest label-0 pair. Hard negatives:
    label-0 pairs closer than the farthest label-1 pair. (When the batch has only one kind of pair,
    the other kind's threshold is its own mean distance.) The loss is
    ``sum(d_hard_pos**2) + sum(relu(margin - d_hard_neg)**2)``; other pairs give no gradient.

    Requirements: roles ``anchor`` and ``positive`` (the two texts of a pair); no negatives; a
    binary label per pair, 1 = similar, 0 = dissimilar.

    Relations: ``ContrastiveLoss`` uses every pair (and halves and averages the terms); this online
    variant often yields better results on duplicate-detection data.

    Args:
        distance_metric: as ``ContrastiveLoss`` (default "cosine_distance").
        margin: minimum distance wanted between dissimilar pairs.
    """

    name: ClassVar[str] = "OnlineContrastiveLoss"
    required_roles: ClassVar[tuple[str, ...]] = ("anchor", "positive")
    max_negatives: ClassVar[int | None] = 0
    label: ClassVar[LabelSpec | None] = LabelSpec("binary")
    citation: ClassVar[str] = ""  # sentence-transformers cites no paper for this loss

    def __init__(self, distance_metric: str = "cosine_distance", margin: float = 0.5) -> None:
        self.metric, self.distance = _parse_metric(distance_metric, self.name)
        self.margin = margin

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: anchor, positive -> (B, D); ``labels``: (B,) 0/1. Returns a scalar."""
        distances, labels = _pair_distances(self, embeddings, labels)
        positives = distances[labels == 1]
        negatives = distances[labels == 0]
        farthest_positive = positives.max() if len(positives) else negatives.mean()
        closest_negative = negatives.min() if len(negatives) else positives.mean()
        hard_positives = positives[positives > closest_negative]
        hard_negatives = negatives[negatives < farthest_positive]
        return hard_positives.pow(2).sum() + F.relu(self.margin - hard_negatives).pow(2).sum()

    def config(self) -> dict[str, Any]:
        return {"distance_metric": f"{_ENUM}.{self.metric.upper()}", "margin": self.margin}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"
