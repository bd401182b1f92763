"""Texts to embed from a file (``embtune encode --input``), streamed in chunks: memory stays flat in the
input size, and no text longer than the model can read is ever held whole.

- ``.txt``: one text per line (blank lines skipped), read in 1 MB pieces, UTF-8 checked piece by piece.
- ``.csv/.tsv/.jsonl/.parquet``: one column, parsed once into a memory-mapped Arrow file in a temporary
  folder and sliced (``utf8_slice_codeunits``) before any text becomes a Python string.

``count_texts`` checks the whole input before the model is loaded; ``text_chunks`` then yields lists of at
most ``rows`` texts, each cut to ``max_chars`` characters.
"""

from __future__ import annotations

import codecs
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow.compute as pc

from ..errors import EmbtuneError
from ..utils.paths import input_path
from .sources import check_text_file

_PIECE = 1 << 20
_PROBE_CHARS = 1 << 12


def count_texts(path: str, column: str | None) -> int:
    """Check the input (exists, regular, UTF-8, the column, every text present and non-empty); count texts."""
    file = _checked(path, column)
    if file.suffix.lower() == ".txt":
        count = sum(1 for _ in _txt_lines(file, _PROBE_CHARS))
    else:
        with _table_column(file, column) as values:
            count = len(values)
    if not count:
        raise EmbtuneError(f"{file}: no texts found; the input file is empty")
    return count


def text_chunks(path: str, column: str | None, max_chars: int, rows: int = 16384) -> Iterator[list[str]]:
    """The texts of the input, in order, ``rows`` at a time, each cut to ``max_chars`` characters."""
    file = _checked(path, column)
    if file.suffix.lower() == ".txt":
        chunk: list[str] = []
        for text in _txt_lines(file, max_chars):
            chunk.append(text)
            if len(chunk) == rows:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
        return
    with _table_column(file, column) as values:
        for start in range(0, len(values), rows):
            part = values.slice(start, rows)
            yield pc.utf8_slice_codeunits(part, 0, max_chars).to_pylist()


def _checked(path: str, column: str | None) -> Path:
    file = input_path(path, "input file", key="--input", folder_ok=False)
    if not file.is_file():
        raise EmbtuneError(f"{file}: no such file; check the --input path")
    if file.suffix.lower() == ".txt" and column is not None:
        raise EmbtuneError(f"{file}: --column applies to table files, not .txt; drop --column")
    return file


def _txt_lines(file: Path, max_chars: int) -> Iterator[str]:
    """Non-blank lines, each cut to ``max_chars``; errors name the 1-based line.

    The file checks are ``data.sources``' (empty file, UTF-8, UTF-16), as for every other data file; the
    lines are then read in 1 MB pieces, so a 200 MB line costs 1 MB, and split as ``str.splitlines`` does.
    """
    check_text_file(file)
    with open(file, "rb") as handle:
        number = 0
        while piece := handle.readline(_PIECE):
            number += 1
            if number == 1:
                piece = piece.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark, as for tables
            decoder = codecs.getincrementaldecoder("utf-8")()
            kept: list[str] = []
            size = 0
            while True:
                ended = piece.endswith(b"\n")
                text = decoder.decode(piece, final=ended)  # valid: check_text_file read every byte
                if "\x00" in text:
                    raise EmbtuneError(
                        f"{file}: line {number} contains a NUL byte (\\x00); this is binary data or a UTF-16 "
                        "file: re-save it as UTF-8 text"
                    )
                if size < max_chars:
                    kept.append(text[: max_chars - size])
                    size += len(kept[-1])
                if ended or not (piece := handle.readline(_PIECE)):
                    break
            yield from (part for part in "".join(kept).splitlines() if part.strip())


@contextlib.contextmanager
def _table_column(file: Path, column: str | None):
    """One checked text column of a table file, memory-mapped from a temporary Arrow file."""
    from .sources import load_table
    from .validate import check_texts

    with tempfile.TemporaryDirectory(prefix="embtune-encode-") as tmp:
        table = load_table(file, cache_dir=tmp)
        if column is None:
            raise EmbtuneError(
                f"{file}: pass --column to say which column holds the texts; columns: {', '.join(table.column_names)}"
            )
        if column not in table.column_names:
            raise EmbtuneError(
                f"{file}: unknown column {column!r}; available columns: {', '.join(table.column_names)}"
            )
        values = table.data.table.column(column)
        check_texts(values, column=column, role="input", path=file)
        if not str(values.type).startswith(("string", "large_string")):
            raise EmbtuneError(
                f"{file}, column {column!r}: holds {values.type} values, not text; pass the column that holds the texts"
            )
        yield values
        del table, values
