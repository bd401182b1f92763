"""Read a table (or a plain text file) from disk: the one module that reads data files.

``embtune train``, ``embtune eval`` and ``embtune encode`` all read through here, so the same file gets the
same answer (and the same error) from every command.

Supported: CSV (``.csv``), TSV (``.tsv``/``.tab``), JSON lines (``.jsonl``/``.ndjson``, and ``.json`` holding
one object per line), Parquet (``.parquet``/``.pq``) and folders written by ``datasets``'
``save_to_disk`` (a saved ``DatasetDict`` needs a split: ``path:split`` or ``split=``).

Files are parsed by pyarrow in streaming blocks and written once to an Arrow file under ``cache_dir``;
the returned ``datasets.Dataset`` memory-maps that file, so tables larger than RAM work and the second load
of an unchanged file is just an ``mmap``. Every parse failure becomes a one-line ``EmbtuneError`` that
names the file, the line or column, and the fix.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from ..errors import EmbtuneError
from ..utils.atomic import atomic_file
from ..utils.paths import expand, input_path
from .long_lines import block_size_for, is_straddle

FORMATS = ("csv", "tsv", "jsonl", "parquet", "disk")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_CHUNK = 8 << 20  # bytes read at a time by the UTF-8 scan and the fingerprint
_TABLE_CACHE_VERSION = "1"


def load_table(
    path: str | os.PathLike[str],
    fmt: str | None = None,
    *,
    split: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    text_columns: Sequence[str] = (),
) -> datasets.Dataset:
    """Load a table file (or a saved ``datasets`` folder) as an Arrow-backed ``datasets.Dataset``.

    Args:
        path: the file or folder. For a saved ``DatasetDict`` append the split: ``data/qa:train``.
        fmt: one of ``csv``, ``tsv``, ``jsonl``, ``parquet``, ``disk``; None infers it from the extension
            (a folder is ``disk``).
        split: the split of a saved ``DatasetDict`` (alternative to the ``path:split`` suffix).
        cache_dir: where the parsed Arrow file is kept (``<cache_dir>/tables/``) and memory-mapped from;
            an unchanged file is not parsed again. None parses into memory (fine for small files; pass a
            cache dir for large ones). Nothing is ever written to ``~/.cache``.
        text_columns: columns to read as text whatever they look like (ids such as ``007`` in a CSV stay
            ``"007"``; numbers in JSON become their text).

    Returns:
        The table; columns keep their types (strings, numbers, structs for JSON objects).

    Raises:
        EmbtuneError: missing/empty file, header only, likely wrong delimiter, bytes that are not UTF-8,
            a row whose field count differs from the header, malformed JSON, unknown format.
    """
    from .shards import load_shards, shard_files  # a folder or glob of shards: each file read as below

    files = shard_files(path) if split is None else None
    if files is not None:
        return load_shards(path, files, fmt, cache_dir, tuple(text_columns))
    path, split = split_path(path, split)
    path = input_path(path, "data file")  # FIFO, device, unreadable, symlink loop: one line, never a hang
    if not path.exists():
        raise EmbtuneError(f"{path}: file not found; check the path (relative paths start at {Path.cwd()})")
    fmt = _resolve_format(path, fmt)
    if fmt == "disk":
        return _load_saved(path, split)
    if split is not None:
        raise EmbtuneError(f"{path}: a split ({split!r}) only applies to folders saved with save_to_disk")
    if path.is_dir():
        raise EmbtuneError(f"{path}: is a folder; point to a file, or set format: disk for a saved dataset")
    _check_not_empty(path)
    if fmt in ("csv", "tsv", "jsonl"):
        _check_utf8(path)
    if fmt in ("csv", "tsv"):
        _check_delimiter(path, fmt)

    as_text = tuple(text_columns)
    if cache_dir is None:
        table = _parse(path, fmt, None, as_text)  # small files only: held in memory
    else:
        table = _cached_arrow(path, fmt, Path(cache_dir), as_text)
    try:
        if isinstance(table, Path):
            dataset = datasets.Dataset.from_file(str(table), in_memory=False)
        else:
            dataset = datasets.Dataset(table)
    except Exception as exc:  # datasets' own type checks: still one clear line, never a traceback
        raise EmbtuneError(
            f"{path}: cannot use this table ({_first_line(exc)}); check the column names/types"
        ) from None
    _check_table(path, fmt, dataset)
    if fmt in ("jsonl", "parquet") and as_text:
        dataset = _as_text(path, dataset, as_text)
    return dataset


def _as_text(path: Path, dataset: datasets.Dataset, columns: tuple[str, ...]) -> datasets.Dataset:
    """Cast ``columns`` (those present) to strings; CSV/TSV read them as text from the start."""
    table = dataset.data.table
    for name in columns:
        if name in table.column_names and not pa.types.is_string(table.schema.field(name).type):
            try:
                column = table.column(name).cast(pa.string())
            except pa.ArrowException:
                raise EmbtuneError(f"{path}: column {name!r} must hold text or numbers; fix the values") from None
            table = table.set_column(table.schema.get_field_index(name), name, column)
    return datasets.Dataset(table)


def stream_batches(dataset: datasets.Dataset, max_rows: int | None = None) -> Iterator[pa.RecordBatch]:
    """The record batches of ``dataset`` (its first ``max_rows`` rows), for one pass over a large table.

    A table ``load_table`` parsed into the cache is read back from its Arrow files with ordinary reads,
    one batch in memory at a time: through the memory map every page a pass touches would stay counted in
    the process's resident memory (the whole table, after a full pass). Any other table is sliced in memory.
    """
    limit = dataset.num_rows if max_rows is None else min(max_rows, dataset.num_rows)
    files = [entry["filename"] for entry in dataset.cache_files]
    file_backed = bool(files) and dataset._indices is None  # noqa: SLF001 - no row selection on top of the files
    if file_backed:
        counts = [pa.ipc.open_stream(pa.memory_map(f)).read_all().num_rows for f in files]  # metadata only
        file_backed = sum(counts) == dataset.num_rows
    if not file_backed:
        yield from dataset.data.table.slice(0, limit).to_batches()
        return
    left = limit
    names = dataset.column_names
    for name in files:
        with pa.OSFile(name) as source:
            for batch in pa.ipc.open_stream(source):
                if left <= 0:
                    return
                batch = batch.slice(0, left) if batch.num_rows > left else batch
                left -= batch.num_rows
                yield batch.select(names)


def load_lines(path: str | os.PathLike[str]) -> list[str]:
    """The non-blank lines of a plain text file (one text per line), with ``load_table``'s file checks.

    A UTF-8 byte-order mark is dropped, as for tables; an empty file and bytes that are not UTF-8 give the
    same one-line errors as a CSV file does.
    """
    path = check_text_file(path)
    return [line for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]


def check_text_file(path: str | os.PathLike[str]) -> Path:
    """A plain text file's checks (exists, regular, not empty, UTF-8 and not UTF-16), streaming; returns it."""
    path = input_path(path, "text file", folder_ok=False)
    if not path.is_file():
        raise EmbtuneError(f"{path}: file not found; check the path (relative paths start at {Path.cwd()})")
    _check_not_empty(path)
    _check_utf8(path)
    return path


