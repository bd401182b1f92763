"""Per-text checks: empty, whitespace-only and very short texts, and encoding damage.

Encoding damage: mojibake (UTF-8 bytes decoded as Latin-1 / cp1252 / Mac Roman, e.g. "hÃ¥nden", "h√•nden",
"donâ€™t"), U+FFFD replacement characters, control characters and NUL. Mojibake is detected with ftfy (the
well-kept library for it, extra ``embtune[data]``) when installed, else with a table of the telltale
two-character sequences; ``repair`` fixes texts with ftfy, only on request.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

# Lead characters of a UTF-8 multi-byte sequence read as cp1252/Latin-1 (Ã, Â, â, Ð, Ñ ...) or Mac Roman
# (√, Œ, ¬), followed by a continuation-byte character. Only the fallback when ftfy is not installed.
_MOJIBAKE = re.compile(r"[ÃÂâÅÐÑØÙ][\u0080-\u00bf€‚ƒ„…†‡ˆ‰Š‹ŒŽ‘’“”•–—˜™š›œžŸ]|[√Œ¬][\u00a0-\u00ff•ßÆ∂ƒ†]")
_CONTROL_OK = {"\t", "\n", "\r"}


@dataclass
class TextFindings:
    """Row indices (0-based) per problem for one column."""

    empty: list[int] = field(default_factory=list)
    short: list[int] = field(default_factory=list)
    mojibake: list[int] = field(default_factory=list)
    replacement: list[int] = field(default_factory=list)
    control: list[int] = field(default_factory=list)
    nul: list[int] = field(default_factory=list)


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" and c not in _CONTROL_OK and c != "\x00" for c in text)


def _mojibake_detector():
    try:
        from ftfy.badness import is_bad
    except ImportError:
        return lambda text: _MOJIBAKE.search(text) is not None
    return lambda text: is_bad(text) or _MOJIBAKE.search(text) is not None


def check_texts(texts: Sequence[str], min_chars: int = 3) -> TextFindings:
    """Find empty / whitespace-only, shorter than ``min_chars`` (after stripping), and damaged texts."""
    found = TextFindings()
    bad = _mojibake_detector()
    for i, text in enumerate(texts):
        stripped = text.strip()
        if not stripped:
            found.empty.append(i)
            continue
        if len(stripped) < min_chars:
            found.short.append(i)
        if "\x00" in text:
            found.nul.append(i)
        if "\ufffd" in text:
            found.replacement.append(i)
        if _has_control(text):
            found.control.append(i)
        if not text.isascii() and bad(text):
            found.mojibake.append(i)
    return found


def repair(text: str) -> str:
    """``text`` with mojibake and control characters fixed by ftfy (needs ``embtune[data]``)."""
    try:
        import ftfy
    except ImportError:
        from ..errors import EmbtuneError

        raise EmbtuneError("repairing encoding damage needs ftfy: pip install 'embtune[data]'") from None
    # Fix the encoding only: keep quotes, ligatures, widths and line breaks as they are.
    return ftfy.fix_text(text.replace("\x00", ""), uncurl_quotes=False, fix_latin_ligatures=False,
                         fix_character_width=False, fix_line_breaks=False)
