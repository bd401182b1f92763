"""Checkpoints: everything needed to continue a run exactly, written atomically.

A checkpoint is a folder ``<output_dir>/checkpoints/checkpoint-<step>/`` holding:

- the model in the sentence-transformers layout (so any checkpoint is also a loadable model);
- ``optimizer.pt``, ``scheduler.pt`` (and ``scaler.pt`` for fp16): ``state_dict()`` of each;
- ``rng_state.pt``: python / numpy / torch / CUDA generator states, one entry per rank;
- ``trainer_state.json``: step, epoch, sampler position, best metric so far and the log rows so far.

The folder is built under a temporary name and renamed in place, so a crash (even SIGKILL) leaves either
a complete checkpoint or none; a full disk leaves the previous checkpoints as they were and says so in one
line. Reading back never runs a full unpickler (``torch.load(weights_only=True)``), and a damaged file
(truncated, empty, not what embtune wrote) is one line naming the file and an earlier checkpoint to use.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import EmbtuneError
from ..utils.atomic import DiskFull, atomic_dir, recover, recover_all
from ..utils.paths import RUN_SCRATCH
from .log import finite_json

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
        fingerprint: the datasets, losses and schedule trained on (``fingerprint.run_fingerprint``).
    """

    step: int = 0
    epoch: int = 0
    sampler: dict[str, Any] = field(default_factory=dict)
    best_metric: float | None = None
    best_checkpoint: str | None = None
    log: list[dict[str, Any]] = field(default_factory=list)
    base_metrics: dict[str, float] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)


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
    foreign = sorted(p.name for p in output_dir.iterdir() if p.name not in RUN_SCRATCH)
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
    """Write a checkpoint folder atomically (replacing one of the same name); return its path.

    Raises:
        EmbtuneError: the disk is full (the message names the folder; the previous checkpoints are intact).
    """
    try:
        with atomic_dir(folder) as tmp:
            model.save(tmp)
            _save_tensors(optimizer.state_dict(), tmp / "optimizer.pt")
            _save_tensors(scheduler.state_dict(), tmp / "scheduler.pt")
            _save_tensors(rng_states, tmp / "rng_state.pt")
            if scaler is not None:
                _save_tensors(scaler.state_dict(), tmp / "scaler.pt")
            (tmp / "trainer_state.json").write_text(finite_json(asdict(state), indent=1), encoding="utf-8")
    except DiskFull:
        previous = [p for p in list_checkpoints(folder.parent.parent) if p != folder]
        then = (f"then resume with resume_from_checkpoint: last (the previous checkpoint {previous[-1].name} is "
                "intact)" if previous else "then start the run again")
        raise EmbtuneError(
            f"{folder}: the disk is full, the checkpoint was not written; free some space in {folder.parent} "
            f"(or lower args.save_total_limit), {then}"
        ) from None
    return folder


def _save_tensors(obj: Any, path: Path) -> None:
    # through a Python file object: a failed write (ENOSPC) surfaces as the OSError behind torch's RuntimeError
    with open(path, "wb") as fh:
        torch.save(obj, fh)


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
    state = _read_state(folder / "trainer_state.json")

    def read(name: str, kind: type, keys: tuple[str, ...] = ()) -> Any:
        # weights_only: tensors and plain containers only, never arbitrary objects (a planted pickle is refused)
        try:
            with warnings.catch_warnings():  # torch warns about pickle protocols before refusing a planted one
                warnings.simplefilter("ignore")
                value = torch.load(folder / name, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise damaged(folder / name, "holds Python objects, not only tensors (refused: a checkpoint is "
                          "never unpickled)") from None
        except Exception as exc:  # truncated zip, unreadable, empty: all one answer
            raise damaged(folder / name, _reason(exc)) from None
        items = value if kind is list else [value]
        if not isinstance(value, kind) or not all(isinstance(v, dict) and set(keys) <= set(v) for v in items):
            raise damaged(folder / name, f"holds a {type(value).__name__}, not what embtune writes there")
        return value

    scaler = read("scaler.pt", dict) if (folder / "scaler.pt").is_file() else None
    return Checkpoint(folder, state, read("optimizer.pt", dict, ("state", "param_groups")),
                      read("scheduler.pt", dict, ("last_epoch",)),
                      read("rng_state.pt", list, ("python", "numpy", "torch", "cuda")), scaler)


def _why(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:160]
    return f"{type(exc).__name__}{': ' + text if text else ''}"


def _reason(exc: BaseException) -> str:
    return f"cannot be read ({_why(exc)})"


def _read_state(path: Path) -> TrainState:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise damaged(path, "is empty or not valid JSON" if not isinstance(exc, OSError) else _reason(exc)) from None
    if not isinstance(raw, dict):
        raise damaged(path, f"holds a JSON {type(raw).__name__}, not an object")
    try:
        state = TrainState(**raw)
    except TypeError:
        unknown = sorted(set(raw) - {f for f in TrainState.__dataclass_fields__})
        raise damaged(path, f"has unknown keys {unknown[:3]}") from None
    if not (isinstance(state.step, int) and isinstance(state.epoch, int) and isinstance(state.sampler, dict)
            and isinstance(state.log, list)):
        raise damaged(path, "has fields of the wrong type (step, epoch, sampler or log)")
    return state


def damaged(path: Path, what: str) -> EmbtuneError:
    """One line for a damaged checkpoint file: what is wrong with ``path`` and the checkpoint to use instead."""
    folder = next((p for p in [path, *path.parents] if _NAME.match(p.name)), None)
    earlier = [] if folder is None or folder.parent.name != "checkpoints" else [
        p for p in list_checkpoints(folder.parent.parent) if _step(p) < _step(folder)]
    fix = (f"resume from an earlier checkpoint (resume_from_checkpoint: {earlier[-1]})" if earlier else
           "there is no earlier checkpoint: start the run again (overwrite_output_dir: true)")
    return EmbtuneError(f"{path}: {what}; the checkpoint is damaged, {fix}")


def _step(folder: Path) -> int:
    match = _NAME.match(folder.name)
    return int(match.group(1)) if match else -1


def restore(saved: Checkpoint, optimizer: Any, scheduler: Any, scaler: Any, rank: int) -> None:
    """Load a checkpoint's optimizer, scheduler, scaler and this rank's RNG states; a state that does not fit
    this run (another model's optimizer, a hand-edited file) is one line naming the file."""
    from ..utils.seed import set_rng_state

    steps = [("optimizer.pt", lambda: optimizer.load_state_dict(saved.optimizer)),
             ("scheduler.pt", lambda: scheduler.load_state_dict(saved.scheduler)),
             ("rng_state.pt", lambda: set_rng_state(saved.rng_states[rank if rank < len(saved.rng_states) else 0]))]
    if scaler is not None and saved.scaler is not None:
        steps.append(("scaler.pt", lambda: scaler.load_state_dict(saved.scaler)))
    for name, load in steps:
        try:
            load()
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as exc:
            raise damaged(saved.path / name, f"does not fit this run ({_why(exc)})") from None


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
