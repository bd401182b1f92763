"""Which column plays which role: explicit, never inferred from column order or magic names.

Role names follow ``embtune.roles``: ``anchor``, ``positive``, ``negative_1`` ... ``negative_k``
(in the order the negatives are listed), and the optional ``label``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import EmbtuneError
from ..roles import NeedsRoles, check_roles


@dataclass(frozen=True)
class ColumnRoles:
    """Maps roles to column names, e.g. ``ColumnRoles("question", "answer", label="score")``.

    Args:
        anchor: the column of the first text (queries, first sentence of a pair).
        positive: the column of the second text (the matching passage, or the other side of a scored pair).
        negatives: hard-negative columns, in order; they become roles negative_1, negative_2, ...
        label: the column of labels/scores, or None for losses that take no labels.
    """

    anchor: str
    positive: str | None = None
    negatives: list[str] = field(default_factory=list)
    label: str | None = None

    def __post_init__(self) -> None:
        # copy, so the caller mutating its list later cannot change roles that were already checked
        object.__setattr__(self, "negatives", list(self.negatives))
        for role, column in [("anchor", self.anchor), ("positive", self.positive), ("label", self.label)]:
            if column is not None and (not isinstance(column, str) or not column):
                raise EmbtuneError(f"datasets[].columns.{role}: expected a column name, got {column!r}")
        for column in self.negatives:
            if not isinstance(column, str) or not column:
                raise EmbtuneError(f"datasets[].columns.negatives: expected a list of column names, got {column!r}")

    @property
    def text_roles(self) -> dict[str, str]:
        """Role → column for every text role, in order: anchor, positive, negative_1..k."""
        roles = {"anchor": self.anchor}
        if self.positive is not None:
            roles["positive"] = self.positive
        roles.update({f"negative_{i}": column for i, column in enumerate(self.negatives, start=1)})
        return roles

    @classmethod
    def from_dict(cls, mapping: dict[str, Any]) -> ColumnRoles:
        """Build from a config mapping such as ``{"anchor": "q", "positive": "a", "negatives": ["n"]}``."""
        known = {"anchor", "positive", "negatives", "label"}
        unknown = sorted(set(mapping) - known)
        if unknown:
            hint = (
                " (list hard negatives under `negatives: [...]`)" if any("neg" in k for k in unknown) else ""
            )
            raise EmbtuneError(
                f"datasets[].columns: unknown role(s) {', '.join(unknown)}; use {', '.join(sorted(known))}{hint}"
            )
        if "anchor" not in mapping:
            raise EmbtuneError("datasets[].columns: `anchor: <column>` is required")
        negatives = mapping.get("negatives") or []
        if isinstance(negatives, str):
            negatives = [negatives]
        return cls(mapping["anchor"], mapping.get("positive"), list(negatives), mapping.get("label"))


def check_columns(roles: ColumnRoles, available: list[str], path: object = None) -> None:
    """Raise EmbtuneError unless every mapped column exists and no column plays two roles.

    The message lists the available columns, so a typo is easy to spot.
    """
    prefix = f"{path}: " if path is not None else ""
    mapped = dict(roles.text_roles)
    if roles.label is not None:
        mapped["label"] = roles.label
    missing = [f"{role}: {column!r}" for role, column in mapped.items() if column not in available]
    if missing:
        raise EmbtuneError(
            f"{prefix}no column for {', '.join(missing)}; available columns: {', '.join(available)}. "
            "Fix datasets[].columns"
        )
    seen: dict[str, str] = {}
    for role, column in mapped.items():
        if column in seen:
            raise EmbtuneError(
                f"{prefix}column {column!r} is mapped to both {seen[column]} and {role}; give each role its "
                "own column"
            )
        seen[column] = role


def check_roles_for(roles: ColumnRoles, needs: NeedsRoles, path: object = None) -> None:
    """Raise EmbtuneError unless ``roles`` provides what ``needs`` (a loss's RoleRequirements) asks for.

    Also rejects a ``positive`` column the loss never reads, which would be silently ignored otherwise.
    ``path`` (the data file) starts the message, so the user knows which dataset of a recipe is meant.
    """
    prefix = f"{path}: " if path is not None else ""
    try:
        check_roles(needs, roles.text_roles, len(roles.negatives), has_label=roles.label is not None)
    except EmbtuneError as exc:
        raise EmbtuneError(f"{prefix}{exc}") from None
    if roles.positive is not None and "positive" not in needs.required_roles:
        raise EmbtuneError(
            f"{prefix}{needs.name} reads only {', '.join(needs.required_roles)}, but datasets[].columns maps positive: "
            f"{roles.positive!r}; remove it or pick a loss that uses pairs"
        )
