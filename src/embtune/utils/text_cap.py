"""Cap the characters handed to a tokenizer: texts are cut to ``max_seq_length`` tokens anyway, and a
tokenizer given a 200 MB string first builds every token of it (gigabytes). ``CHARS_PER_TOKEN`` characters
per token is far more than any tokenizer needs to reach the limit (WordPiece/BPE tokens span at least one
character), so the kept prefix always yields the same ``max_seq_length`` tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

CHARS_PER_TOKEN = 64


def char_limit(max_seq_length: int) -> int:
    """Characters kept per text for a model that reads ``max_seq_length`` tokens."""
    return max(1024, CHARS_PER_TOKEN * int(max_seq_length))


def cap_texts(texts: Sequence[str], max_seq_length: int) -> list[str]:
    """``texts`` with each one cut to ``char_limit(max_seq_length)`` characters (short texts untouched)."""
    limit = char_limit(max_seq_length)
    return [t if len(t) <= limit else t[:limit] for t in texts]


__all__ = ["CHARS_PER_TOKEN", "cap_texts", "char_limit"]
