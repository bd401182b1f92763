"""Compute what a loss wants from its teacher for every row of a dataset, once, and cache it on disk.

A loss with a ``teacher`` attribute (a model name, folder or object) and a ``teacher_output`` kind gets its
labels from here (see ``embtune.losses.distill``):

- ``anchor_embeddings``: (N, D) the teacher's embeddings of the anchor texts;
- ``role_embeddings``: (N, R, D) its embeddings of every text role (GIST's guide);
- ``scores``: (N, 1 + k) its scores of (anchor, positive), (anchor, negative_i): a bi-encoder's similarity,
  or a cross-encoder folder's score.

Teachers are run in fp32 and in eval mode, so the cached values equal what a per-step teacher would give.
The cache key is the prepared dataset's own cache entry (source file, templates, columns, max_rows) plus the
teacher's identity (name, and the size/mtime of its weight files).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..data.prepare import PreparedDataset
from ..data.render import PerRole, for_role, render_column
from ..data.sources import load_table
from ..errors import EmbtuneError
from ..utils.atomic import atomic_write_bytes

KINDS = ("anchor_embeddings", "role_embeddings", "scores")


def wants_teacher(loss: Any) -> bool:
    """Whether ``loss`` takes its labels from a teacher model."""
    return getattr(loss, "teacher", None) is not None and getattr(loss, "teacher_output", None) in KINDS


def rendered_texts(
    prepared: PreparedDataset, template: PerRole = None, fmt: str | None = None,
    cache_dir: str | os.PathLike | None = None, max_rows: int | None = None,
) -> dict[str, list[str]]:
    """Role -> the rendered texts of every row, or of the first ``max_rows`` (templates applied, the student's
    prompts not). Only those rows are turned into Python strings: the table stays memory-mapped Arrow."""
    rows = prepared.num_rows if max_rows is None else min(max_rows, prepared.num_rows)
    table = load_table(prepared.path, fmt, cache_dir=cache_dir).data.table.slice(0, rows)
    out = {}
    for role in prepared.roles:
        column = prepared.columns[role]
        out[role] = render_column(
            table.column(column), column=column, template=for_role(template, role), path=prepared.path
        )
    return out


def _teacher_identity(teacher: Any) -> str | None:
    """A string that changes when the teacher changes; None when it cannot be known (an unnamed object)."""
    name = teacher if isinstance(teacher, str) else getattr(teacher, "source", None)
    if not name:
        return None
    folder = Path(str(name))
    files = []
    if folder.is_dir():
        for path in sorted(folder.rglob("*.safetensors")) + sorted(folder.rglob("*.bin")):
            stat = path.stat()
            files.append(f"{path.relative_to(folder)}|{stat.st_size}|{stat.st_mtime_ns}")
    return json.dumps([str(name), files])


def _load_teacher(teacher: Any, kind: str) -> Any:
    if not isinstance(teacher, (str, os.PathLike)):
        return teacher
    from ..models.cross_encoder import CrossEncoder, is_cross_encoder

    if is_cross_encoder(teacher):
        if kind != "scores":
            raise EmbtuneError(
                f"teacher {teacher}: a cross-encoder gives scores, but this loss needs embeddings ({kind}); "
                "use a bi-encoder (sentence-transformers folder) as teacher or guide"
            )
        return CrossEncoder.load(teacher)
    from ..models.embedding_model import EmbeddingModel

    return EmbeddingModel.load(teacher)


def _embed(model: Any, texts: list[str]) -> np.ndarray:
    return np.asarray(model.encode(texts, precision="fp32", show_progress_bar=False), dtype=np.float32)


def compute_targets(teacher: Any, kind: str, texts: dict[str, list[str]]) -> np.ndarray:
    """The teacher's output for every row (see the module docstring for the shapes)."""
    model = _load_teacher(teacher, kind)
    roles = list(texts)
    if kind == "anchor_embeddings":
        return _embed(model, texts["anchor"])
    if kind == "role_embeddings":
        return np.stack([_embed(model, texts[role]) for role in roles], axis=1)
    others = [r for r in roles if r != "anchor"]
    if not others:
        raise EmbtuneError("a score teacher needs a positive (and negatives) next to the anchor")
    if hasattr(model, "predict"):  # cross-encoder
        columns = [model.predict(list(zip(texts["anchor"], texts[r], strict=True))) for r in others]
    else:
        import torch

        anchors = torch.from_numpy(_embed(model, texts["anchor"]))
        columns = [
            model.similarity_pairwise(anchors, torch.from_numpy(_embed(model, texts[r]))).float().numpy()
            for r in others
        ]
    return np.stack(columns, axis=1).astype(np.float32)


def attach_teacher_targets(
    prepared: PreparedDataset, loss: Any, cache_dir: str | os.PathLike, template: PerRole = None,
    fmt: str | None = None,
) -> bool:
    """Set ``prepared.labels`` to the teacher's outputs when ``loss`` has a teacher (computed once, cached).

    ``template`` / ``fmt``: the dataset's template and file format, to render the texts the teacher reads.
    Returns whether labels were attached. The cache lives in ``<cache_dir>/teachers/``.
    """
    if not wants_teacher(loss):
        return False
    kind = loss.teacher_output
    identity = _teacher_identity(loss.teacher)
    path = None
    if identity is not None:
        key = hashlib.sha256(json.dumps([prepared.cache_dir.name, identity, kind]).encode()).hexdigest()[:24]
        path = Path(cache_dir) / "teachers" / f"{prepared.name}-{key}.npy"
        if path.is_file():
            prepared.labels = np.load(path)
            return True
    targets = compute_targets(loss.teacher, kind, rendered_texts(prepared, template, fmt, cache_dir))
    if path is not None:
        import io

        buffer = io.BytesIO()
        np.save(buffer, targets)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, buffer.getvalue())
    prepared.labels = targets
    return True
