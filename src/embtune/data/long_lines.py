"""Very long lines in data files: pyarrow parses in blocks (1 MB by default) and a row longer than a block
fails with "straddling object". We measure the longest line (streaming, constant memory) and re-read with a
block that holds it, up to ``MAX_LINE_BYTES``; a longer line is a one-line error naming it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EmbtuneError

MAX_LINE_BYTES = 64 << 20  # texts are cut to max_seq_length tokens anyway: no real row needs more
_PIECE = 1 << 20


def is_straddle(exc: BaseException) -> bool:
    """Whether a pyarrow error means a row did not fit in one parse block."""
    return "straddl" in str(exc)


def longest_line(path: Path) -> tuple[int, int]:
    """(1-based line number, length in bytes) of the longest line, read in 1 MB pieces."""
    best_line, best_len, line, length = 1, 0, 1, 0
    with open(path, "rb") as handle:
        while piece := handle.readline(_PIECE):
            length += len(piece)
            if piece.endswith(b"\n"):
                if length > best_len:
                    best_line, best_len = line, length
                line, length = line + 1, 0
    if length > best_len:
        best_line, best_len = line, length
    return best_line, best_len


def block_size_for(path: Path, current: int | None) -> int:
    """A parse block size that holds the longest line of ``path`` (larger than ``current``).

    Raises:
        EmbtuneError: the longest line exceeds MAX_LINE_BYTES (names the line and its size).
    """
    line, length = longest_line(path)
    if length > MAX_LINE_BYTES:
        raise EmbtuneError(
            f"{path}: line {line} is {length / 2**20:.0f} MB long; embtune reads rows of up to "
            f"{MAX_LINE_BYTES >> 20} MB: shorten that text (only the first max_seq_length tokens are used) "
            "or split the row"
        )
    size = 1 << 20
    while size < 2 * length + 4096:
        size *= 2
    if current is not None and size <= current:
        size = current * 2
    if size > 2 * MAX_LINE_BYTES:
        raise EmbtuneError(f"{path}: line {line}: a row spans more than {MAX_LINE_BYTES >> 20} MB; shorten it")
    return size
