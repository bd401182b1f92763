"""The sentence-transformers folder format: the one module that knows modules.json and friends.

Reads the classic layout (pooling booleans, sentence_bert_config.json), the ST 5/6 layout
(``"pooling_mode": "mean"``, ``modality_config``) and plain Hugging Face folders; writes the classic
layout, which sentence-transformers 2.x to 6.x and plain ``transformers`` all load.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..errors import EmbtuneError
from .dense import Dense
from .normalize import Normalize
from .pooling import Pooling
from .transformer import Transformer, check_safetensors, check_weight_files

logger = logging.getLogger(__name__)

# Module types we know how to build, by class name; anything else is refused (no arbitrary imports).
_ST_PREFIXES = ("sentence_transformers.", "embtune.")
_KNOWN = ("Transformer", "Pooling", "Dense", "Normalize")
_WRITE_TYPES = {
    Transformer: "sentence_transformers.models.Transformer",
    Pooling: "sentence_transformers.models.Pooling",
    Dense: "sentence_transformers.models.Dense",
    Normalize: "sentence_transformers.models.Normalize",
}
_FOLDER_NAMES = {Pooling: "Pooling", Dense: "Dense", Normalize: "Normalize"}


def read_json(path: Path) -> Any:
    """Parse a JSON file, with an error that names the file and the fix."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmbtuneError(f"{path}: file is missing; the model folder is incomplete") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EmbtuneError(f"{path}: not valid JSON ({exc}); restore it from the original model") from None


def inside(root: Path, folder: Path, relative: str, trusted_root: Path | None = None) -> Path:
    """Resolve ``relative`` under ``folder`` and refuse anything that leaves it (``..``, absolute, symlinks out)."""
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise EmbtuneError(
            f"{root / 'modules.json'}: module path {relative!r} leaves the model folder; "
            "module paths must be relative folders inside it"
        )
    try:
        target = (folder / rel).resolve()
    except (RuntimeError, OSError):  # RuntimeError: Python < 3.13 reports a symlink loop this way
        raise EmbtuneError(
            f"{folder / rel}: is a symlink loop (a link that points back to itself); remove or fix the link"
        ) from None
    allowed = (trusted_root or folder).resolve()
    if target != allowed and allowed not in target.parents:
        raise EmbtuneError(
            f"{folder / rel}: points outside the model folder (symlink to {target}); refusing to follow it"
        )
    return target


def _module_kind(type_name: str, root: Path) -> str:
    if isinstance(type_name, str) and type_name.startswith(_ST_PREFIXES):
        cls = type_name.rsplit(".", 1)[-1]
        if cls in _KNOWN:
            return cls
    raise EmbtuneError(
        f"{root / 'modules.json'}: module type {type_name!r} is not supported; embtune loads only "
        f"{', '.join(_KNOWN)} modules and never imports code named by a model folder"
    )


def _check_files_inside(folder: Path, trusted_root: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_symlink():
            inside(folder, folder, entry.name, trusted_root)


def load_modules(
    folder: Path, trusted_root: Path | None = None, trust_remote_code: bool = False, allow_pickle: bool = False,
    dtype: torch.dtype | None = None, weights_cache: Path | None = None, backend: str = "auto",
) -> tuple[Transformer, list, dict]:
    """Read a model folder: (transformer, the modules after it in order, config_sentence_transformers dict)."""
    folder = Path(folder)
    trusted_root = trusted_root or folder
    _check_files_inside(folder, trusted_root)
    st_config_path = folder / "config_sentence_transformers.json"
    st_config = read_json(st_config_path) if st_config_path.is_file() else {}
    if not isinstance(st_config, dict):
        raise EmbtuneError(f"{st_config_path}: expected a JSON object; restore it from the original model")

    if not (folder / "modules.json").is_file():
        if not (folder / "config.json").is_file():
            raise EmbtuneError(
                f"{folder}: not a model folder (no modules.json or config.json); pass a sentence-transformers "
                "or Hugging Face model folder"
            )
        transformer = Transformer.load(folder, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle,
                                       dtype=dtype, weights_cache=weights_cache, backend=backend)
        logger.warning("%s: plain Hugging Face model (no modules.json); using mean pooling", folder)
        return transformer, [Pooling(transformer.hidden_size, "mean")], st_config

    entries = read_json(folder / "modules.json")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise EmbtuneError(f"{folder / 'modules.json'}: expected a list of module entries; restore it from the original model")
    idx = [e.get("idx", 0) for e in entries]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in idx):
        raise EmbtuneError(f"{folder / 'modules.json'}: every entry's idx must be an integer, got {idx}; restore it from the original model")
    entries = sorted(entries, key=lambda e: e.get("idx", 0))
    transformer: Transformer | None = None
    steps: list = []
    for entry in entries:
        kind = _module_kind(entry.get("type"), folder)
        path = inside(folder, folder, str(entry.get("path", "")), trusted_root)
        if kind == "Transformer":
            if transformer is not None:
                raise EmbtuneError(f"{folder / 'modules.json'}: more than one Transformer module; not supported")
            transformer = _load_transformer(path, trust_remote_code, allow_pickle, dtype, weights_cache, backend)
        elif transformer is None:
            raise EmbtuneError(f"{folder / 'modules.json'}: the first module must be the Transformer")
        elif kind == "Pooling":
            steps.append(_build(path, lambda p: Pooling.from_config(_config(p))))
        elif kind == "Dense":
            steps.append(_build(path, lambda p: _load_dense(p, trusted_root, allow_pickle)))
        else:
            steps.append(Normalize())
    if transformer is None:
        raise EmbtuneError(f"{folder / 'modules.json'}: no Transformer module; this is not a text embedding model")
    check_dimensions(transformer, steps, [folder / str(e.get("path", "")) for e in entries
                                          if _module_kind(e.get("type"), folder) != "Transformer"])
    return transformer, steps, st_config


