"""What every loss declares: the roles it reads, the labels it accepts, its parameters and citation.

A loss is math on embeddings: ``loss(embeddings, labels) -> scalar``, where ``embeddings`` maps a role
name to a (B, D) tensor. Role names: ``anchor``, ``positive`` (for scored/labelled pairs: the second text
of the pair), and ``negative_1`` ... ``negative_k`` for hard negatives, in column order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol, runtime_checkable

from torch import Tensor

from ..roles import LabelSpec, check_roles, first_bad_label


@runtime_checkable
class Loss(Protocol):
    """Protocol every embtune loss follows.

    Class attributes:
        name: the sentence-transformers class name (model cards show it, e.g. ``loss:CoSENTLoss``).
        required_roles: text roles that must be present, e.g. ("anchor", "positive").
        max_negatives: how many ``negative_i`` roles it accepts (0: none, None: any number).
        label: a LabelSpec when the loss needs a label column, else None.
        citation: BibTeX for the model card ("" when there is none).
    """

    name: ClassVar[str]
    required_roles: ClassVar[tuple[str, ...]]
    max_negatives: ClassVar[int | None]
    label: ClassVar[LabelSpec | None]
    citation: ClassVar[str]

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None) -> Tensor: ...

    def config(self) -> dict[str, Any]:
        """Parameters as the model card shows them (sentence-transformers' names and values)."""
        ...


def negative_roles(embeddings: dict[str, Tensor]) -> list[str]:
    """The ``negative_i`` keys present, in order negative_1, negative_2, ..."""
    keys = [k for k in embeddings if k.startswith("negative_")]
    return sorted(keys, key=lambda k: int(k.split("_", 1)[1]))


@runtime_checkable
class ModelLoss(Loss, Protocol):
    """A loss that must run the model itself (GradCache-style), so the loop hands it the model.

    The loop checks ``isinstance(loss, ModelLoss)``: if true it calls ``forward_backward`` instead of
    embedding every role and calling ``loss(embeddings, labels).backward()``. ``__call__`` still works
    on ready-made embeddings (validation loss) and gives the same value.
    """

    def forward_backward(
        self,
        embed: Callable[[dict[str, Tensor]], Tensor],
        features: dict[str, dict[str, Tensor]],
        labels: Tensor | None,
        loss_scale: float = 1.0,
    ) -> Tensor:
        """Compute the loss and accumulate parameter gradients into ``.grad``; return the loss detached.

        Args:
            embed: the model as a function, tokenized batch -> (b, D) embeddings.
            features: role -> tokenized batch (input_ids, attention_mask, ...; batch dim 0).
            labels: (B,) labels or None.
            loss_scale: gradients are those of ``loss * loss_scale`` (e.g. 1 / grad_accum_steps).
        Returns:
            The unscaled loss value, a detached scalar.
        """
        ...


__all__ = ["LabelSpec", "Loss", "ModelLoss", "check_roles", "first_bad_label", "negative_roles"]
