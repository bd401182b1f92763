"""Regress the cosine similarity of a pair onto its gold score."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import EmbtuneError
from .base import LabelSpec, check_roles, negative_roles
from .checks import check_batch, check_labels, parse_choice

RegressionLoss = Callable[[Tensor, Tensor], Tensor]

# Short names -> torch loss classes; "torch.nn.modules.loss.MSELoss" style names are also accepted.
LOSS_FUNCTIONS: dict[str, type[nn.Module]] = {
    "mse": nn.MSELoss,
    "l1": nn.L1Loss,
    "huber": nn.HuberLoss,
    "smooth_l1": nn.SmoothL1Loss,
}
_BY_CLASS_NAME = {cls.__name__.lower(): key for key, cls in LOSS_FUNCTIONS.items()}


def _full_name(obj: object) -> str:
    """``module.Class`` of an object (or ``module.function``), as sentence-transformers cards show it."""
    target = obj if callable(obj) and not isinstance(obj, nn.Module) else type(obj)
    name = getattr(target, "__qualname__", getattr(target, "__name__", type(target).__name__))
    module = getattr(target, "__module__", None)
    return name if module in (None, "builtins") else f"{module}.{name}"


def _resolve_loss_fct(value: str | RegressionLoss, loss: str) -> RegressionLoss:
    if callable(value):
        return value
    if isinstance(value, str):
        short = value.rsplit(".", 1)[-1].lower()  # "torch.nn.modules.loss.MSELoss" -> "mseloss"
        value = _BY_CLASS_NAME.get(short, value)
    _, cls = parse_choice(value, LOSS_FUNCTIONS, enum="", param="loss_fct", loss=loss)
    return cls()


class CosineSimilarityLoss:
    """``loss_fct(cos(anchor_i, positive_i), label_i)``: MSE between cosine similarity and gold score.

    Requirements: roles ``anchor`` and ``positive`` (the two texts of a pair); no negatives; a float
    label per pair in [-1, 1], the range of the cosine (rescale 0-5 STS scores to 0-1 first).

    Relations: ``CoSENTLoss`` trains on the same data, only needs the labels' order and usually
    gives a stronger signal; ``ContrastiveLoss`` is the binary-label counterpart.

    Args:
        loss_fct: "mse" (default), "l1", "huber", "smooth_l1", the class name a model card shows
            ("torch.nn.modules.loss.MSELoss"), or any callable (scores (B,), labels (B,)) -> scalar.
    """

    name: ClassVar[str] = "CosineSimilarityLoss"
    required_roles: ClassVar[tuple[str, ...]] = ("anchor", "positive")
    max_negatives: ClassVar[int | None] = 0
    label: ClassVar[LabelSpec | None] = LabelSpec("float", -1.0, 1.0)
    citation: ClassVar[str] = ""  # sentence-transformers cites no paper for this loss

    def __init__(self, loss_fct: str | RegressionLoss = "mse") -> None:
        try:
            self.loss_fct = _resolve_loss_fct(loss_fct, self.name)
        except EmbtuneError as err:
            raise EmbtuneError(f"{err}, or pass a callable (scores, labels) -> loss") from None

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None) -> Tensor:
        """``embeddings``: anchor, positive -> (B, D); ``labels``: (B,) in [-1, 1]. Returns a scalar."""
        check_roles(self, embeddings, len(negative_roles(embeddings)))
        batch = check_batch(embeddings, ["anchor", "positive"], self.name)
        labels = check_labels(labels, batch, self.name, self.label.describe())
        scores = F.cosine_similarity(embeddings["anchor"], embeddings["positive"], dim=-1)  # (B,)
        return self.loss_fct(scores, labels.to(scores.dtype))

    def config(self) -> dict[str, Any]:
        return {"loss_fct": _full_name(self.loss_fct)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config()})"
