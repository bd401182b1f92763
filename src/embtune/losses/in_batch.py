"""In-batch negatives (InfoNCE): MultipleNegativesRankingLoss and its symmetric variant."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import LabelSpec, check_roles, negative_roles
from .checks import SimilarityFn, at_least_fp32, check_batch, check_positive, resolve_similarity

CITATION_INFONCE = """@misc{oord2019representationlearningcontrastivepredictive,
      title={Representation Learning with Contrastive Predictive Coding},
      author={Aaron van den Oord and Yazhe Li and Oriol Vinyals},
      year={2019},
      eprint={1807.03748},
      archivePrefix={arXiv},
      primaryClass={cs.LG},
      url={https://arxiv.org/abs/1807.03748},
}"""

CITATION_SYMMETRIC = """@misc{günther2024jinaembeddings28192token,
      title={Jina Embeddings 2: 8192-Token General-Purpose Text Embeddings for Long Documents},
      author={Michael Günther and Jackmin Ong and Isabelle Mohr and Alaeddine Abdessalem and Tanguy Abel and Mohammad Kalim Akram and Susana Guzman and Georgios Mastrapas and Saba Sturua and Bo Wang and Maximilian Werk and Nan Wang and Han Xiao},
      year={2024},
      eprint={2310.19923},
      archivePrefix={arXiv},
      primaryClass={cs.CL},
      url={https://arxiv.org/abs/2310.19923},
}"""


def candidates_of(embeddings: dict[str, Tensor]) -> Tensor:
    """All candidate documents of a batch: positives, then each negative role: (B * (1 + k), D).

    Row ``i`` is anchor ``i``'s positive, so the target of anchor ``i`` is column ``i``.
    """
    return torch.cat([embeddings["positive"]] + [embeddings[r] for r in negative_roles(embeddings)], dim=0)


def ranking_loss_sum(
    anchors: Tensor, candidates: Tensor, first_target: int, scale: float, similarity: SimilarityFn
) -> Tensor:
    """Summed cross-entropy of picking each anchor's own positive among all candidates.

    Args:
        anchors: (b, D), rows ``first_target .. first_target + b - 1`` of the batch's anchors.
        candidates: (N, D) from :func:`candidates_of`.
        first_target: index of the first anchor's positive in ``candidates``.
    Returns:
        Scalar: sum over the b rows (divide by the full batch size for the mean).
    """
    logits = similarity(anchors, candidates) * scale  # (b, N)
    targets = torch.arange(first_target, first_target + anchors.shape[0], device=anchors.device)
    return F.cross_entropy(at_least_fp32(logits), targets, reduction="sum")


class MultipleNegativesRankingLoss:
    """In-batch negatives softmax loss (InfoNCE): each anchor must pick its own positive.

    For anchor ``i`` the candidates are every positive of the batch plus every hard negative of the
    batch (``negative_1 .. negative_k`` of all rows); the loss is the mean cross-entropy of
    ``scale * sim(anchor_i, candidates)`` with target ``positive_i``.

    Requirements: roles ``anchor`` and ``positive``; any number of ``negative_i`` roles; no labels.
    Use a batch sampler that avoids duplicate texts, or duplicates become false negatives.

    Relations: ``CachedMultipleNegativesRankingLoss`` gives the same value and gradients with
    constant memory in the batch size; ``MultipleNegativesSymmetricRankingLoss`` adds the
    positive -> anchor direction; wrap in ``MatryoshkaLoss`` to train truncatable embeddings.

    Args:
        scale: multiplies the similarities (inverse temperature; 20 = temperature 0.05).
        similarity_fct: "cos_sim" (default), "dot_score", "euclidean_sim", "manhattan_sim" or a callable
            (N, D), (M, D) -> (N, M). With dot products use a small scale such as 1.

    >>> import torch
    >>> loss = MultipleNegativesRankingLoss()
    >>> e = torch.eye(2)
    >>> round(loss({"anchor": e, "positive": e}, None).item(), 6)  # exp(-20) ~ 2e-9
    0.0
    """

    name: ClassVar[str] = "MultipleNegativesRankingLoss"
    required_roles: ClassVar[tuple[str, ...]] = ("anchor", "positive")
    max_negatives: ClassVar[int | None] = None
    label: ClassVar[LabelSpec | None] = None
    citation: ClassVar[str] = CITATION_INFONCE

    def __init__(self, scale: float = 20.0, similarity_fct: str | SimilarityFn = "cos_sim") -> None:
        check_positive(scale, param="scale", loss=self.name)
        self.scale = scale
        self.similarity, self.similarity_name = resolve_similarity(
            similarity_fct, pairwise=False, loss=self.name
        )

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None = None) -> Tensor:
        """``embeddings``: role -> (B, D). Returns the scalar mean loss; ``labels`` is ignored."""
        negatives = negative_roles(embeddings)
        check_roles(self, embeddings, len(negatives))
        batch = check_batch(embeddings, ["anchor", "positive", *negatives], self.name)
        total = ranking_loss_sum(
            embeddings["anchor"], candidates_of(embeddings), 0, self.scale, self.similarity
        )
        return total / batch

    def config(self) -> dict[str, Any]:
        return {"scale": self.scale, "similarity_fct": self.similarity_name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"


class MultipleNegativesSymmetricRankingLoss(MultipleNegativesRankingLoss):
    """MultipleNegativesRankingLoss in both directions, averaged.

    Forward term: as ``MultipleNegativesRankingLoss`` (anchor -> positives and hard negatives).
    Backward term: for positive ``i``, pick anchor ``i`` among all anchors of the batch, with
    logits ``scale * sim(anchors, positives).T``. The loss is (forward + backward) / 2.

    Requirements: roles ``anchor`` and ``positive``; ``negative_i`` roles only enter the forward
    term; no labels.

    Relations: equals sentence-transformers' ``MultipleNegativesRankingLoss`` with
    ``directions=("query_to_doc", "doc_to_query")`` and ``partition_mode="per_direction"``. Useful when
    both sides are queries of each other (e.g. question <-> answer search in both directions).
    """

    name: ClassVar[str] = "MultipleNegativesSymmetricRankingLoss"
    citation: ClassVar[str] = CITATION_SYMMETRIC

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None = None) -> Tensor:
        """``embeddings``: role -> (B, D). Returns the scalar mean of both directions."""
        forward = super().__call__(embeddings, labels)
        anchors, positives = embeddings["anchor"], embeddings["positive"]
        logits = self.similarity(anchors, positives).transpose(0, 1) * self.scale  # (B positives, B anchors)
        targets = torch.arange(anchors.shape[0], device=anchors.device)
        backward = F.cross_entropy(at_least_fp32(logits), targets)
        return (forward + backward) / 2
