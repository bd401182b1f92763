"""The "### Training Logs" table: the loop's log rows merged into one row per step, as sentence-transformers shows.

The loop logs training rows (``loss``, ``learning_rate``, ``grad_norm``, ``examples_per_s``) and evaluation rows
(``eval_loss``, ``eval_{dataset}_loss``, ``eval_{evaluator}_{metric}``) at their own steps. Columns: Epoch, Step,
Training Loss, Validation Loss, per-dataset validation losses, then the evaluator metrics; optimizer and speed
columns are left out.
"""

from __future__ import annotations

import math
from typing import Any

from markupsafe import Markup

from .markdown import bold, escape, number, table
from .run_info import RunInfo

ALIASES = {
    "epoch": "Epoch",
    "step": "Step",
    "loss": "Training Loss",
    "training_loss": "Training Loss",
    "train_loss": "Training Loss",
    "validation_loss": "Validation Loss",
    "eval_loss": "Validation Loss",
}
LEFT_OUT = {"learning_rate", "lr", "grad_norm", "total_flos", "examples_per_s", "tokens_per_s"}
LEFT_OUT_SUFFIXES = ("_runtime", "_per_second", "_per_s")
FIRST = {"Epoch": 0, "Step": 1, "Training Loss": 2, "Validation Loss": 3}


def column(key: str) -> str | None:
    """The column a log key goes to (``eval_nli_loss`` -> "nli loss"); None for keys the card leaves out."""
    if key in ALIASES:
        return ALIASES[key]
    if key in LEFT_OUT or key.endswith(LEFT_OUT_SUFFIXES):
        return None
    key = key.removeprefix("eval_")
    return f"{key.removesuffix('_loss')} loss" if key.endswith("_loss") else key


def merged_rows(log_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One dict per logged step, keyed by column; steps with nothing but Epoch/Step are dropped."""
    merged: dict[Any, dict[str, Any]] = {}
    for i, row in enumerate(log_rows):
        slot = merged.setdefault(row.get("step", f"row {i}"), {})
        for key, value in row.items():
            if (name := column(key)) is not None and value is not None:
                slot.setdefault(name, value)
    return [row for row in merged.values() if set(row) - {"Epoch", "Step"}]


def columns(rows: list[dict[str, Any]]) -> list[str]:
    """Epoch, Step, Training Loss, Validation Loss, other losses, then metrics (in order of appearance)."""
    seen = list(dict.fromkeys(key for row in rows for key in row))

    def rank(c: str) -> tuple[int, int]:
        return (FIRST[c], 0) if c in FIRST else (4 if c.lower().endswith("loss") else 5, seen.index(c))

    return sorted(seen, key=rank)


def best_step(info: RunInfo, rows: list[dict[str, Any]]) -> tuple[Any, Markup | None]:
    """The step to bold and the sentence saying why: ``info.best_step``, else the best primary metric."""
    if info.best_step is not None:
        return info.best_step, Markup("The bold row denotes the saved checkpoint.")
    for evaluation in info.evaluations:
        key = evaluation.primary_metric
        scored = [(r[key], r.get("Step")) for r in rows if key in r and isinstance(r[key], int | float)]
        scored = [(v, s) for v, s in scored if not math.isnan(v) and not math.isinf(v)]
        if key and scored:
            pick = max if evaluation.greater_is_better else min
            return pick(scored, key=lambda vs: vs[0])[1], Markup(f"The bold row has the best `{escape(key)}`.")
    return None, None


def training_logs(info: RunInfo) -> tuple[Markup | None, Markup | None]:
    """(the table, the sentence about its bold row); (None, None) when no step logged a loss or metric."""
    rows = merged_rows(info.log_rows)
    if not rows:
        return None, None
    header = columns(rows)
    best, why = best_step(info, rows)
    cells = []
    for row in rows:
        on = best is not None and row.get("Step") == best
        cells.append([bold(number(row[h]) if h in row else "-", on) for h in header])
    return table(header, cells, center=True), why