def check_dimensions(transformer: Transformer, steps: list, paths: list[Path]) -> None:
    """A Dense must take the size the module before it gives (pooling: the encoder's hidden size per mode).
    A mismatch would load fine and fail at the first encode, or mid-training."""
    size, source = transformer.hidden_size, "the encoder"
    for step, path in zip(steps, paths, strict=True):
        if isinstance(step, Pooling):
            size, source = transformer.hidden_size * len(step.modes), path.name
        elif isinstance(step, Dense):
            if step.in_features != size:
                raise EmbtuneError(
                    f"{path / 'config.json'}: in_features is {step.in_features} but {source} outputs {size} "
                    "features; the modules do not fit together, restore this Dense module from the original model"
                )
            size, source = step.out_features, path.name


def _config(path: Path) -> dict[str, Any]:
    config = read_json(path / "config.json")
    if not isinstance(config, dict):
        raise EmbtuneError(f"{path / 'config.json'}: expected a JSON object; restore it from the original model")
    return config


def _build(path: Path, make: Any) -> Any:
    """Build one module from its folder; a malformed config or mismatched weights become one clear line."""
    try:
        return make(path)
    except EmbtuneError as exc:
        text = str(exc)
        raise EmbtuneError(text if text.startswith(str(path)) else f"{path}: {text}") from None
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise EmbtuneError(
            f"{path / 'config.json'}: cannot build the {path.name} module ({type(exc).__name__}: {reason}); the "
            "config or its weights are malformed, restore them from the original model"
        ) from None


def _load_transformer(path: Path, trust_remote_code: bool, allow_pickle: bool, dtype: torch.dtype | None = None,
                      weights_cache: Path | None = None, backend: str = "auto") -> Transformer:
    max_len, lower = None, False
    for name in ("sentence_bert_config.json", "sentence_xlnet_config.json"):
        if (path / name).is_file():
            cfg = read_json(path / name)
            if not isinstance(cfg, dict):
                raise EmbtuneError(f"{path / name}: expected a JSON object; restore it from the original model")
            max_len = cfg.get("max_seq_length")
            lower = bool(cfg.get("do_lower_case", False))
            break
    if max_len is not None and (not isinstance(max_len, int) or max_len <= 0):
        raise EmbtuneError(f"{path / 'sentence_bert_config.json'}: max_seq_length must be a positive integer, got {max_len!r}")
    return Transformer.load(path, max_len, lower, trust_remote_code, allow_pickle, dtype, weights_cache, backend)


def _load_dense(path: Path, trusted_root: Path, allow_pickle: bool) -> Dense:
    _check_files_inside(path, trusted_root)
    dense = Dense.from_config(_config(path))
    check_weight_files(path, allow_pickle)
    if (path / "model.safetensors").is_file():
        check_safetensors(path / "model.safetensors")
        try:
            state = load_file(str(path / "model.safetensors"))
        except Exception as exc:
            raise EmbtuneError(
                f"{path / 'model.safetensors'}: unreadable ({exc}); the file is corrupted, restore it from the "
                "original model"
            ) from None
    else:  # allow_pickle was given explicitly
        import torch

        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    dense.load_weights(state)
    return dense


def save_modules(
    folder: Path, transformer: Transformer, steps: list, st_config: dict[str, Any]
) -> None:
    """Write the classic sentence-transformers layout into an (empty) folder."""
    folder = Path(folder)
    transformer.save(folder)
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": transformer.max_seq_length, "do_lower_case": transformer.do_lower_case}, indent=2)
    )
    modules = [{"idx": 0, "name": "0", "path": "", "type": _WRITE_TYPES[Transformer]}]
    for idx, step in enumerate(steps, start=1):
        sub = f"{idx}_{_FOLDER_NAMES[type(step)]}"
        (folder / sub).mkdir()
        if isinstance(step, Pooling):
            config = step.get_config()
        elif isinstance(step, Dense):
            config = step.get_config()
            save_file({k: v.detach().contiguous().cpu() for k, v in step.state_dict().items()}, str(folder / sub / "model.safetensors"))
        else:
            config = {}
        (folder / sub / "config.json").write_text(json.dumps(config, indent=2))
        modules.append({"idx": idx, "name": str(idx), "path": sub, "type": _WRITE_TYPES[type(step)]})
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "config_sentence_transformers.json").write_text(json.dumps(st_config, indent=2))
