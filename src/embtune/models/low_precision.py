"""A bf16 copy of a model folder's safetensors weights, written once into the cache, tensor by tensor.

Why: loading float32 safetensors into bf16 parameters makes ``transformers`` read every page of the
memory-mapped float32 file while the bf16 copies are built, so a 568M-parameter model (bge-m3) peaks at
2.3 GB of mapped file + 1.1 GB of parameters. From a bf16 file of the same names it maps the weights without
a conversion, so the peak is the bf16 model. The copy is made here with one read of each tensor (the source
file is re-opened per tensor, so its pages never pile up) and written in the safetensors format directly, so
converting stays at about 64 MB of extra memory (large tensors are read in slices of rows).

The copy lives in ``<cache>/bf16-weights/<key>/``, keyed by the source files' paths, sizes and modification
times; it holds only ``config.json``, the converted weight files and a shard index if there is one (the
tokenizer and everything else are read from the original folder). Float tensors become bf16, others are
copied as they are.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import struct
from pathlib import Path

import torch

from ..utils.atomic import atomic_dir

# safetensors dtype names -> torch dtypes (also read by fast_weights.load_fast)
SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                      "U8": torch.uint8, "BOOL": torch.bool}
_FLOAT = ("F64", "F32", "F16")
_CHUNK_BYTES = 64 << 20  # source bytes read and converted at a time


def weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).glob("*.safetensors") if p.is_file())


def needs_bf16_copy(folder: Path) -> bool:
    """Whether the folder's safetensors hold float tensors in a dtype other than bf16."""
    from safetensors import safe_open

    for file in weight_files(folder):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                if handle.get_slice(key).get_dtype() in _FLOAT:
                    return True
    return False


def bf16_weights_folder(folder: Path, cache_root: Path) -> Path:
    """The cached bf16 copy of ``folder``'s weights (made now if missing); ``folder`` itself if none is needed."""
    folder = Path(folder)
    files = weight_files(folder)
    if not files or not needs_bf16_copy(folder):
        return folder
    key = hashlib.sha256()
    for file in files:
        stat = file.stat()
        key.update(f"{file.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    target = Path(cache_root).expanduser() / "bf16-weights" / key.hexdigest()[:20]
    if (target / "config.json").is_file() and all((target / f.name).is_file() for f in files):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(target) as tmp:
        shutil.copyfile(folder / "config.json", tmp / "config.json")
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            shutil.copyfile(index, tmp / index.name)
        for file in files:
            _write_bf16(file, tmp / file.name)
    return target


def _write_bf16(source: Path, dest: Path) -> None:
    """Write ``source`` as a safetensors file with its float tensors in bf16, one tensor in memory at a time."""
    from safetensors import safe_open

    with safe_open(str(source), framework="pt") as handle:
        keys = list(handle.keys())  # noqa: SIM118
        metadata = handle.metadata() or {}
        specs = {}
        for key in keys:
            piece = handle.get_slice(key)
            specs[key] = (piece.get_dtype(), list(piece.get_shape()))
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    plan = []
    for key in keys:
        dtype, shape = specs[key]
        out = "BF16" if dtype in _FLOAT else dtype
        nbytes = math.prod(shape) * SAFETENSORS_DTYPES[out].itemsize
        header[key] = {"dtype": out, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        plan.append((key, out))
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
    with open(dest, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for key, out in plan:
            shape = specs[key][1]
            row_bytes = SAFETENSORS_DTYPES[specs[key][0]].itemsize * math.prod(shape[1:])
            step = max(1, _CHUNK_BYTES // max(row_bytes, 1))  # rows per read: a 1 GB embedding matrix in pieces
            for start in range(0, shape[0] if shape else 1, step):
                with safe_open(str(source), framework="pt") as handle:  # re-opened: its mapped pages are released
                    tensor = handle.get_slice(key)[start : start + step] if shape else handle.get_tensor(key)
                tensor = tensor.to(SAFETENSORS_DTYPES[out]).contiguous()
                if tensor.numel():
                    fh.write(tensor.reshape(-1).view(torch.uint8).numpy().data)
                del tensor