def file_fingerprint(path: str | os.PathLike[str]) -> str:
    """A cheap content fingerprint: size, mtime and the SHA-256 of the first and last 8 MB.

    For a folder (saved dataset), the names, sizes and mtimes of all its files. Used as a cache key.
    """
    from .shards import shard_files, shards_fingerprint

    shards = shard_files(path)
    if shards is not None:
        return shards_fingerprint(shards)
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        stat = file.stat()
        digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}|{stat.st_size}|".encode())
        digest.update(str(stat.st_mtime_ns).encode())
        if not path.is_dir():
            with open(file, "rb") as handle:
                digest.update(handle.read(_CHUNK))
                if stat.st_size > 2 * _CHUNK:
                    handle.seek(-_CHUNK, os.SEEK_END)
                    digest.update(handle.read(_CHUNK))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------- format


def split_path(path: str | os.PathLike[str], split: str | None = None) -> tuple[Path, str | None]:
    """Turn ``folder:train`` into (folder, "train") when ``folder`` exists and the full name does not."""
    path = expand(path)
    text = str(path)
    if not path.exists() and ":" in path.name:
        base, _, suffix = text.rpartition(":")
        if base and Path(base).is_dir():
            if split is not None and split != suffix:
                raise EmbtuneError(f"{path}: split given twice ({suffix!r} and {split!r}); keep one")
            return Path(base), suffix
    return path, split


def dataset_name(path: str | os.PathLike[str], name: str | None = None) -> str:
    """A dataset's name in logs, caches and model cards: ``name``, else the file name without extension
    (a saved ``folder:split`` gives the folder's name).

    >>> dataset_name("data/qa_train.jsonl"), dataset_name("data/qa_train.jsonl", "qa")
    ('qa_train', 'qa')
    """
    folder_or_file = split_path(path)[0]
    if any(ch in folder_or_file.name for ch in "*?["):  # a glob of shards: the folder's name
        return name or folder_or_file.parent.name
    return name or folder_or_file.stem


