"""Options of the data report and the thresholds that stop training: defaults live here only."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import EmbtuneError


@dataclass
class DataChecks:
    """The data report run before ``embtune train`` (recipe key ``checks``) and by ``embtune check-data``.

    Everything is a warning unless a threshold below is set; the report always stops training when its
    result would be meaningless (every anchor equals its positive, a constant label, an empty column).

    Args:
        enabled: run the report before training.
        min_chars: texts shorter than this (after stripping) are reported as very short.
        near_duplicates: also look for near duplicates and near leakage (MinHash, needs ``embtune[data]``).
        near_threshold: Jaccard similarity of word 3-grams above which two texts are near duplicates.
        max_rows: check only the first rows of each file (None: all).
        stop_on_leakage: stop training when evaluation texts occur in the training data.
        max_duplicate_share / max_truncated_share / max_damaged_share: stop training when more than this
            share of rows are exact duplicates / of texts are truncated / of texts have encoding damage.
    """

    enabled: bool = True
    min_chars: int = 3
    near_duplicates: bool = True
    near_threshold: float = 0.9
    max_rows: int | None = 200_000
    stop_on_leakage: bool = False
    max_duplicate_share: float | None = None
    max_truncated_share: float | None = None
    max_damaged_share: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.near_threshold <= 1.0:
            raise EmbtuneError(f"checks.near_threshold must be in (0, 1], got {self.near_threshold}")
        for key in ("max_duplicate_share", "max_truncated_share", "max_damaged_share"):
            value = getattr(self, key)
            if value is not None and not 0.0 <= value <= 1.0:
                raise EmbtuneError(f"checks.{key} must be a share in [0, 1] or null, got {value}")
        if self.max_rows is not None and self.max_rows < 1:
            raise EmbtuneError(f"checks.max_rows must be >= 1 or null, got {self.max_rows}")
