"""Where log rows go: a JSONL file (one JSON object per line) and the progress bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class JsonlLogger:
    """Append log rows to ``path``; ``restart(rows)`` rewrites the file (used on resume).

    Only the process that writes files (rank 0) should create one.
    """

    def __init__(self, path: str | Path, trackers: list | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.trackers = list(trackers or [])  # args.report_to: each gets every new row (not restart's)

    def restart(self, rows: list[dict[str, Any]]) -> None:
        """Replace the file with ``rows`` (the log of the checkpoint a run resumes from)."""
        self.path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    def log(self, row: dict[str, Any]) -> None:
        """Append one row and flush it, so a killed run keeps everything logged so far."""
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        for tracker in self.trackers:
            tracker.log(row)

    def close(self) -> None:
        for tracker in self.trackers:
            tracker.close()

