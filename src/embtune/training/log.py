"""Where log rows go: a JSONL file (one strict-JSON object per line) and the progress bar."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import EmbtuneError


def finite_json(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` that writes inf / NaN floats as ``null``: strict JSON every parser reads."""
    return json.dumps(_finite(value), allow_nan=False, **kwargs)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class JsonlLogger:
    """Append log rows to ``path``; ``restart(rows)`` rewrites the file (used on resume).

    Only the process that writes files (rank 0) should create one.
    """

    def __init__(self, path: str | Path, trackers: list | None = None) -> None:
        self.path = Path(path)
        self._write(lambda: self.path.parent.mkdir(parents=True, exist_ok=True))
        self.trackers = list(trackers or [])  # args.report_to: each gets every new row (not restart's)

    def restart(self, rows: list[dict[str, Any]]) -> None:
        """Replace the file with ``rows`` (the log of the checkpoint a run resumes from)."""
        self._write(lambda: self.path.write_text("".join(finite_json(r) + "\n" for r in rows), encoding="utf-8"))

    def log(self, row: dict[str, Any]) -> None:
        """Append one row and flush it, so a killed run keeps everything logged so far."""
        def append() -> None:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(finite_json(row) + "\n")

        self._write(append)
        for tracker in self.trackers:
            tracker.log(row)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()

    def _write(self, write: Any) -> None:
        try:
            write()
        except OSError as exc:
            raise EmbtuneError(
                f"{self.path}: cannot write the training log ({exc.strerror or exc}); free some space or choose "
                "an output_dir you can write to, then resume with resume_from_checkpoint: last"
            ) from None
