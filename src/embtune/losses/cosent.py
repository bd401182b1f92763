"""CoSENT: a ranking loss on the similarities of scored pairs."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from .base import LabelSpec, check_roles, negative_roles
from .checks import (
    SimilarityFn,
    at_least_fp32,
    check_batch,
    check_labels,
    check_positive,
    resolve_similarity,
)

CITATION = """@article{10531646,
    author={Huang, Xiang and Peng, Hao and Zou, Dongcheng and Liu, Zhiwei and Li, Jianxin and Liu, Kay and Wu, Jia and Su, Jianlin and Yu, Philip S.},
    journal={IEEE/ACM Transactions on Audio, Speech, and Language Processing},
    title={CoSENT: Consistent Sentence Embedding via Similarity Ranking},
    year={2024},
    doi={10.1109/TASLP.2024.3402087}
}"""


class CoSENTLoss:
    """Ranks the pairs of a batch by similarity in the order of their labels.

    With ``s_i = scale * sim(anchor_i, positive_i)``, the loss is
    ``log(1 + sum over (i, j) with label_i > label_j of exp(s_j - s_i))``: every pair whose gold score is
    higher must also get the higher similarity. Only the order of the labels matters, so any finite
    float scale works (0-1, 0-5, ...); ties contribute nothing.

    Requirements: roles ``anchor`` and ``positive`` (the two texts of a pair, the second need not be
    a true positive); no negatives; a float label per pair.

    Relations: usually a stronger signal than ``CosineSimilarityLoss`` on the same data (which regresses
    the cosine onto the label and so needs labels in [-1, 1]); AnglE is CoSENT with an angle similarity.

    Args:
        scale: inverse temperature applied to the similarities (20 as in the paper).
        similarity_fct: pairwise similarity: "pairwise_cos_sim" (default), "pairwise_dot_score", ...
            or a callable (N, D), (N, D) -> (N,).
    """

    name: ClassVar[str] = "CoSENTLoss"
    required_roles: ClassVar[tuple[str, ...]] = ("anchor", "positive")
    max_negatives: ClassVar[int | None] = 0
    label: ClassVar[LabelSpec | None] = LabelSpec("float")
    citation: ClassVar[str] = CITATION

    def __init__(self, scale: float = 20.0, similarity_fct: str | SimilarityFn = "pairwise_cos_sim") -> None:
        check_positive(scale, param="scale", loss=self.name)
        self.scale = scale
        self.similarity, self.similarity_name = resolve_similarity(
            similarity_fct, pairwise=True, loss=self.name
        )

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: anchor, positive -> (B, D); ``labels``: (B,) floats. Returns a scalar."""
        check_roles(self, embeddings, len(negative_roles(embeddings)))
        batch = check_batch(embeddings, ["anchor", "positive"], self.name)
        labels = check_labels(labels, batch, self.name, self.label.describe())
        scores = at_least_fp32(self.similarity(embeddings["anchor"], embeddings["positive"])) * self.scale
        # differences[i, j] = s_j - s_i, kept only where pair i should rank above pair j.
        differences = scores[None, :] - scores[:, None]  # (B, B)
        should_rank_higher = labels[:, None] > labels[None, :]
        differences = differences.masked_fill(~should_rank_higher, -torch.inf)
        # The leading 0 is the "1 +" inside the log; it also keeps the loss finite with no ordered pairs.
        return torch.logsumexp(torch.cat([scores.new_zeros(1), differences.flatten()]), dim=0)

    def config(self) -> dict[str, Any]:
        return {"scale": self.scale, "similarity_fct": self.similarity_name}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"
