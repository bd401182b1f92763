"""Repair encoding damage on request: write ftfy-fixed copies of the affected files (never in place)."""

from __future__ import annotations

import json
from pathlib import Path

from ..utils.atomic import atomic_write_text
from .report import DataReport
from .text_checks import repair

_DAMAGE = {"mojibake", "replacement_char", "control_char", "nul"}


def repair_files(report: DataReport, folder: Path) -> list[str]:
    """For every .jsonl/.csv/.tsv file with encoding damage, write a repaired copy into ``folder``."""
    done = []
    for dataset in report.datasets:
        path = Path(dataset.path)
        if not any(f.check in _DAMAGE for f in dataset.findings) or not path.is_file():
            continue
        target = folder / path.name
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            fixed = [{k: repair(v) if isinstance(v, str) else v for k, v in row.items()} for row in rows]
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in fixed)
        elif path.suffix in (".csv", ".tsv"):
            text = repair(path.read_text(encoding="utf-8"))
        else:
            done.append(f"not repaired (only .jsonl/.csv/.tsv): {path}")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, text)
        done.append(f"repaired copy: {path} -> {target}")
    return done
