"""Upload a model folder to the Hugging Face Hub: ``embtune push`` and ``args.push_to_hub``.

Only the model is uploaded: the sentence-transformers files, the card (README.md) and exports (onnx/,
embedding/). Training state never leaves the machine: ``checkpoints/``, the training log, tracker runs,
caches, hidden files, lock and temporary files, and symlinks are skipped.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import EmbtuneError

SKIP_DIRS = {"checkpoints", "runs", "mlruns", "__pycache__", "cache", ".cache", ".git"}
SKIP_FILES = {"training_log.jsonl"}
SKIP_SUFFIXES = (".lock", ".tmp", ".pyc", ".pid")


@dataclass
class PushResult:
    """What ``push_to_hub`` did: the files (relative paths) and, unless a dry run, the commit URL."""

    repo_id: str
    files: list[str]
    total_bytes: int
    url: str | None = None


def model_files(folder: str | os.PathLike) -> list[str]:
    """Relative paths of the files to upload, sorted; an error when ``folder`` is not a model folder."""
    root = Path(folder)
    if not root.is_dir():
        raise EmbtuneError(f"{root}: no such folder; pass the model folder (e.g. the training output_dir)")
    if not ((root / "modules.json").is_file() or (root / "config.json").is_file()):
        raise EmbtuneError(f"{root}: not a model folder (no modules.json or config.json); pass a saved model")
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")
                             and not (base / d).is_symlink())
        for name in filenames:
            path = base / name
            if name.startswith(".") or name in SKIP_FILES or name.endswith(SKIP_SUFFIXES) or path.is_symlink():
                continue
            files.append(path.relative_to(root).as_posix())
    return sorted(files)


def _token(token: str | None) -> str:
    from huggingface_hub import constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise EmbtuneError("the Hugging Face Hub is offline (HF_HUB_OFFLINE=1); unset it to push, or use --dry-run")
    token = token or get_token()
    if not token:
        raise EmbtuneError("no Hugging Face token; run `hf auth login` or set HF_TOKEN, then push again")
    return token


def check_can_push(token: str | None = None) -> None:
    """Fail fast (before a training run) when a push could not work: offline or no token."""
    _token(token)


def push_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    commit_message: str = "Upload model trained with embtune",
    dry_run: bool = False,
) -> PushResult:
    """Create ``repo_id`` if needed and upload the model files of ``folder`` in one commit."""
    if not isinstance(repo_id, str) or repo_id.count("/") > 1 or not repo_id.strip("/"):
        raise EmbtuneError(f"repo id {repo_id!r} is not valid; write it as 'user/name' or 'org/name'")
    files = model_files(folder)
    root = Path(folder)
    result = PushResult(repo_id, files, sum((root / f).stat().st_size for f in files))
    if dry_run:
        return result
    from huggingface_hub import CommitOperationAdd, HfApi

    api = HfApi(token=_token(token))
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        ops = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(root / f)) for f in files]
        info = api.create_commit(repo_id, ops, commit_message=commit_message, revision=revision)
    except EmbtuneError:
        raise
    except Exception as exc:  # network, auth and permission errors from huggingface_hub / httpx
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise EmbtuneError(
            f"could not push to the Hub repo {repo_id!r} ({type(exc).__name__}: {first}); check the network, "
            "the token's write access and the repo id"
        ) from None
    result.url = getattr(info, "commit_url", None) or f"https://huggingface.co/{repo_id}"
    return result
