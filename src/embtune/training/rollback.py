"""A run that fails before its first checkpoint leaves the output folder as it found it.

Otherwise the half-started run (a ``training_log.jsonl``, an empty ``checkpoints`` folder) would make the
corrected rerun fail with "already holds a run". ``FreshStart`` records what the folder held when the run
began; on failure, if no checkpoint exists, it removes what this run created: the log, the checkpoints
folder, the output folder itself and any parent folders it had to make. A resumed run has checkpoints, so
nothing is ever removed from it.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from . import checkpoint as ckpt

LOG_FILE = "training_log.jsonl"
RUN_ENTRIES = ("checkpoints", LOG_FILE, "data_report.json")  # what a run writes into output_dir before its final save


class FreshStart:
    """What ``output_dir`` held before the run; ``undo()`` removes what the run added since (see module doc)."""

    def __init__(self, output_dir: Path | str) -> None:
        self.output_dir = Path(output_dir).expanduser().absolute()
        self.made: list[Path] = []  # folders this run created, deepest first
        self.before = {p.name for p in self.output_dir.iterdir()} if self.output_dir.is_dir() else set()

    def make_parent(self) -> None:
        """Create the parent folder of ``output_dir`` (it holds the lock file), remembering what was new."""
        missing, folder = [], self.output_dir.parent
        while not folder.exists():
            missing.append(folder)
            folder = folder.parent
        self.output_dir.parent.mkdir(parents=True, exist_ok=True)
        self.made = [self.output_dir, *missing] if not self.output_dir.exists() else missing

    def clear_old_run(self) -> None:
        """Remove an old run's checkpoints and log (``overwrite_output_dir``); the new run then owns them."""
        shutil.rmtree(self.output_dir / "checkpoints", ignore_errors=True)
        (self.output_dir / LOG_FILE).unlink(missing_ok=True)
        self.before -= set(RUN_ENTRIES)

    def undo(self, keep: tuple[str, ...] = ()) -> None:
        """After a failure: remove what this run added (but ``keep``), unless a checkpoint makes the run resumable."""
        if self.output_dir.is_dir() and ckpt.find_last_checkpoint(self.output_dir) is not None:
            self.made = []  # resumable: keep everything, folders included
            return
        for name in RUN_ENTRIES if self.output_dir.is_dir() else ():
            path = self.output_dir / name
            if name not in self.before and name not in keep and path.exists():
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)

    def remove_made_folders(self) -> None:
        """The folders this run created and that are empty now (after the lock file went), deepest first."""
        for folder in self.made:
            with contextlib.suppress(OSError):
                folder.rmdir()


@contextlib.contextmanager
def undo_on_failure(start: FreshStart, lock: contextlib.AbstractContextManager) -> Iterator[FreshStart]:
    """Hold ``lock`` for the block; on any failure (errors, Ctrl-C) undo the run's entries while still holding
    it, then, once it is released, remove the folders the run made. Re-raises the failure."""
    try:
        with lock:
            try:
                yield start
            except BaseException as exc:  # a data-report stop keeps the report it points the user to
                with contextlib.suppress(Exception):
                    start.undo(keep=getattr(exc, "keep_files", ()))
                raise
    except BaseException:
        with contextlib.suppress(Exception):
            start.remove_made_folders()
        raise
