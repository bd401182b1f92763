"""The "### Training Logs" table, and the log rows the curves plot.

The loop logs like the Hugging Face trainer: training rows (``loss``, ``learning_rate``, ``grad_norm``) and
evaluation rows (``eval_loss``, ``eval_{dataset}_loss``, ``eval_{evaluator}_{metric}``) at their own steps.
The card shows one row per step, as sentence-transformers does: Epoch, Step, Training Loss, Validation
Loss, per-dataset validation losses, then the evaluator metrics; optimizer and speed columns are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .front_matter import as_float
from .markdown import escape_cell, format_number, make_table, note
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
_FIRST = {"Epoch": 0, "Step": 1, "Training Loss": 2, "Validation Loss": 3}


def header(key: str) -> str | None:
    """The column a log key goes to; None for keys the card leaves out."""
    if key in ALIASES:
        return ALIASES[key]
    if key in LEFT_OUT or key.endswith(LEFT_OUT_SUFFIXES):
        return None
    if key.startswith("eval_"):
        key = key[len("eval_") :]
        if key.endswith("_loss"):
            return f"{key[: -len('_loss')]} loss"
    return key


def merged_rows(log_rows: list[Any]) -> list[dict[str, Any]]:
    """One dict per logged step, keyed by column header (rows that are no dicts are skipped)."""
    merged: dict[Any, dict[str, Any]] = {}
    for i, row in enumerate(log_rows):
        if not isinstance(row, Mapping):
            continue
        step = row.get("step")
        try:
            slot = merged.setdefault(("step", step) if step is not None else ("row", i), {})
        except TypeError:  # an unhashable step value: keep the row on its own
            slot = merged.setdefault(("row", i), {})
        for key, value in row.items():
            column = header(str(key))
            if column is not None and value is not None:
                slot.setdefault(column, value)
    return [row for row in merged.values() if set(row) - {"Epoch", "Step"}]


def columns(rows: list[dict[str, Any]]) -> list[str]:
    """Epoch, Step, Training Loss, Validation Loss, other losses, then metrics (in order of appearance)."""
    seen = list(dict.fromkeys(key for row in rows for key in row))

    def rank(column: str) -> tuple[int, int]:
        if column in _FIRST:
            return _FIRST[column], 0
        return (4 if column.lower().endswith("loss") else 5), seen.index(column)

    return sorted(seen, key=rank)


def best_step(info: RunInfo, rows: list[dict[str, Any]]) -> tuple[Any, str | None]:
    """The step to bold and why: ``info.best_step``, else the step with the best primary metric."""
    if info.best_step is not None:
        return info.best_step, "The bold row denotes the saved checkpoint."
    for evaluation in info.evaluations:
        key = evaluation.primary_metric
        scored = [(as_float(r.get(key)), r.get("Step")) for r in rows if key and key in r]
        scored = [(v, s) for v, s in scored if v is not None and not math.isinf(v)]
        if scored:
            pick = max if evaluation.greater_is_better else min
            return pick(scored, key=lambda vs: vs[0])[1], f"The bold row has the best `{escape_cell(key)}`."
    return None, None


def training_logs(info: RunInfo) -> str:
    rows = merged_rows(info.log_rows)
    if not rows:
        return "### Training Logs\n\n" + note("No training losses or metrics were logged.")
    headers = columns(rows)
    best, why = best_step(info, rows)
    table_rows = []
    for row in rows:
        bold = best is not None and row.get("Step") == best
        cells = {h: format_number(row[h]) if h in row else "-" for h in headers}
        table_rows.append({h: f"**{c}**" for h, c in cells.items()} if bold else cells)
    parts = ["### Training Logs\n" + make_table(table_rows, align="center", columns=headers)]
    if why:
        parts.append(f"* {why}")
    if info.curve_image:
        parts.append(f"![Training loss and metric curves]({info.curve_image})")
    return "\n\n".join(parts)
