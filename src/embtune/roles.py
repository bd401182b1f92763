"""What a consumer of training data (a loss) requires of it: roles, hard negatives, labels.

Plain data shared by ``losses/`` (which declare it) and ``data/`` (which checks files against it), so that
neither imports the other: ``training/build.py`` turns a loss into a ``RoleRequirements`` and hands it to
``data.prepare_dataset``. Role names: ``anchor``, ``positive`` (for scored/labelled pairs: the second text of
the pair), ``negative_1`` ... ``negative_k`` for hard negatives in column order, and the optional label.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .errors import EmbtuneError


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
        if self.low is None and self.high is None:
            return "any finite float"
        if self.high is None:
            return f"finite floats >= {self.low:g}"
        if self.low is None:
            return f"finite floats <= {self.high:g}"
        return f"finite floats in [{self.low:g}, {self.high:g}]"


class NeedsRoles(Protocol):
    """Anything that says which roles and labels it reads: a RoleRequirements, or a loss."""

    @property
    def name(self) -> str: ...

    @property
    def required_roles(self) -> tuple[str, ...]: ...

    @property
    def max_negatives(self) -> int | None: ...

    @property
    def label(self) -> LabelSpec | None: ...


@dataclass(frozen=True)
class RoleRequirements:
    """What a loss reads, as plain data: its name (for messages), required roles, negatives and labels.

    Args:
        name: shown in error messages (``CoSENTLoss needs ...``).
        required_roles: text roles that must be mapped, e.g. ("anchor", "positive").
        max_negatives: how many ``negative_i`` roles are accepted (0: none, None: any number).
        label: the labels accepted, or None when the data must not have a label column.

    >>> RoleRequirements("MyLoss", ("anchor", "positive"), 0, LabelSpec("binary")).label.describe()
    '0 or 1'
    """

    name: str
    required_roles: tuple[str, ...]
    max_negatives: int | None = 0
    label: LabelSpec | None = None

    @classmethod
    def of(cls, consumer: NeedsRoles) -> RoleRequirements:
        """The requirements of ``consumer`` (a loss, or anything with the same four attributes)."""
        return cls(consumer.name, tuple(consumer.required_roles), consumer.max_negatives, consumer.label)


def check_roles(
    loss: NeedsRoles, roles_present: Iterable[str], n_negatives: int, has_label: bool | None = None
) -> None:
    """Raise EmbtuneError unless the data provides what ``loss`` reads.

    Args:
        loss: a RoleRequirements, or any object with the same attributes (every embtune loss).
        roles_present: the role names the data maps (``anchor``, ``positive``, ``negative_1`` ...).
        n_negatives: how many ``negative_i`` roles the data has.
        has_label: whether the data has a label column; None skips the label check.
    """
    present = set(roles_present) | {f"negative_{i}" for i in range(1, n_negatives + 1)}
    missing = [role for role in loss.required_roles if role not in present]
    if missing:
        example = ", ".join(f"{role}: <column>" for role in missing)
        raise EmbtuneError(
            f"{loss.name} needs the role(s) {', '.join(missing)}, but the data only has "
            f"{', '.join(sorted(present)) or 'none'}; map a column to each in datasets[].columns ({example})"
        )
    limit = loss.max_negatives
    if limit is not None and n_negatives > limit:
        if limit == 0:
            fix = "remove the negative columns from datasets[].columns, or use a loss that takes hard negatives (mnrl)"
        else:
            fix = f"keep at most {limit} negative column(s) in datasets[].columns"
        raise EmbtuneError(f"{loss.name} accepts {limit} hard-negative role(s) but got {n_negatives}; {fix}")
    if has_label is None:
        return
    if loss.label is not None and not has_label:
        raise EmbtuneError(
            f"{loss.name} needs a label column ({loss.label.describe()}); set `label: <column>` in datasets[].columns"
        )
    if loss.label is None and has_label:
        raise EmbtuneError(
            f"{loss.name} does not use labels, but datasets[].columns maps a label column; remove `label`, or pick "
            "a loss that reads labels (cosent, cosine_similarity, contrastive, online_contrastive)"
        )


def first_bad_label(spec: LabelSpec, labels: np.ndarray) -> tuple[int, str] | None:
    """The first row whose label ``spec`` rejects, as (row index, reason); None when all are fine.

    Rejects values that are not numbers, NaN/inf, values outside [low, high], anything but 0/1 for
    'binary' and non-integers for 'class'. Multi-value rows (2-D arrays) are bad if any value is.

    >>> first_bad_label(LabelSpec("binary"), np.array([1, 0, 0.5]))
    (2, 'label 0.5 is not 0 or 1')
    """
    arr = np.asarray(labels)
    if arr.size == 0:
        return None
    rows = arr.reshape(len(arr), -1) if arr.ndim > 0 else arr.reshape(1, 1)
    values, not_numbers = _as_floats(rows)
    checks: list[tuple[np.ndarray, str]] = [(np.isfinite(values), "is not a finite number")]
    if spec.kind == "binary":
        checks.append(((values == 0) | (values == 1), "is not 0 or 1"))
    if spec.kind == "class":
        checks.append((values == np.round(values), "is not an integer class id"))
    if spec.low is not None or spec.high is not None:
        low = -np.inf if spec.low is None else spec.low
        high = np.inf if spec.high is None else spec.high
        bounds = f"[{low:g}, {high:g}]"
        checks.append(((values >= low) & (values <= high), f"is outside {bounds}"))
    row_ok = np.logical_and.reduce([ok.all(axis=1) for ok, _ in checks])
    bad_rows = np.flatnonzero(~row_ok)
    if not bad_rows.size:
        return None
    row = int(bad_rows[0])
    if row in not_numbers:
        return row, not_numbers[row]
    for ok, reason in checks:  # the first check this row fails names the reason
        if not ok[row].all():
            value = values[row][~ok[row]][0]
            return row, f"label {value:g} {reason}"
    return None  # unreachable: the row failed some check


def _as_floats(rows: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """(N, K) labels as float64; entries that are no number become NaN, their row -> reason."""
    if rows.dtype.kind in "biuf":
        return rows.astype(np.float64), {}
    values = np.full(rows.shape, np.nan)
    reasons: dict[int, str] = {}
    for (i, j), value in np.ndenumerate(rows):
        if value is None:
            reasons.setdefault(i, "label is missing (None)")
            continue
        try:
            values[i, j] = float(value)
        except (TypeError, ValueError):
            reasons.setdefault(i, f"label {value!r} is not a number")
    return values, reasons
