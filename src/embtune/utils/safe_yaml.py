"""YAML for recipes and overrides, bounded: size, alias count and expanded node count are checked before any
code walks the tree, so a "billion laughs" file (aliases of aliases) fails in milliseconds with one line.

Errors name the line and column, and say what YAML users trip on: tab indentation, and unquoted ``no`` /
``yes`` / ``on`` / ``off`` read as booleans (see ``bool_hint``).
"""

from __future__ import annotations

from typing import Any

import yaml

from ..errors import EmbtuneError

MAX_BYTES = 1 << 20  # a recipe is a few KB
MAX_ALIASES = 200  # anchors are reused a handful of times in a real recipe
MAX_NODES = 100_000  # values after expanding every alias
MAX_DEPTH = 32


class YamlSyntaxError(EmbtuneError):
    """The text is not valid YAML (as opposed to valid YAML that is too large)."""


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts alias uses while composing (before anything is expanded)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.aliases = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_ALIASES:
                mark = self.peek_event().start_mark
                raise EmbtuneError(
                    f"line {mark.line + 1}: more than {MAX_ALIASES} YAML aliases (*name); a recipe this "
                    "repetitive is likely an alias bomb: write the values out"
                )
        return super().compose_node(parent, index)


def load_yaml(text: str, what: str = "the recipe") -> Any:
    """Parse ``text`` with the bounds above; errors are EmbtuneError without the file name (callers add it)."""
    if len(text) > MAX_BYTES:
        raise EmbtuneError(f"{what} is {len(text) // 1024} KB; a recipe is at most {MAX_BYTES // 1024} KB of YAML")
    loader = None
    try:
        loader = _BoundedLoader(text)
        value = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(_describe(exc, text)) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise EmbtuneError(f"nested more than {MAX_DEPTH} levels deep; a recipe is a few levels of mappings") from None
    finally:
        if loader is not None:
            loader.dispose()
    check_size(value)
    return value


def _describe(exc: yaml.YAMLError, text: str) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc).splitlines()[0]
    if mark is None:
        return f"not valid YAML ({problem}); fix the syntax"
    lines = text.splitlines()
    line = lines[mark.line] if mark.line < len(lines) else ""
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    if "\t" in line[: len(line) - len(line.lstrip())] or "'\\t'" in problem:
        return f"{where}: the line is indented with a tab; YAML indents with spaces: replace the tab with spaces"
    return f"{where}: not valid YAML ({problem}): {line.strip()[:60]!r}; fix the syntax"


def check_size(value: Any) -> None:
    """Refuse trees whose alias-expanded size exceeds MAX_NODES, and self-referencing aliases."""
    sizes: dict[int, int] = {}
    total = _size(value, sizes, set(), 0)
    if total > MAX_NODES:
        raise EmbtuneError(
            f"expands to more than {MAX_NODES} values through YAML aliases; a recipe this large is likely "
            "an alias bomb: write the values out"
        )


def _size(node: Any, sizes: dict[int, int], active: set[int], depth: int) -> int:
    if not isinstance(node, dict | list):
        return 1
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in active:
        raise EmbtuneError("refers to itself (a YAML alias inside its own anchor); write the value out")
    if depth >= MAX_DEPTH:
        raise EmbtuneError(f"nested more than {MAX_DEPTH} levels deep; a recipe is a few levels of mappings")
    active.add(key)
    total = 1
    for child in node.values() if isinstance(node, dict) else node:
        total += _size(child, sizes, active, depth + 1)
        if total > MAX_NODES:
            break
    active.discard(key)
    sizes[key] = total
    return total


def bool_hint(key: str, value: Any) -> str:
    """For a boolean where text was expected: how to write the word YAML turned into true/false."""
    if not isinstance(value, bool):
        return ""
    leaf = key.rsplit(".", 1)[-1]
    word = "yes" if value else "no"
    return (
        f"; YAML reads unquoted yes/no/on/off/true/false as a boolean: quote the value, e.g. {leaf}: \"{word}\""
    )


__all__ = ["MAX_ALIASES", "MAX_BYTES", "MAX_NODES", "YamlSyntaxError", "bool_hint", "check_size", "load_yaml"]
