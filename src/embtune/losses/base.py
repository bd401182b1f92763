"""What every loss declares: the roles it reads, the labels it accepts, its parameters and citation.

A loss is math on embeddings: ``loss(embeddings, labels) -> scalar``, where ``embeddings`` maps a role
name to a (B, D) tensor. Role names: ``anchor``, ``positive`` (for scored/labelled pairs: the second text
of the pair), and ``negative_1`` ... ``negative_k`` for hard negatives, in column order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

from torch import Tensor


@dataclass(frozen=True)
class LabelSpec:
    """The labels a loss accepts. ``kind`` is 'float' (any finite value in [low, high]), 'binary' (0 or 1)
    or 'class' (integer class ids). ``low``/``high`` are inclusive bounds; None means unbounded."""

    kind: str
    low: float | None = None
    high: float | None = None

    def describe(self) -> str:
        if self.kind == "binary":
            return "0 or 1"
        if self.kind == "class":
            return "integer class ids"
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"finite floats in [{lo}, {hi}]"


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
