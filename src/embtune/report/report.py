"""The data report: findings per dataset and split, a one-line summary, a brief print, the full JSON."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..utils.atomic import atomic_write_text

SEVERITIES = ("info", "warning", "error")


@dataclass
class Finding:
    """One problem (or fact) found in one dataset.

    Attributes:
        check: what was checked (``duplicates``, ``near_duplicates``, ``leakage``, ``truncation``, ``empty``,
            ``short``, ``mojibake``, ``replacement_char``, ``control_char``, ``nul``, ``anchor_equals_positive``,
            ``in_batch_false_negatives``, ``labels``).
        severity: ``info``, ``warning`` or ``error`` (errors stop ``embtune train``).
        count / total: how many of how many rows or texts.
        message: one line for people, with the fix.
        column: the column concerned, if one.
        rows: the first few affected rows, 1-based as in the file.
        details: numbers behind the message (JSON only).
    """

    check: str
    severity: str
    count: int
    total: int
    message: str
    column: str | None = None
    rows: list[int] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def share(self) -> float:
        return self.count / self.total if self.total else 0.0


@dataclass
class DatasetReport:
    """The findings of one file: a training dataset (``train``), its validation file (``eval``) or an
    evaluator's data (``evaluator``)."""

    name: str
    split: str
    path: str
    rows: int
    findings: list[Finding] = field(default_factory=list)

    def add(self, finding: Finding | None) -> None:
        if finding is not None:
            self.findings.append(finding)


@dataclass
class DataReport:
    """All datasets of a run. ``brief()`` is what ``embtune train`` prints; ``write`` saves the full JSON."""

    datasets: list[DatasetReport] = field(default_factory=list)
    path: str | None = None  # where the JSON was written

    def findings(self, severity: str | None = None) -> list[tuple[DatasetReport, Finding]]:
        return [(d, f) for d in self.datasets for f in d.findings if severity in (None, f.severity)]

    def summary_line(self) -> str:
        """One line: datasets checked, counts of warnings and errors, the top issues, the report path."""
        warnings, errors = self.findings("warning"), self.findings("error")
        head = f"data report: {len(self.datasets)} file(s) checked, {len(errors)} error(s), {len(warnings)} warning(s)"
        top = [f"{d.name}: {f.count} {f.check.replace('_', ' ')}" for d, f in (errors + warnings)[:3]]
        tail = f" -> {self.path}" if self.path else ""
        return head + (f" ({'; '.join(top)})" if top else "") + tail

    def brief(self) -> str:
        """The summary line, then one line per warning and error."""
        lines = [self.summary_line()]
        for d, f in self.findings("error") + self.findings("warning"):
            lines.append(f"  [{f.severity}] {d.name} ({d.split}): {f.message}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        out = {"summary": self.summary_line(), "datasets": []}
        for d in self.datasets:
            item = asdict(d)
            for finding, raw in zip(d.findings, item["findings"], strict=True):
                raw["share"] = round(finding.share, 6)
            out["datasets"].append(item)
        return out

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write the full report as JSON (atomically) and remember the path for the summary line."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.path = str(target)
        atomic_write_text(target, json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        return target

    def card_lines(self) -> list[str]:
        """Short lines for the model card's data section (summary and each warning/error)."""
        return self.brief().splitlines()
