"""Options of hard-negative mining: the one place their defaults live (CLI flags and recipes map onto it)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import EmbtuneError

OUTPUT_FORMATS = ("triplet", "n-tuple")


@dataclass
class MineOptions:
    """How to mine hard negatives for (anchor, positive) pairs.

    Names follow sentence-transformers' ``mine_hard_negatives`` where it has one.

    Args:
        model: the embedding model that ranks candidates (recipes: empty means the model being trained).
        num: negatives per (anchor, positive) pair (``num_negatives``).
        range_min / range_max: consider candidates ranked ``range_min`` .. ``range_max`` - 1 (0 = the most
            similar, positives not counted); range_max None: range_min + num (+ 10 x num when a score filter
            is set) + the largest number of positives of one anchor, as sentence-transformers does.
        margin: drop candidates scoring above ``positive_score - margin`` (``absolute_margin``).
        max_score_ratio: drop candidates scoring above ``max_score_ratio * positive_score`` (NV-Retriever's
            positive-aware filter, e.g. 0.95; equals sentence-transformers' ``relative_margin = 1 - ratio``).
        max_score / min_score: drop candidates scoring above / below these values.
        cross_encoder: a cross-encoder folder that rescores the candidates and positives before filtering.
        output_format: ``triplet`` (one row per negative) or ``n-tuple`` (negative_1 .. negative_num per row).
        scores: also write the scores (positive first), e.g. as labels for MarginMSELoss.
        skip_anchor_copies: drop candidates whose text equals the anchor's (a copy is no negative).
        query_prompt / corpus_prompt: prompts for anchors / candidates (e.g. "query: ", "passage: ").
        batch_size: texts per forward pass when embedding.
        use_faiss: None: faiss (exact inner product) when installed and the corpus has >= 100,000 texts.
    """

    model: str = ""
    num: int = 3
    range_min: int = 0
    range_max: int | None = None
    margin: float | None = None
    max_score_ratio: float | None = None
    max_score: float | None = None
    min_score: float | None = None
    cross_encoder: str | None = None
    output_format: str = "triplet"
    scores: bool = False
    skip_anchor_copies: bool = True
    query_prompt: str | None = None
    corpus_prompt: str | None = None
    batch_size: int = 64
    use_faiss: bool | None = None

    def __post_init__(self) -> None:
        if isinstance(self.num, bool) or not isinstance(self.num, int) or self.num < 1:
            raise EmbtuneError(f"mine.num must be an integer >= 1, got {self.num!r}")
        if self.range_min < 0:
            raise EmbtuneError(f"mine.range_min must be >= 0, got {self.range_min}")
        if self.range_max is not None and self.range_max - self.range_min < self.num:
            raise EmbtuneError(
                f"mine.range_max ({self.range_max}) - range_min ({self.range_min}) leaves fewer than num "
                f"({self.num}) candidates; raise range_max or lower num/range_min"
            )
        if self.output_format not in OUTPUT_FORMATS:
            raise EmbtuneError(f"mine.output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {self.output_format!r}")
        if self.max_score_ratio is not None and not 0 < self.max_score_ratio <= 1:
            raise EmbtuneError(f"mine.max_score_ratio must be in (0, 1], e.g. 0.95; got {self.max_score_ratio}")
        if self.batch_size < 1:
            raise EmbtuneError(f"mine.batch_size must be >= 1, got {self.batch_size}")

    @property
    def has_score_filter(self) -> bool:
        return any(v is not None for v in (self.margin, self.max_score_ratio, self.max_score, self.min_score))

    def resolved_range_max(self, max_positives: int) -> int:
        """range_max, or its default for ``max_positives`` positives per anchor (see the class docstring)."""
        if self.range_max is not None:
            return self.range_max
        extra = self.num * 10 if self.has_score_filter else self.num
        return self.range_min + extra + max_positives
