"""Checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint is a folder ``<output_dir>/checkpoints/checkpoint-<step>/`` holding:

- the model in the sentence-transformers layout (so any checkpoint is also a loadable model);
- ``optimizer.pt``, ``scheduler.pt`` (and ``scaler.pt`` for fp16): ``state_dict()`` of each;
- ``rng_state.pt``: python / numpy / torch / CUDA generator states, one entry per rank;
- ``trainer_state.json``: step, epoch, sampler position, best metric so far and the log rows so far.

The folder is built under a temporary name and renamed in place, so a crash (even SIGKILL) leaves either
a complete checkpoint or none.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import EmbtuneError
from ..utils.atomic import atomic_dir, recover, recover_all

_NAME = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class TrainState:
    """Where a run is: the counters and bookkeeping a checkpoint restores.

    Attributes:
        step: optimizer steps done.
        epoch: the epoch the sampler is in (``sampler["epoch"]``).
        sampler: the batch sampler's ``state_dict()`` (position inside the epoch).
        best_metric / best_checkpoint: the best value of ``metric_for_best_model`` so far and where it was saved.
        log: every log row written so far (the JSONL log is rewritten from it on resume).
        base_metrics: the base model's metrics, measured before the first step.
    """

    step: int = 0
    epoch: int = 0
    sampler: dict[str, Any] = field(default_factory=dict)
    best_metric: float | None = None
    best_checkpoint: str | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    base_metrics: dict[str, float] = field(default_factory=dict)


def check_output_dir(output_dir: Path, ours: bool, overwrite: bool) -> None:
    """Refuse an ``output_dir`` that is a file, or a non-empty folder that holds no embtune run.

    The final model replaces ``output_dir`` as a whole, so files a user keeps there would be lost; they are
    replaced only with ``overwrite_output_dir: true``. ``ours``: the folder holds a run (checkpoints, log, model).
    """
    if output_dir.exists() and not output_dir.is_dir():
        raise EmbtuneError(f"{output_dir}: is a file, not a folder; set args.output_dir to a new or empty folder")
    if ours or overwrite or not output_dir.is_dir():
        return
    # .cache and the data report (written before training, also by a run the report stopped) are ours too
    foreign = sorted(p.name for p in output_dir.iterdir() if p.name not in (".cache", "data_report.json"))
    if foreign:
        raise EmbtuneError(
            f"{output_dir}: exists and holds files that are not an embtune run ({', '.join(foreign[:3])}"
            f"{', ...' if len(foreign) > 3 else ''}); choose a new or empty args.output_dir, or set "
            "overwrite_output_dir: true to replace the folder and everything in it"
        )


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    """``<output_dir>/checkpoints/checkpoint-<step>``."""
    return Path(output_dir) / "checkpoints" / f"checkpoint-{step}"


def save_checkpoint(
    folder: Path,
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: TrainState,
    rng_states: list[dict[str, Any]],
    scaler: Any | None = None,
) -> Path:
    """Write a checkpoint folder atomically (replacing one of the same name); return its path."""
    with atomic_dir(folder) as tmp:
        model.save(tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save(rng_states, tmp / "rng_state.pt")
        if scaler is not None:
            torch.save(scaler.state_dict(), tmp / "scaler.pt")
        (tmp / "trainer_state.json").write_text(json.dumps(asdict(state), indent=1), encoding="utf-8")
    return folder


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` reads back (the model itself loads with ``EmbeddingModel.load(path)``)."""

    path: Path
    state: TrainState
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng_states: list[dict[str, Any]]
    scaler: dict[str, Any] | None


def load_checkpoint(folder: str | Path) -> Checkpoint:
    """Read a checkpoint folder written by ``save_checkpoint``.

    Raises:
        EmbtuneError: when the folder is missing or incomplete.
    """
    folder = Path(folder)
    needed = ["trainer_state.json", "optimizer.pt", "scheduler.pt", "rng_state.pt"]
    missing = [name for name in needed if not (folder / name).is_file()]
    if missing:
        raise EmbtuneError(
            f"{folder}: not a complete embtune checkpoint (missing {', '.join(missing)}); pick another "
            "checkpoint folder or use resume_from_checkpoint: last"
        )
    state = TrainState(**json.loads((folder / "trainer_state.json").read_text(encoding="utf-8")))

    def read(name: str) -> Any:
        # our own files; weights_only keeps unpickling to tensors and plain containers
        return torch.load(folder / name, map_location="cpu", weights_only=True)

    scaler = read("scaler.pt") if (folder / "scaler.pt").is_file() else None
    return Checkpoint(folder, state, read("optimizer.pt"), read("scheduler.pt"), read("rng_state.pt"), scaler)


def list_checkpoints(output_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders under ``<output_dir>/checkpoints``, oldest (lowest step) first.

    First repairs what a writer killed mid-save left behind: the ``checkpoints`` folder carried into the
    temporary folder of an unfinished final-model save is moved back, and stale temporary folders go.
    """
    root = Path(output_dir) / "checkpoints"
    recover(output_dir, ("checkpoints",))
    recover_all(root)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if p.is_dir() and (m := _NAME.match(p.name)) and (p / "trainer_state.json").is_file()
    ]
    return [p for _, p in sorted(found)]


def find_last_checkpoint(output_dir: str | Path) -> Path | None:
    """The checkpoint with the highest step in ``output_dir``, or None."""
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def prune_checkpoints(output_dir: str | Path, limit: int | None, keep: str | Path | None = None) -> list[Path]:
    """Delete the oldest checkpoints beyond ``limit``; never ``keep`` (the best one). Returns what was deleted.

    As in the Hugging Face trainer, the best checkpoint is kept in addition to the newest ones, so with
    ``limit=1`` the best and the last survive.
    """
    if limit is None:
        return []
    found = list_checkpoints(output_dir)
    keep_path = Path(keep).resolve() if keep else None
    candidates = [p for p in found if p.resolve() != keep_path]
    slots = limit - (1 if keep_path is not None and any(p.resolve() == keep_path for p in found) else 0)
    doomed = candidates[: max(0, len(candidates) - max(slots, 1))]
    for path in doomed:
        shutil.rmtree(path, ignore_errors=True)
    return doomed
