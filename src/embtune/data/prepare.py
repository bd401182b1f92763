"""Load, check, render and tokenize one training dataset once; cache the token ids on disk as Arrow.

``prepare_dataset`` runs, in order: ``load_table`` → ``check_columns`` / ``check_roles_for`` →
``validate_table`` → (cache hit, or render + tokenize in batches and write the cache). The cache entry lives in
``<cache_dir>/prepared/<name>-<key>/`` and is keyed by everything that changes the token ids: the source
file fingerprint, the tokenizer fingerprint (class + tokenizer.json content), max_seq_length, templates,
prompts, the column roles and max_rows. Epochs and later runs memory-map it instead of re-tokenizing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa

from ..errors import EmbtuneError
from ..roles import NeedsRoles
from ..utils.atomic import atomic_dir
from ..utils.text_cap import cap_texts
from .columns import ColumnRoles, check_columns, check_roles_for
from .hashing import hash_texts, shared_key_rows
from .npy_io import NpyWriter, read_chunks
from .render import PerRole, check_per_role, column_kind, for_role, render_column
from .sources import dataset_name, file_fingerprint, load_table, split_path, stream_batches
from .token_rows import TokenRows
from .validate import (
    check_texts,
    count_duplicate_rows,
    label_array,
    validate_table,
    warn_duplicates,
    warn_truncated,
)

_CACHE_VERSION = 3  # 2: per-array .npy files (memory-mapped) instead of arrays.npz; 3: shared_rows, meta hashes
_BATCH_ROWS = 1000  # rows rendered and tokenized per tokenizer call
# rows per record batch of tokens.arrow: opening the map reads each batch's header, and the kernel maps ~64 KB
# around each, so 1,000-row batches kept ~320 MB of a 5M-row file resident; 65,536-row batches keep ~5 MB
_FILE_BATCH_ROWS = 1 << 16


@dataclass(frozen=True)
class DatasetSpec:
    """One training dataset: where it is, which column plays which role, and how to render texts.

    Args:
        path: the data file or saved-datasets folder (``folder:split`` for a saved DatasetDict).
        columns: the column roles.
        format: csv, tsv, jsonl, parquet or disk; None infers it from the extension.
        template: ``str.format`` template for dict/record columns, one for all roles or per role
            (``{"anchor": "{title}", "positive": "{title}: {text}"}``); see ``embtune.data.render``.
        prompt: a prefix for every text, or per role (``{"anchor": "query: ", "positive": "passage: "}``).
        name: the dataset's name in logs and model cards; default: the file name without extension.
        max_rows: use only the first ``max_rows`` rows (None: all).
    """

    path: str | os.PathLike[str]
    columns: ColumnRoles
    format: str | None = None
    template: PerRole = None
    prompt: PerRole = None
    name: str | None = None
    max_rows: int | None = None

    def __post_init__(self) -> None:
        if self.max_rows is not None and self.max_rows < 1:
            raise EmbtuneError(
                f"{self.path}: max_rows must be at least 1, got {self.max_rows}; or leave it unset"
            )

    @property
    def display_name(self) -> str:
        """``name``, or the file name without extension (or split suffix): ``sources.dataset_name``."""
        return dataset_name(self.path, self.name)


@dataclass
class PreparedDataset:
    """A tokenized dataset ready for sampling and collation; all per-row arrays share the row order.

    Attributes:
        name: dataset name (logs, model cards).
        path: the source file.
        roles: text roles in order: anchor, positive, negative_1 ... negative_k.
        columns: role → source column name (``label`` included when there is one).
        tokens: one ``list<int32>`` column of input ids per role, memory-mapped from the cache.
        lengths: (num_rows, n_roles) int32 token counts (special tokens included, after truncation).
        row_keys: (num_rows, n_roles) uint64 hashes of the rendered texts, without prompts.
        shared_rows: sorted indices of the rows sharing a text with another row (``hashing.shared_key_rows``).
        content_hash: SHA-256 (32 hex digits) of the row keys and labels in row order: what a resume compares.
        labels: (num_rows,) float32 labels (or (num_rows, k) for list labels), None without a label.
        truncated_count: how many texts were longer than max_seq_length and were cut.
        duplicate_count: how many rows repeat an earlier row exactly.
        pad_token_id / uses_token_type_ids: what collate needs from the tokenizer.
        max_seq_length: the truncation length used.
        cache_dir: the cache entry folder holding ``tokens.arrow``.
    """

    name: str
    path: Path
    roles: list[str]
    columns: dict[str, str]
    tokens: datasets.Dataset = field(repr=False)
    lengths: np.ndarray = field(repr=False)
    row_keys: np.ndarray = field(repr=False)
    shared_rows: np.ndarray = field(repr=False)
    content_hash: str
    labels: np.ndarray | None = field(repr=False)
    truncated_count: int
    duplicate_count: int
    pad_token_id: int
    uses_token_type_ids: bool
    max_seq_length: int
    cache_dir: Path

    @property
    def num_rows(self) -> int:
        """Number of training rows."""
        return len(self.lengths)

    @cached_property
    def token_rows(self) -> TokenRows:
        """Row access to ``tokens`` that reads only the rows asked for (collate gathers through it)."""
        return TokenRows(self.cache_dir / "tokens.arrow")

    @property
    def token_table(self) -> pa.Table:
        """The memory-mapped Arrow table behind ``tokens`` (collate takes rows from it)."""
        return self.tokens.data.table


def prepare_dataset(
    spec: DatasetSpec,
    tokenizer: Any,
    max_seq_length: int,
    needs: NeedsRoles | None = None,
    cache_dir: str | os.PathLike[str] = ".embtune_cache",
    batch_size: int | None = None,
) -> PreparedDataset:
    """Load, validate, render and tokenize ``spec`` (or reuse the cached token ids).

    Args:
        spec: the dataset.
        tokenizer: a Hugging Face tokenizer (a fast one: its overflow info gives the truncation count).
        max_seq_length: texts are truncated to this many tokens, special tokens included.
        needs: what the loss reads (``roles.RoleRequirements.of(loss)``); when given, the roles and labels
            are checked against it.
        cache_dir: root of the on-disk cache (parsed tables under ``tables/``, tokens under ``prepared/``).
        batch_size: when given, fewer rows than one batch is an error.

    Returns:
        The PreparedDataset. Duplicate rows and truncated texts are reported as ``DataWarning``.

    Raises:
        EmbtuneError: any problem with the file, the columns, the texts or the labels (see validate).
    """
    if max_seq_length < 2:
        raise EmbtuneError(
            f"max_seq_length must be at least 2 (room for special tokens), got {max_seq_length}"
        )
    cache_root = Path(cache_dir)
    source_ds = load_table(spec.path, spec.format, cache_dir=cache_root)
    path = Path(str(spec.path))
    table = source_ds.data.table
    if spec.max_rows is not None:
        table = table.slice(0, spec.max_rows)

    roles = spec.columns
    check_columns(roles, table.column_names, path)
    if needs is not None:
        check_roles_for(roles, needs, path)
    role_names = list(roles.text_roles)
    check_per_role(spec.template, role_names, f"{path}: template")
    check_per_role(spec.prompt, role_names, f"{path}: prompt")

    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise EmbtuneError(
            f"{type(tokenizer).__name__} has no pad token; set one before preparing data, e.g. "
            "tokenizer.pad_token = tokenizer.eos_token"
        )
    label_spec = needs.label if needs is not None else None
    key = _cache_key(spec, tokenizer, max_seq_length)
    entry = cache_root / "prepared" / f"{spec.display_name}-{key[:16]}"
    cached = (entry / "meta.json").exists()
    if not cached:
        validate_table(table, roles, label_spec=label_spec, path=path, batch_size=batch_size,
                       batches=stream_batches(source_ds, spec.max_rows))
        _build_entry(entry, source_ds, table, spec, tokenizer, max_seq_length, path)
    meta = json.loads((entry / "meta.json").read_text())
    arrays = _load_arrays(entry)  # memory-mapped: per-row arrays of millions of rows stay on disk
    labels = arrays.get("labels")
    if cached:  # its texts passed the checks when it was built; the row count and labels depend on the run
        validate_table(table, roles, label_spec=label_spec, path=path, batch_size=batch_size, batches=(),
                       labels=labels)

    duplicates = int(meta["duplicate_count"])
    warn_duplicates(duplicates, table.num_rows, path)
    warn_truncated(meta["truncated_count"], table.num_rows * len(role_names), max_seq_length, path)
    columns = dict(roles.text_roles) | ({"label": roles.label} if roles.label is not None else {})
    return PreparedDataset(
        name=spec.display_name,
        path=path,
        roles=role_names,
        columns=columns,
        tokens=datasets.Dataset.from_file(str(entry / "tokens.arrow"), in_memory=False),
        lengths=arrays["lengths"],
        row_keys=arrays["row_keys"],
        shared_rows=arrays["shared_rows"],
        content_hash=str(meta["content_hash"]),
        labels=labels,
        truncated_count=int(meta["truncated_count"]),
        duplicate_count=duplicates,
        pad_token_id=int(pad_id),
        uses_token_type_ids="token_type_ids" in getattr(tokenizer, "model_input_names", ()),
        max_seq_length=max_seq_length,
        cache_dir=entry,
    )


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """SHA-256 of the tokenizer class and its full definition (tokenizer.json for fast tokenizers, else the
    vocabulary and init options), ignoring the truncation/padding state that calls change."""
    digest = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)
        state.pop("padding", None)
        digest.update(json.dumps(state, sort_keys=True).encode())
    else:
        digest.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
        options = {k: v for k, v in getattr(tokenizer, "init_kwargs", {}).items() if k != "name_or_path"}
        digest.update(json.dumps(options, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _cache_key(spec: DatasetSpec, tokenizer: Any, max_seq_length: int) -> str:
    roles = spec.columns
    parts = {
        "version": _CACHE_VERSION,
        "source": file_fingerprint(split_path(spec.path)[0]),
        "format": spec.format,
        "path": str(spec.path),
        "tokenizer": tokenizer_fingerprint(tokenizer),
        "max_seq_length": max_seq_length,
        "template": spec.template,
        "prompt": spec.prompt,
        "roles": roles.text_roles,
        "label": roles.label,
        "max_rows": spec.max_rows,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _build_entry(
    entry: Path, source: datasets.Dataset, table: pa.Table, spec: DatasetSpec, tokenizer: Any, max_seq_length: int,
    path: Path,
) -> None:
    """Render and tokenize in batches, streaming the ids into ``tokens.arrow`` and the per-row token counts and
    text hashes into ``.npy`` files; then the rows that share a text, the duplicate count and the content hash
    (read back a chunk at a time), and meta last. Memory stays one batch whatever the number of rows.

    The entry appears in one rename. When two processes (DDP ranks) build the same entry, the last one
    replaces an identical folder; a rank that already memory-mapped the first keeps its open files.
    """
    text_roles = spec.columns.text_roles
    schema = pa.schema([(role, pa.list_(pa.int32())) for role in text_roles])
    num_rows, width, truncated = table.num_rows, len(text_roles), 0
    digest = hashlib.sha256()  # the resume fingerprint: the row keys' bytes in row order, then the labels'
    with atomic_dir(entry) as partial:  # a crash never leaves a half-written entry; another rank may win
        with (
            pa.OSFile(str(partial / "tokens.arrow"), "wb") as sink,
            pa.ipc.new_stream(sink, schema) as writer,
            NpyWriter(partial / "lengths.npy", (num_rows, width), np.int32) as lengths,
            NpyWriter(partial / "row_keys.npy", (num_rows, width), np.uint64) as keys,
        ):
            start, pending = 0, []
            for big in stream_batches(source, spec.max_rows):
                for offset in range(0, big.num_rows, _BATCH_ROWS):
                    batch = big.slice(offset, _BATCH_ROWS)
                    columns, batch_lengths, batch_keys = [], [], []
                    for role, column in text_roles.items():
                        texts = _render(batch.column(column), column, for_role(spec.template, role), path, start)
                        if column_kind(batch.column(column).type) == "dict":
                            check_texts(
                                pa.array(texts, pa.string()), column=column, role=role, path=path, first_row=start
                            )
                        batch_keys.append(hash_texts(texts))
                        prompt = for_role(spec.prompt, role) or ""
                        ids, n_cut = _tokenize(
                            [prompt + t for t in texts] if prompt else texts, tokenizer, max_seq_length
                        )
                        truncated += n_cut
                        columns.append(ids)
                        batch_lengths.append(np.diff(ids.offsets.to_numpy()).astype(np.int32))
                    pending.append(pa.record_batch(columns, schema=schema))
                    if sum(b.num_rows for b in pending) >= _FILE_BATCH_ROWS:
                        _write_merged(writer, pending)
                    lengths.write(np.stack(batch_lengths, axis=1))
                    batch_keys = np.stack(batch_keys, axis=1).astype(np.uint64)
                    keys.write(batch_keys)
                    digest.update(batch_keys.tobytes())
                    start += batch.num_rows
            _write_merged(writer, pending)
        labels = None
        if spec.columns.label is not None:
            labels = label_array(table.column(spec.columns.label), column=spec.columns.label, path=path)
            np.save(partial / "labels.npy", labels)
        shared = shared_key_rows(lambda: read_chunks(partial / "row_keys.npy"), num_rows)
        np.save(partial / "shared_rows.npy", shared)
        if labels is not None:
            digest.update(np.ascontiguousarray(labels, dtype=np.float32).tobytes())
        shared_keys = np.load(partial / "row_keys.npy", mmap_mode="r")[shared]  # a duplicate row shares its texts
        duplicates = count_duplicate_rows(shared_keys, None if labels is None else labels[shared])
        (partial / "meta.json").write_text(json.dumps({
            "truncated_count": truncated, "num_rows": num_rows, "duplicate_count": duplicates,
            "content_hash": digest.hexdigest()[:32],
        }))


def _write_merged(writer: pa.ipc.RecordBatchStreamWriter, pending: list[pa.RecordBatch]) -> None:
    """Write the pending tokenized batches as one record batch, and empty the list."""
    if pending:
        writer.write_table(pa.Table.from_batches(pending).combine_chunks())
        pending.clear()


def _load_arrays(entry: Path) -> dict[str, np.ndarray]:
    """lengths, row_keys (and labels) of a cache entry, memory-mapped read-only."""
    return {name: np.load(entry / f"{name}.npy", mmap_mode="r")
            for name in ("lengths", "row_keys", "shared_rows", "labels") if (entry / f"{name}.npy").is_file()}


def _render(values: pa.Array, column: str, template: str | None, path: Path, first_row: int = 0) -> list[str]:
    return render_column(values, column=column, template=template, path=path, first_row=first_row)


def _tokenize(texts: list[str], tokenizer: Any, max_seq_length: int) -> tuple[pa.ListArray, int]:
    """Token ids of ``texts`` (truncated, special tokens added) as list<int32>, and how many were cut."""
    fast = bool(getattr(tokenizer, "is_fast", False))
    encoded = tokenizer(
        cap_texts(texts, max_seq_length),  # bounded work and memory per text, same tokens kept
        add_special_tokens=True,
        truncation=True,
        max_length=max_seq_length,
        return_overflowing_tokens=fast,  # a cut text yields extra rows: counts truncation in the same call
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    ids = encoded["input_ids"]
    if fast:
        mapping = np.asarray(encoded["overflow_to_sample_mapping"])
        first = np.flatnonzero(np.r_[True, mapping[1:] != mapping[:-1]])  # first window of each text
        n_cut = int(np.count_nonzero(np.diff(np.r_[first, len(mapping)]) > 1))
        ids = [ids[i] for i in first]
    else:  # no overflow info: count texts that reached the limit (may include some that fit exactly)
        n_cut = sum(len(x) >= max_seq_length for x in ids)
    counts = np.fromiter((len(x) for x in ids), dtype=np.int32, count=len(ids))
    offsets = np.zeros(len(ids) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=int(offsets[-1]))
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)), n_cut
