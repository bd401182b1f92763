"""Markdown pieces for the card: escaping, padded tables, fenced code. Everything returns ``Markup`` (safe text).

User data (dataset, column, metric and evaluator names, sample texts) is escaped so it cannot end a table cell,
a heading line or open HTML: ``|`` becomes ``\\|``, newlines ``<br>``, ``<>&`` and backticks HTML entities.

>>> str(escape("a|b</details>"))
'a\\\\|b&lt;/details&gt;'
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup

MAX_SAMPLE_CHARS = 1000  # a sample text longer than this is cut and ends with "..." (as sentence-transformers)
MAX_LIST_ITEMS = 5  # list values show their first 5 items, then ", ...]"


def escape(value: Any) -> Markup:
    """``value`` as safe text for one Markdown line or table cell; ``Markup`` passes through unchanged."""
    if isinstance(value, Markup):
        return value
    text = str(value).replace("\r\n", "\n").replace("\r", "\n")
    text = html.escape(text, quote=False).replace("\n", "<br>").replace("|", "\\|").replace("`", "&#96;")
    return Markup(text)


def number(value: Any) -> Markup:
    """Floats rounded to 4 decimals (as the seed cards' tables); anything else as text."""
    if isinstance(value, float) and value == value and abs(value) != float("inf"):
        value = round(value, 4)
    return escape(value)


def bold(value: Any, on: bool = True) -> Markup:
    return Markup(f"**{escape(value)}**") if on else escape(value)


def table(header: Sequence[Any], rows: Sequence[Sequence[Any]], center: bool = False) -> Markup:
    """A Markdown table padded like sentence-transformers' cards (``|:---|`` or centred ``|:---:|``)."""
    cells = [[escape(c) for c in header], *([escape(c) for c in row] for row in rows)]
    widths = [max(3, *(len(r[j]) for r in cells)) for j in range(len(header))]

    def line(row: list[Markup]) -> str:
        padded = [c.center(w) if center else c.ljust(w) for c, w in zip(row, widths, strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(f":{'-' * w}:" if center else f":{'-' * (w + 1)}" for w in widths) + "|"
    return Markup("\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])]))


def sample_cell(value: Any) -> Markup:
    """One value of a samples table: long lists and texts cut, escaped, in ``<code>``."""
    if isinstance(value, list) and len(value) > MAX_LIST_ITEMS:
        text = str(value[:MAX_LIST_ITEMS])[:-1] + ", ...]"
    else:
        text = str(value)
    if len(text) > MAX_SAMPLE_CHARS:
        text = text[:MAX_SAMPLE_CHARS] + "..."
    return code(text)


def code(value: Any) -> Markup:
    """``<code>value</code>``, escaped."""
    return Markup(f"<code>{escape(value)}</code>")


def code_block(text: str, lang: str = "") -> Markup:
    """A fenced code block (raw text inside); the fence is longer than any backtick run in ``text``."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return Markup(f"{fence}{lang}\n{text}\n{fence}")


def indent(text: str, prefix: str = "  ") -> Markup:
    """Indent every non-empty line (a table or code block nested under a ``*`` bullet)."""
    return Markup("\n".join(prefix + line if line else line for line in str(text).split("\n")))


def join_names(names: Sequence[Markup]) -> Markup:
    """``a``; ``a and b``; ``a, b, and c`` (the seed cards' column lists)."""
    if len(names) <= 2:
        return Markup(" and ".join(names))
    return Markup(", ".join(names[:-1]) + f", and {names[-1]}")
