"""Turn a column's values into the texts the model reads: templates for dict records, and prompts.

- Plain string columns pass through unchanged.
- Dict (struct) columns, such as records with ``page_name``, ``section_title``, ``text`` and ``url``, are
  rendered with a ``str.format`` template, e.g. ``"{page_name} - {section_title}: {text}"``.
  Without a template a record renders as one ``key: value`` line per field whose value is a string,
  number or bool (fields that are null or nested are skipped), in the column's field order, joined by
  ``"\\n"``; e.g. ``{"title": "Cats", "text": "Cats purr."}`` → ``"title: Cats\\ntext: Cats purr."``.
- A prompt (prefix) is prepended after rendering, e.g. ``"query: "``.

Templates and prompts are given either as one string for every role, or per role as a dict:
``{"anchor": "query: ", "positive": "passage: "}``. In a dict, ``negative`` applies to every
``negative_i`` role; ``negative_2`` targets one of them.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from ..errors import EmbtuneError

PerRole = str | Mapping[str, str] | None


def for_role(value: PerRole, role: str) -> str | None:
    """The template/prompt that applies to ``role``: a plain string applies to all roles.

    >>> for_role({"anchor": "query: ", "negative": "passage: "}, "negative_2")
    'passage: '
    """
    if value is None or isinstance(value, str):
        return value
    if role in value:
        return value[role]
    if role.startswith("negative_"):
        return value.get("negative")
    return None


def check_per_role(value: PerRole, roles: list[str], what: str) -> None:
    """Raise EmbtuneError if a per-role dict names a role the dataset does not have (likely a typo)."""
    if value is None or isinstance(value, str):
        return
    if not isinstance(value, Mapping):
        raise EmbtuneError(
            f"{what}: expected a string or a role → string mapping, got {type(value).__name__}"
        )
    allowed = set(roles) | ({"negative"} if any(r.startswith("negative_") for r in roles) else set())
    for key, text in value.items():
        if key not in allowed:
            raise EmbtuneError(
                f"{what}: unknown role {key!r}; this dataset has roles {', '.join(sorted(allowed))}"
            )
        if not isinstance(text, str):
            raise EmbtuneError(f"{what}.{key}: expected a string, got {type(text).__name__}")


def template_keys(template: str, what: str = "template") -> list[str]:
    """The record keys a template reads, e.g. ``["page_name", "text"]`` for ``"{page_name}: {text}"``."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise EmbtuneError(
            f"{what} {template!r} is not a valid template ({exc}); write keys as {{key}}"
        ) from None
    keys = []
    for _, field_name, _, _ in parsed:
        if field_name is None:
            continue
        key = field_name.split(".", 1)[0].split("[", 1)[0]
        if not key or key.isdigit():
            raise EmbtuneError(
                f"{what} {template!r} has a positional field {{{field_name}}}; name the record key, e.g. {{text}}"
            )
        keys.append(key)
    return keys


def render_column(
    values: pa.Array | pa.ChunkedArray,
    *,
    column: str,
    template: str | None = None,
    prompt: str | None = None,
    path: object = None,
    first_row: int = 0,
) -> list[str]:
    """Render one column slice into texts (prompt included).

    Args:
        values: the column's values for rows ``first_row`` ... (0-based offset, for error messages).
        column: the column name (for error messages).
        template: ``str.format`` template for dict columns; None uses the default ``key: value`` lines.
        prompt: prefix added to every text, or None.
        path: the source file (for error messages).

    Raises:
        EmbtuneError: a template key missing from a record (names row, column and the available keys),
            a template on a plain-text column, or a column that is neither text nor records.
    """
    kind = column_kind(values.type)
    if kind == "string":
        if template is not None:
            raise EmbtuneError(
                f"{path}, column {column!r}: holds plain text, but a template was given for it; templates "
                "only apply to dict/record columns, so remove it (use a prompt to add a prefix)"
            )
        texts = values.to_pylist()
    elif kind == "dict":
        texts = _render_records(values, column, template, path, first_row)
    else:
        raise EmbtuneError(
            f"{path}, column {column!r}: holds {values.type} values, not text; map a text column to this role"
        )
    if prompt:
        return [prompt + text if text is not None else None for text in texts]  # None: caught by validation
    return texts


def column_kind(dtype: pa.DataType) -> str:
    """'string', 'dict', 'int', 'float', 'bool', 'list' or 'other': the type names model cards show."""
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype):
        return "string"
    if pa.types.is_struct(dtype):
        return "dict"
    if pa.types.is_integer(dtype):
        return "int"
    if pa.types.is_floating(dtype) or pa.types.is_decimal(dtype):
        return "float"
    if pa.types.is_boolean(dtype):
        return "bool"
    if pa.types.is_list(dtype) or pa.types.is_large_list(dtype) or pa.types.is_fixed_size_list(dtype):
        return "list"
    return "other"


def _render_records(
    values: pa.Array | pa.ChunkedArray, column: str, template: str | None, path: object, first_row: int
) -> list[str | None]:
    available = [values.type.field(i).name for i in range(values.type.num_fields)]
    keys = template_keys(template, f"{path}, column {column!r}: template") if template is not None else []
    for key in keys:
        if key not in available:
            raise EmbtuneError(
                f"{path}, data row {first_row + 1} (1-based), column {column!r}: the template reads {{{key}}}, "
                f"but the records have no key {key!r}; available keys: {', '.join(available)}"
            )
    texts: list[str | None] = []
    for offset, record in enumerate(values.to_pylist()):
        if record is None:
            texts.append(None)  # a missing record: validation names the row
        elif template is None:
            texts.append(_default_render(record))
        else:
            texts.append(_render_one(record, template, keys, column, path, first_row + offset, available))
    return texts


def _default_render(record: dict[str, Any]) -> str:
    lines = [
        f"{key}: {value}" for key, value in record.items() if isinstance(value, str | int | float | bool)
    ]
    return "\n".join(lines)


def _render_one(
    record: dict[str, Any],
    template: str,
    keys: list[str],
    column: str,
    path: object,
    row: int,
    available: list[str],
) -> str:
    for key in keys:
        if record.get(key) is None:
            present = ", ".join(k for k in available if record.get(k) is not None) or "none"
            raise EmbtuneError(
                f"{path}, data row {row + 1} (1-based), column {column!r}: the template reads {{{key}}}, but this "
                f"record has no value for {key!r}; keys with values: {present}. Fill it in or change the template"
            )
    try:
        return template.format_map(record)
    except (KeyError, IndexError, AttributeError, ValueError, TypeError) as exc:
        raise EmbtuneError(
            f"{path}, data row {row + 1} (1-based), column {column!r}: template {template!r} failed ({exc!r}); "
            f"available keys: {', '.join(available)}"
        ) from None