def _resolve_format(path: Path, fmt: str | None) -> str:
    if fmt is not None:
        fmt = fmt.lower()
        fmt = {"json": "jsonl", "ndjson": "jsonl", "pq": "parquet", "arrow": "disk"}.get(fmt, fmt)
        if fmt not in FORMATS:
            raise EmbtuneError(f"{path}: unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    if path.is_dir():
        return "disk"
    inferred = _EXTENSIONS.get(path.suffix.lower())
    if inferred is None:
        known = ", ".join(sorted(_EXTENSIONS))
        raise EmbtuneError(
            f"{path}: cannot tell the format from the extension {path.suffix!r}; rename it to one of "
            f"{known}, or set format: ({', '.join(FORMATS)})"
        )
    return inferred


def _load_saved(path: Path, split: str | None) -> datasets.Dataset:
    if not path.is_dir():
        raise EmbtuneError(f"{path}: format 'disk' needs a folder written by Dataset.save_to_disk")
    try:
        loaded = datasets.load_from_disk(str(path), keep_in_memory=False)
    except (FileNotFoundError, ValueError, OSError, pa.ArrowException) as exc:
        raise EmbtuneError(
            f"{path}: not a folder saved with datasets' save_to_disk ({_first_line(exc)}); point to the "
            "data file itself (csv, tsv, jsonl, parquet) or re-save with Dataset.save_to_disk"
        ) from None
    if isinstance(loaded, datasets.DatasetDict):
        names = ", ".join(loaded)
        if split is None:
            raise EmbtuneError(f"{path}: holds several splits ({names}); pick one as '{path}:<split>'")
        if split not in loaded:
            raise EmbtuneError(f"{path}: no split {split!r}; available splits: {names}")
        loaded = loaded[split]
    elif split is not None:
        raise EmbtuneError(f"{path}: is a single Dataset without splits; drop ':{split}' from the path")
    if loaded.num_rows == 0:
        raise EmbtuneError(f"{path}: has no rows; point to a dataset with data")
    return loaded


# ------------------------------------------------------------------------------------- byte-level checks


def _check_not_empty(path: Path) -> None:
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(_CHUNK)
    if size == 0 or (size <= _CHUNK and not head.removeprefix(b"\xef\xbb\xbf").strip()):
        raise EmbtuneError(f"{path}: file is empty; fill it with data (or fix the path)")


def _check_utf8(path: Path) -> None:
    """Decode the file in newline-aligned chunks (C speed); name the line and byte of the first bad byte."""
    offset, lines = 0, 0
    _check_not_utf16(path)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            chunk += handle.readline()  # '\n' never occurs inside a UTF-8 sequence: chunks split cleanly
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError as exc:
                line = lines + chunk.count(b"\n", 0, exc.start) + 1
                raise EmbtuneError(
                    f"{path}: line {line} (byte offset {offset + exc.start}) is not valid UTF-8 "
                    f"(byte 0x{chunk[exc.start]:02x}); re-save the file as UTF-8"
                ) from None
            offset += len(chunk)
            lines += chunk.count(b"\n")


def _check_not_utf16(path: Path) -> None:
    """UTF-16 (with or without a byte-order mark) would otherwise look like ragged rows or bad bytes."""
    with open(path, "rb") as handle:
        head = handle.read(4096)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise EmbtuneError(f"{path}: is UTF-16 (it starts with a UTF-16 byte-order mark); re-save the file as UTF-8")
    if len(head) >= 4 and head.count(b"\x00") * 4 >= len(head):
        raise EmbtuneError(
            f"{path}: looks like UTF-16 without a byte-order mark (every other byte is NUL); re-save the file as UTF-8"
        )


def _check_delimiter(path: Path, fmt: str) -> None:
    with open(path, "rb") as handle:
        header = handle.readline(1 << 20).decode("utf-8").removeprefix("\ufeff").rstrip("\r\n")
    if fmt == "csv" and "," not in header:
        for char, name in (("\t", "tab"), (";", "semicolon"), ("|", "pipe")):
            if char in header:
                fix = "use a .tsv extension or set format: tsv" if char == "\t" else "re-save it with commas"
                raise EmbtuneError(f"{path}: header {header[:80]!r} looks {name}-separated; {fix}")
    if fmt == "tsv" and "\t" not in header and "," in header:
        raise EmbtuneError(
            f"{path}: header {header[:80]!r} looks comma-separated; use a .csv extension or set format: csv"
        )


# ------------------------------------------------------------------------------------------- parsing


class _Retry(Exception):
    """Raised mid-stream when the file must be re-read with wider column types."""


def _parse(path: Path, fmt: str, target: Path | None, text_columns: tuple[str, ...] = ()) -> pa.Table | None:
    """Parse ``path``: stream the batches into ``target`` (Arrow IPC stream), or return a Table if None."""
    hints: dict[str, object] = {"column_types": dict.fromkeys(text_columns, pa.string()), "whole_json": False}
    for _ in range(64):
        try:
            batches = _batches(path, fmt, hints)
            first = next(batches, None)
            if first is None:
                raise _no_rows(path, fmt)
            _check_names(path, first.schema.names)
            if target is None:
                return pa.Table.from_batches([first, *batches])
            with pa.OSFile(str(target), "wb") as sink, pa.ipc.new_stream(sink, first.schema) as writer:
                writer.write_batch(first)
                for batch in batches:
                    writer.write_batch(batch)
            return None
        except _Retry:
            continue
    raise EmbtuneError(f"{path}: column types keep changing while reading; give each column one type")


def _batches(path: Path, fmt: str, hints: dict[str, object]) -> Iterator[pa.RecordBatch]:
    if fmt in ("csv", "tsv"):
        return _csv_batches(path, "\t" if fmt == "tsv" else ",", hints["column_types"], hints)  # type: ignore[arg-type]
    if fmt == "jsonl":
        return _json_batches(path, hints)
    return _parquet_batches(path)


def _csv_batches(
    path: Path, delimiter: str, column_types: dict[str, pa.DataType], hints: dict[str, object]
) -> Iterator[pa.RecordBatch]:
    """Stream CSV blocks. Types are inferred from the first block; when a later value does not fit (ints
    then a float, numbers then text) the column is widened and the file re-read (``_Retry``)."""
    bad_rows: list[str] = []

    def on_invalid(row: pa_csv.InvalidRow) -> str:
        number = "?" if row.number is None else row.number - 1  # row.number counts the header as row 1
        bad_rows.append(
            f"data row {number} (1-based) has {row.actual_columns} fields but the header has "
            f"{row.expected_columns} ({row.text[:60]!r}); quote values that contain "
            f"{'tabs' if delimiter == chr(9) else 'commas'}, or fix the row"
        )
        return "error"

    names: list[str] = []
    error: Exception | None = None
    try:
        reader = pa_csv.open_csv(
            path,
            read_options=pa_csv.ReadOptions(use_threads=False, block_size=hints.get("block_size")),  # row numbers
            parse_options=pa_csv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=on_invalid
            ),
            convert_options=pa_csv.ConvertOptions(column_types=column_types),
        )
        names = reader.schema.names
        _check_names(path, names)
        yield from _read_all(reader)
    except pa.ArrowInvalid as exc:
        if bad_rows:
            error = EmbtuneError(f"{path}: {bad_rows[0]}")
        elif is_straddle(exc):  # a row longer than a parse block: re-read with a block that holds it
            hints["block_size"] = block_size_for(path, hints.get("block_size"))  # type: ignore[arg-type]
            error = _Retry()
        elif _widen(str(exc), names, column_types):
            error = _Retry()
        else:
            error = EmbtuneError(f"{path}: cannot parse as CSV ({_first_line(exc)}); fix the file")
    if error is not None:
        # The failed reader and its Python row handler sit in a reference cycle that only the garbage
        # collector frees; left to interpreter shutdown, pyarrow's reader threads meet torch's exit handlers
        # and the process aborts ("terminate called without an active exception", exit 134) after printing
        # our one-line error. Free it now.
        reader = None
        gc.collect()
        raise error


