"""Resolve a model name to a local folder: a path on disk, the bundled model, or a Hugging Face Hub id."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import EmbtuneError
from .bundled import BUNDLED_ID, bundled_model_path

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$|^[A-Za-z0-9][\w.-]*$")
# Only what a sentence-transformers model needs; never code files, never pickles unless opted in.
_ALLOW = ["*.json", "*.safetensors", "*.txt", "*.model", "*.md", "*/*.json", "*/*.safetensors", "*/*.txt"]
_PICKLE = ["*.bin", "*/*.bin"]


def resolve_model_folder(
    name_or_path: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    allow_pickle: bool = False,
) -> tuple[Path, Path]:
    """Return (model folder, root that symlinks inside it may point into).

    A Hub snapshot's files are symlinks into the repo's ``blobs/`` folder, so for Hub models the trusted
    root is the repo cache folder; for local folders it is the folder itself.
    """
    text = str(name_or_path)
    if text == BUNDLED_ID or text == "bundled":
        folder = bundled_model_path()
        return folder, folder
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise EmbtuneError(f"{path}: is a file, not a model folder; pass the folder that holds modules.json or config.json")
        return path, path
    if text.startswith((".", "/", "~")) or os.sep in text.replace("/", "", 1) or not _REPO_ID.match(text):
        raise EmbtuneError(f"{text}: no such model folder; check the path (or give a Hugging Face Hub id like org/name)")
    return _download(text, revision, cache_dir, allow_pickle)


def _download(repo_id: str, revision: str | None, cache_dir, allow_pickle: bool) -> tuple[Path, Path]:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:  # pragma: no cover - huggingface_hub is a core dependency
        raise EmbtuneError("huggingface_hub is not installed; pip install huggingface_hub") from None
    patterns = _ALLOW + (_PICKLE if allow_pickle else [])
    try:
        snapshot = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=patterns)
    except Exception as exc:  # network, offline mode, missing repo, auth: all reported the same way
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EmbtuneError(
            f"could not get {repo_id!r} from the Hugging Face Hub ({type(exc).__name__}: {reason[:160]}); "
            "the Hub may be unreachable from here: download the model elsewhere and pass its local folder path"
        ) from None
    folder = Path(snapshot)
    # snapshots/<rev>/ -> repo cache root models--org--name/, which holds the blobs the symlinks point to
    return folder, folder.parent.parent
