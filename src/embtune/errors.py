"""embtune's own error type: one line that names the problem, where it is, and how to fix it."""

from __future__ import annotations


class EmbtuneError(ValueError):
    """A user-facing error. The CLI prints its message on one line and exits with code 2.

    Write messages as: what is wrong, where (file, row, column), and the fix.
    """


def where(path: object = None, row: int | None = None, column: str | None = None) -> str:
    """Format a location prefix such as ``data.csv, row 12, column 'anchor': `` (empty parts left out)."""
    parts = []
    if path is not None:
        parts.append(str(path))
    if row is not None:
        parts.append(f"row {row}")
    if column is not None:
        parts.append(f"column {column!r}")
    return (", ".join(parts) + ": ") if parts else ""