def _read_all(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        if batch.num_rows:
            yield batch


def _widen(message: str, names: list[str], column_types: dict[str, pa.DataType]) -> bool:
    """After 'In CSV column #i: CSV conversion error to T', read column i as a wider type next time."""
    match = re.search(r"column #(\d+):.*?CSV conversion error to (\w+)", message)
    if not match or int(match.group(1)) >= len(names):
        return False
    name, failed = names[int(match.group(1))], match.group(2)
    current = column_types.get(name)
    if current == pa.string():
        return False
    column_types[name] = pa.float64() if failed.startswith("int") and current is None else pa.string()
    return True


def _json_batches(path: Path, hints: dict[str, object]) -> Iterator[pa.RecordBatch]:
    with open(path, "rb") as handle:
        first = handle.read(4096).removeprefix(b"\xef\xbb\xbf").lstrip()
    if first.startswith(b"["):
        raise EmbtuneError(
            f"{path}: holds a JSON array; write one JSON object per line (JSON lines), e.g. "
            f"`jq -c '.[]' {path.name} > {path.stem}.jsonl`"
        )
    options = pa_json.ReadOptions(block_size=hints["block_size"]) if hints.get("block_size") else None
    if not hints["whole_json"]:
        try:
            yield from _read_all(pa_json.open_json(path, read_options=options))
            return
        except pa.ArrowException as exc:
            if is_straddle(exc):  # a line longer than a parse block: re-read with a block that holds it
                hints["block_size"] = block_size_for(path, hints.get("block_size"))  # type: ignore[arg-type]
                raise _Retry from None
            # the streaming reader fixes the schema on the first block; the whole-file reader unifies it
            hints["whole_json"] = True
            raise _Retry from None
    try:
        table = pa_json.read_json(path, read_options=options)
    except pa.ArrowException as exc:
        if is_straddle(exc):
            hints["block_size"] = block_size_for(path, hints.get("block_size"))  # type: ignore[arg-type]
            raise _Retry from None
        raise _json_error(path, exc) from None
    yield from (batch for batch in table.to_batches() if batch.num_rows)


def _json_error(path: Path, exc: Exception) -> EmbtuneError:
    """Find the first line that is not a JSON object (only on the error path); else explain the message."""
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as err:
                return EmbtuneError(
                    f"{path}: line {number} is not valid JSON ({err.msg}); each line must be one JSON object"
                )
            if not isinstance(record, dict):
                return EmbtuneError(
                    f"{path}: line {number} holds a JSON {type(record).__name__}, not an object; write one "
                    '{"column": value, ...} object per line'
                )
    message = _first_line(exc)
    mixed = re.search(r"Column\((/[^)]*)\) changed from (\w+) to (\w+)", message)
    if mixed:
        field, old, new = mixed.groups()
        return EmbtuneError(
            f"{path}: field {field.strip('/')!r} holds both {old} and {new} values; give it one type in all rows"
        )
    return EmbtuneError(f"{path}: cannot read as JSON lines ({message}); fix the file")


def _parquet_batches(path: Path) -> Iterator[pa.RecordBatch]:
    try:
        yield from pq.ParquetFile(path).iter_batches(batch_size=65536)
    except (pa.ArrowException, OSError) as exc:
        raise EmbtuneError(
            f"{path}: cannot read as Parquet ({_first_line(exc)}); check the file is Parquet or fix the extension"
        ) from None


def _cached_arrow(path: Path, fmt: str, cache_dir: Path, text_columns: tuple[str, ...] = ()) -> Path:
    """Parse once into ``<cache_dir>/tables/<name>-<key>.arrow`` (Arrow IPC stream); reuse while unchanged."""
    text = f"|{','.join(text_columns)}" if text_columns else ""
    key = hashlib.sha256(f"{_TABLE_CACHE_VERSION}|{fmt}|{file_fingerprint(path)}{text}".encode()).hexdigest()[:16]
    target = cache_dir / "tables" / f"{path.stem}-{key}.arrow"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(target, fsync=False) as partial:  # a crash never leaves a half-written cache entry
        _parse(path, fmt, partial, text_columns)
    return target


# ----------------------------------------------------------------------------------------- table checks


def _check_names(path: Path, names: list[str]) -> None:
    seen: set[str] = set()
    for number, name in enumerate(names, start=1):
        if not name.strip() or "\x00" in name:
            raise EmbtuneError(
                f"{path}: column {number} has an empty or unprintable name {name!r}; name every column"
            )
        if name in seen:
            raise EmbtuneError(
                f"{path}: the header repeats the column name {name!r}; give columns unique names"
            )
        seen.add(name)


def _no_rows(path: Path, fmt: str) -> EmbtuneError:
    if fmt in ("csv", "tsv"):
        return EmbtuneError(f"{path}: has a header but no data rows; add rows below the header")
    return EmbtuneError(f"{path}: has no rows; point to a file with data")


def _check_table(path: Path, fmt: str, dataset: datasets.Dataset) -> None:
    if dataset.num_rows == 0:
        raise _no_rows(path, fmt)
    if not dataset.column_names:
        raise EmbtuneError(f"{path}: has no columns; check the file")
    _check_names(path, dataset.column_names)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


__all__ = [
    "FORMATS", "check_text_file", "dataset_name", "file_fingerprint", "load_lines", "load_table", "split_path",
    "stream_batches",
]
