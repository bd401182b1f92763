"""GISTEmbed: in-batch negatives where a guide model masks the false negatives, and its GradCache variant.

The guide is frozen, so its embeddings of every text are computed once before training and cached
(``embtune.teachers``); they reach the loss as ``labels`` of shape (B, R, D_guide), one slice per text role
in data order (anchor, positive, negative_1, ...). The loss itself is math on embeddings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import EmbtuneError
from .base import LabelSpec, check_roles, negative_roles
from .cached import backward_through_replays, chunk_plan, embed_without_grad
from .checks import at_least_fp32, check_batch, check_positive, parse_choice
from .distill import _teacher_name, text_roles

CITATION = """@misc{solatorio2024gistembed,
    title={GISTEmbed: Guided In-sample Selection of Training Negatives for Text Embedding Fine-tuning},
    author={Aivin V. Solatorio},
    year={2024},
    eprint={2402.16829},
    archivePrefix={arXiv},
    primaryClass={cs.LG}
}"""

MARGIN_STRATEGIES = {"absolute": "absolute", "relative": "relative"}


def _cos(a: Tensor, b: Tensor) -> Tensor:
    """(n, D), (m, D) -> (n, m) cosine similarities."""
    return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(0, 1)


class GISTEmbedLoss:
    """In-batch negatives (InfoNCE over anchor->positive, anchor->anchor, positive->positive and
    anchor->negative similarities) where any in-batch candidate that the guide scores closer to the anchor
    than the anchor's own positive (minus a margin) is dropped as a likely false negative.

    ``margin_strategy='absolute'`` drops candidates with ``guide_sim > guide_sim(a, p) - margin``;
    ``'relative'`` drops those with ``guide_sim > guide_sim(a, p) * (1 - margin)`` (for positive scores).

    Requirements: roles ``anchor`` and ``positive``, any number of ``negative_i``; no label column: the
    ``guide`` model's embeddings are computed (once, cached) and passed as labels (B, R, D_guide).

    Relations: MultipleNegativesRankingLoss without the guide's masking (and without the anchor-anchor and
    positive-positive terms); CachedGISTEmbedLoss is the same loss for batches larger than memory.

    Args:
        guide: the guide model (folder, Hub id, ``bundled:...``, or an EmbeddingModel).
        temperature: logits are cosine / temperature (0.01, i.e. scale 100).
        margin_strategy: ``absolute`` or ``relative``.
        margin: how much closer than the positive a candidate may be before it is kept as a negative.
        contrast_anchors / contrast_positives: add the anchor-anchor / positive-positive similarities.
    """

    name: ClassVar[str] = "GISTEmbedLoss"
    required_roles: ClassVar[tuple[str, ...]] = ("anchor", "positive")
    max_negatives: ClassVar[int | None] = None
    label: ClassVar[LabelSpec | None] = None
    citation: ClassVar[str] = CITATION
    teacher_output: ClassVar[str] = "role_embeddings"

    def __init__(
        self,
        guide: Any,
        temperature: float = 0.01,
        margin_strategy: str = "absolute",
        margin: float = 0.0,
        contrast_anchors: bool = True,
        contrast_positives: bool = True,
    ) -> None:
        if guide is None or guide == "":
            raise EmbtuneError(f"{self.name} needs a guide model: set `guide: <model>` in the loss params")
        check_positive(temperature, param="temperature", loss=self.name)
        self.margin_strategy, _ = parse_choice(
            margin_strategy, MARGIN_STRATEGIES, enum="", param="margin_strategy", loss=self.name
        )
        if isinstance(margin, bool) or not isinstance(margin, (int, float)):
            raise EmbtuneError(f"{self.name}: margin must be a number, got {margin!r}")
        self.guide = guide
        self.teacher = guide  # what embtune.teachers computes the labels with
        self.temperature = temperature
        self.margin = float(margin)
        self.contrast_anchors = bool(contrast_anchors)
        self.contrast_positives = bool(contrast_positives)

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: role -> (B, D); ``labels``: (B, R, D_guide) guide embeddings. Returns a scalar."""
        roles = text_roles(embeddings)
        check_roles(self, embeddings, len(negative_roles(embeddings)))
        batch = check_batch(embeddings, roles, self.name)
        guide = self.guide_embeddings(labels, roles, batch)
        return self.loss_sum(embeddings, guide, 0, batch) / batch

    def guide_embeddings(self, labels: Tensor | None, roles: list[str], batch: int) -> dict[str, Tensor]:
        """Split (B, R, D_guide) labels into role -> (B, D_guide)."""
        if labels is None:
            raise EmbtuneError(
                f"{self.name} needs the guide's embeddings as labels (B, roles, dim); embtune.train computes "
                "them from `guide`. In Python, pass labels=torch.stack([guide.encode(texts) per role], dim=1)"
            )
        if labels.ndim != 3 or labels.shape[:2] != (batch, len(roles)):
            raise EmbtuneError(
                f"{self.name}: guide embeddings must have shape ({batch}, {len(roles)}, dim), got "
                f"{tuple(labels.shape)}"
            )
        return {role: labels[:, i].detach() for i, role in enumerate(roles)}

    def loss_sum(self, emb: dict[str, Tensor], guide: dict[str, Tensor], begin: int, end: int) -> Tensor:
        """Summed cross-entropy of anchor rows ``begin:end`` (divide by the batch size for the mean)."""
        anchors, guide_anchors = emb["anchor"][begin:end], guide["anchor"][begin:end]
        guide_ap = _cos(guide_anchors, guide["positive"])  # (b, B)
        rows = torch.arange(end - begin, device=guide_ap.device)
        guide_pos = guide_ap[rows, begin + rows].unsqueeze(1)  # (b, 1): the guide's score of the positive
        if self.margin_strategy == "absolute":
            threshold = guide_pos - self.margin
        else:
            threshold = guide_pos - guide_pos.abs() * self.margin

        def masked(student: Tensor, guided: Tensor, keep_positive: bool = False) -> Tensor:
            drop = guided > threshold
            if keep_positive:
                drop[rows, begin + rows] = False
            return student.masked_fill(drop, float("-inf"))

        blocks = [masked(_cos(anchors, emb["positive"]), guide_ap, keep_positive=True)]
        if self.contrast_anchors:
            blocks.append(masked(_cos(anchors, emb["anchor"]), _cos(guide_anchors, guide["anchor"])))
        if self.contrast_positives:
            positives, guide_positives = emb["positive"][begin:end], guide["positive"][begin:end]
            blocks.append(masked(_cos(positives, emb["positive"]), _cos(guide_positives, guide["positive"])))
        for role in negative_roles(emb):
            blocks.append(masked(_cos(anchors, emb[role]), _cos(guide_anchors, guide[role])))
        logits = at_least_fp32(torch.cat(blocks, dim=1)) / self.temperature
        targets = torch.arange(begin, end, device=logits.device)
        return F.cross_entropy(logits, targets, reduction="sum")

    def config(self) -> dict[str, Any]:
        return {
            "guide": _teacher_name(self.guide),
            "temperature": self.temperature,
            "margin_strategy": self.margin_strategy,
            "margin": self.margin,
            "contrast_anchors": self.contrast_anchors,
            "contrast_positives": self.contrast_positives,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"


Features = dict[str, Tensor]


class CachedGISTEmbedLoss(GISTEmbedLoss):
    """GISTEmbedLoss computed with GradCache: the same value and gradients, any batch size in the memory of
    ``mini_batch_size`` texts (see CachedMultipleNegativesRankingLoss for the three steps).

    Requirements and relations: as GISTEmbedLoss; it runs the model itself (``ModelLoss``), so the training
    loop calls :meth:`forward_backward`. The guide's embeddings are precomputed, so the guide costs nothing
    per step (sentence-transformers re-embeds with the guide every step).

    Args:
        mini_batch_size: texts per forward pass and anchor rows per loss chunk; the rest as GISTEmbedLoss.
    """

    name: ClassVar[str] = "CachedGISTEmbedLoss"

    def __init__(
        self,
        guide: Any,
        temperature: float = 0.01,
        mini_batch_size: int = 32,
        margin_strategy: str = "absolute",
        margin: float = 0.0,
        contrast_anchors: bool = True,
        contrast_positives: bool = True,
    ) -> None:
        super().__init__(guide, temperature, margin_strategy, margin, contrast_anchors, contrast_positives)
        if isinstance(mini_batch_size, bool) or not isinstance(mini_batch_size, int):
            raise EmbtuneError(f"{self.name}: mini_batch_size must be an integer > 0, got {mini_batch_size!r}")
        check_positive(mini_batch_size, param="mini_batch_size", loss=self.name)
        self.mini_batch_size = mini_batch_size

    def forward_backward(
        self,
        embed: Callable[[Features], Tensor],
        features: dict[str, Features],
        labels: Tensor | None,
        loss_scale: float = 1.0,
    ) -> Tensor:
        """Compute the loss, add its gradients (times ``loss_scale``) to ``.grad``; return it detached."""
        roles = text_roles(features)
        check_roles(self, features, len(roles) - 2)
        batch, ranges = chunk_plan(self.name, features, roles, self.mini_batch_size)
        guide = self.guide_embeddings(labels, roles, batch)

        # Step 1: embed without autograd, remembering the RNG state before each mini-batch.
        leaves, snapshots = embed_without_grad(features, roles, ranges, batch, embed, as_float=True)
        if not torch.is_grad_enabled():
            return (self.loss_sum(leaves, guide, 0, batch) / batch).detach()

        # Step 2: the loss by chunks of anchor rows; gradients land in the leaves.
        parts = []
        for begin, end in ranges:
            part = self.loss_sum(leaves, guide, begin, end) / batch
            (part * loss_scale).backward()
            parts.append(part.detach())

        # Step 3: re-embed with autograd under the same RNG state; push the cached gradients through.
        backward_through_replays(features, roles, ranges, batch, embed, leaves, snapshots)
        return torch.stack(parts).sum()

    def config(self) -> dict[str, Any]:
        base = super().config()
        return {"guide": base.pop("guide"), "temperature": base.pop("temperature"),
                "mini_batch_size": self.mini_batch_size, **base}
