"""Helpers for the model-card tests: a heading parser that understands code fences and HTML comments."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

SEEDS = Path(__file__).resolve().parents[2].parent / "shared" / "seeds"
HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")


def parse_headings(text: str, *, comments: bool = True) -> list[tuple[int, str]]:
    """(level, title) of every Markdown heading, in order.

    Skips the YAML front matter and fenced code blocks (``# Download from the Hub`` is a code comment).
    Headings inside ``<!-- ... -->`` blocks (the author-fill-in sections) count only when ``comments``.
    """
    lines = text.splitlines()
    start = 0
    if lines and lines[0].strip() == "---":
        start = next((i + 1 for i in range(1, len(lines)) if lines[i].strip() == "---"), len(lines))
    found: list[tuple[int, str]] = []
    in_code = in_comment = False
    for line in lines[start:]:
        stripped = line.strip()
        if stripped.startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        if not in_comment and stripped.startswith("<!--") and "-->" not in stripped:
            in_comment = True
            continue
        if in_comment and "-->" in stripped:
            in_comment = False
            continue
        match = HEADING.match(line)
        if match and (comments or not in_comment):
            found.append((len(match.group(1)), match.group(2)))
    return found


def read_seed(prefix: str) -> str:
    """The seed card whose file name starts with ``prefix`` (skips the test when seeds are absent)."""
    matches = sorted(SEEDS.glob(f"{prefix}_*.txt")) if SEEDS.is_dir() else []
    if not matches:
        pytest.skip(f"seed card {prefix} not found under {SEEDS}")
    return matches[0].read_text(encoding="utf-8", errors="replace")
