"""Small Markdown helpers for model cards: padded tables, safe table cells, value formatting.

Table cells hold user data (sample texts, column names), so everything that could end a cell or open
markup is neutralised: ``|`` is escaped, newlines become ``<br>``, HTML and backticks become entities.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

MAX_SAMPLE_CHARS = (
    1000  # a sample text longer than this is cut and ends with "..." (as sentence-transformers)
)
MAX_LIST_ITEMS = 5  # list values show their first 5 items, then ", ...]"


def make_table(
    rows: Sequence[dict[str, Any]], align: str = "left", columns: Sequence[str] | None = None
) -> str:
    """Rows of {header: cell} -> a Markdown table with padded columns.

    Args:
        rows: one dict per row; a missing cell renders empty.
        align: "left" (``|:---|``) or "center" (``|:---:|``).
        columns: header order; default: keys in order of first appearance.
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    cells = [[str(row.get(col, "")) for col in columns] for row in rows]
    widths = [max([len(str(col)), 3, *(len(r[j]) for r in cells)]) for j, col in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        padded = [
            value.center(width) if align == "center" else value.ljust(width)
            for value, width in zip(values, widths, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    if align == "center":
        rule = "|" + "|".join(":" + "-" * w + ":" for w in widths) + "|"
    else:
        rule = "|" + "|".join(":" + "-" * (w + 1) for w in widths) + "|"
    return "\n".join([line([str(c) for c in columns]), rule, *(line(r) for r in cells)])


def indent(text: str, prefix: str = "  ") -> str:
    """Indent every line (tables and code blocks nested under a ``*`` bullet)."""
    return "\n".join(prefix + line if line else line for line in text.split("\n"))


def escape_cell(text: str) -> str:
    """Make any text safe inside one Markdown table cell (no HTML, no line breaks, no cell separators)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = html.escape(text, quote=False)
    return text.replace("\n", "<br>").replace("|", "\\|").replace("`", "&#96;")


def sample_value(value: Any) -> str:
    """One sample value as shown in a samples table: truncated, escaped, wrapped in ``<code>``."""
    if isinstance(value, list) and len(value) > MAX_LIST_ITEMS:
        text = str(value[:MAX_LIST_ITEMS])[:-1] + ", ...]"
    else:
        text = str(value)
    if len(text) > MAX_SAMPLE_CHARS:
        text = text[:MAX_SAMPLE_CHARS] + "..."
    return f"<code>{escape_cell(text)}</code>"


def format_number(value: Any) -> str:
    """Floats rounded to 4 decimals (as training logs show them); anything else as ``str``."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return str(value) if math.isnan(value) or math.isinf(value) else str(round(value, 4))
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return format_number(value.item())
        except (TypeError, ValueError):
            pass
    return escape_cell(str(value))


def format_delta(value: float) -> str:
    """A signed change, e.g. ``+0.0123``."""
    return f"{value:+.4f}"


def join_names(names: Sequence[str]) -> str:
    """``a``; ``a and b``; ``a, b, and c`` (the seed cards' column lists)."""
    names = list(names)
    if len(names) <= 1:
        return "".join(names)
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return ", ".join(names[:-1]) + f", and {names[-1]}"


def code_block(text: str, lang: str = "") -> str:
    """A fenced code block; the fence is longer than any backtick run inside ``text``."""
    longest, run = 0, 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def note(text: str) -> str:
    """An italic one-line note (what a section says when it cannot be computed)."""
    return f"*{escape_cell(text)}*"
